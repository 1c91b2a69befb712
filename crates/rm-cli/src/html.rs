//! A self-contained HTML report: inline SVG charts and CSS, no scripts, no network.

use std::fmt::Write as _;

use crate::report::Report;

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 36.0;

/// Text for HTML: `&`, `<`, `>` and quotes escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line of a chart: its points at `xs` (virtual seconds).
struct Line<'a> {
    name: String,
    xs: &'a [f64],
    values: Vec<f64>,
    dashed: bool,
    colour: &'a str,
}

/// A step for about `parts` ticks up to `max` from `steps`, the smallest that gives at most
/// `parts` of them (the largest step when none does).
fn nice_step(max: f64, parts: f64, steps: &[f64]) -> f64 {
    steps
        .iter()
        .copied()
        .find(|step| max / step <= parts)
        .unwrap_or_else(|| steps.last().copied().unwrap_or(1.0))
}

/// Round steps of virtual time: seconds, minutes, hours, days.
const TIME_STEPS: [f64; 18] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    14400.0, 21600.0, 43200.0, 86400.0,
];

/// How a chart's y axis reads.
enum Axis {
    /// A ratio from 0 to 1, printed as percent.
    Percent,
    /// A count, in whole round steps.
    Count,
    /// A ratio between `min` and `max`, ticks every `step`, printed as percent.
    PercentRange { min: f64, max: f64, step: f64 },
}

/// A line chart of `lines` over virtual time (each line with its own points, so replays of
/// different lengths share the axes): y from 0 to 1 for percentages, or to the largest value
/// rounded up to a round count; both axes titled, ticks on round values.
fn line_chart(id: &str, lines: &[Line<'_>], axis: Axis, y_title: &str) -> String {
    let x_max = lines
        .iter()
        .filter_map(|l| l.xs.last().copied())
        .fold(1.0, f64::max);
    // Round ticks of virtual time (every 15 min, not at 24 / 47 / 71 min).
    let x_axis = XAxis {
        min: 0.0,
        max: x_max,
        step: nice_step(x_max, 6.0, &TIME_STEPS),
        label: &format_seconds,
        title: "virtual time",
    };
    chart(id, lines, axis, y_title, &x_axis)
}

/// The x axis of a chart: its range, tick step, tick labels and title.
struct XAxis<'a> {
    min: f64,
    max: f64,
    step: f64,
    label: &'a dyn Fn(f64) -> String,
    title: &'a str,
}

/// A line chart of `lines` on `x_axis`, y as `axis` says.
fn chart(id: &str, lines: &[Line<'_>], axis: Axis, y_title: &str, x_axis: &XAxis<'_>) -> String {
    let mut y_min = 0.0;
    let (y_max, y_step, y_label): (f64, f64, &dyn Fn(f64) -> String) = match axis {
        Axis::Percent => (1.0, 0.25, &percent),
        Axis::PercentRange { min, max, step } => {
            y_min = min;
            (max, step, &percent)
        }
        Axis::Count => {
            let most = lines
                .iter()
                .flat_map(|l| l.values.iter().copied())
                .fold(0.0, f64::max)
                .max(1.0);
            let step = nice_step(
                most,
                4.0,
                &[
                    1.0, 2.0, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0, 200.0, 250.0, 500.0, 1000.0,
                    2000.0, 5000.0, 10000.0, 100000.0, 1000000.0,
                ],
            );
            ((most / step).ceil() * step, step, &|y: f64| {
                format!("{y:.0}")
            })
        }
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_span = (x_axis.max - x_axis.min).max(f64::MIN_POSITIVE);
    let x_at = |x: f64| LEFT + (x - x_axis.min) / x_span * plot_w;
    let y_at = |y: f64| TOP + plot_h - ((y - y_min) / (y_max - y_min)).clamp(0.0, 1.0) * plot_h;
    let mut svg =
        format!(r#"<svg id="{id}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">"#);
    let mut y = y_min;
    while y <= y_max + 1e-9 {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            LEFT + plot_w,
            y_at(y),
            y_at(y),
            LEFT - 6.0,
            y_at(y) + 4.0,
            escape(&y_label(y))
        );
        y += y_step;
    }
    let mut x = x_axis.min;
    while x <= x_axis.max + 1e-9 {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"#,
            x_at(x),
            HEIGHT - BOTTOM + 16.0,
            escape(&(x_axis.label)(x))
        );
        x += x_axis.step;
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis">{}</text><text x="14" y="{:.1}" text-anchor="middle" class="axis" transform="rotate(-90 14 {:.1})">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 4.0,
        escape(x_axis.title),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_title)
    );
    let mut legend_top = TOP + 14.0;
    for line in lines {
        let points: Vec<String> = line
            .xs
            .iter()
            .zip(&line.values)
            .map(|(x, y)| format!("{:.1},{:.1}", x_at(*x), y_at(*y)))
            .collect();
        let dash = if line.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<polyline class="series" fill="none" stroke="{}" stroke-width="1.8"{dash} points="{}"/>"#,
            line.colour,
            points.join(" ")
        );
        // A long name (several tenants sharing an entitlement) wraps at its commas onto
        // lines of its own instead of running off the chart.
        let rows = legend_rows(&line.name);
        let legend_y = legend_top;
        legend_top += 16.0 * rows.len() as f64;
        let x_text = WIDTH - RIGHT + 36.0;
        let tspans: String = rows
            .iter()
            .enumerate()
            .map(|(k, row)| {
                format!(
                    r#"<tspan x="{x_text:.1}" dy="{}">{}</tspan>"#,
                    if k == 0 { 0.0 } else { 14.0 },
                    escape(row)
                )
            })
            .collect();
        let _ = write!(
            svg,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{legend_y:.1}" y2="{legend_y:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{x_text:.1}" y="{:.1}" class="legend">{tspans}</text>"#,
            WIDTH - RIGHT + 10.0,
            WIDTH - RIGHT + 30.0,
            line.colour,
            legend_y + 4.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The rows a legend entry takes: its name split after commas so that no row is longer than
/// fits beside the chart (about 22 characters); a single longer word keeps a row of its own.
fn legend_rows(name: &str) -> Vec<String> {
    const FITS: usize = 22;
    let mut rows: Vec<String> = Vec::new();
    for part in name.split_inclusive(", ") {
        match rows.last_mut() {
            Some(row) if row.chars().count() + part.trim_end().chars().count() <= FITS => {
                row.push_str(part);
            }
            _ => rows.push(part.to_owned()),
        }
    }
    // A tenant list ends in " entitled N%": let that words wrap too.
    let mut wrapped = Vec::new();
    for row in rows {
        let row = row.trim_end().to_owned();
        if row.chars().count() <= FITS {
            wrapped.push(row);
            continue;
        }
        let mut current = String::new();
        for word in row.split(' ') {
            if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > FITS {
                wrapped.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        wrapped.push(current);
    }
    wrapped
}

/// A bar chart of `bars` (label, count), its axes titled `x_title` and `y_title`.
fn bar_chart(id: &str, bars: &[(String, u64)], x_title: &str, y_title: &str) -> String {
    let max = bars.iter().map(|(_, c)| *c).max().unwrap_or(0).max(1) as f64;
    let plot_w = WIDTH - LEFT - 20.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let width = plot_w / bars.len().max(1) as f64;
    let mut svg =
        format!(r#"<svg id="{id}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">"#);
    for (i, (label, count)) in bars.iter().enumerate() {
        let h = *count as f64 / max * plot_h;
        let x = LEFT + width * i as f64;
        // The count sits above its bar, or inside it in white when the bar is too tall.
        let (count_y, count_class) = if h > plot_h - 14.0 {
            (TOP + plot_h - h + 14.0, "tick inside")
        } else {
            (TOP + plot_h - h - 4.0, "tick")
        };
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {count}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text><text x="{:.1}" y="{count_y:.1}" text-anchor="middle" class="{count_class}">{count}</text>"#,
            x + 2.0,
            TOP + plot_h - h,
            (width - 4.0).max(1.0),
            PALETTE[0],
            escape(label),
            x + width / 2.0,
            HEIGHT - BOTTOM + 16.0,
            escape(label),
            x + width / 2.0,
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis">{}</text><text x="14" y="{:.1}" text-anchor="middle" class="axis" transform="rotate(-90 14 {:.1})">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 4.0,
        escape(x_title),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_title)
    );
    svg.push_str("</svg>");
    svg
}

fn format_seconds(seconds: f64) -> String {
    let trim = |value: f64| {
        let text = format!("{value:.1}");
        text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
    };
    if seconds >= 7200.0 {
        format!("{} h", trim(seconds / 3600.0))
    } else if seconds >= 120.0 {
        format!("{} min", trim(seconds / 60.0))
    } else {
        format!("{} s", trim(seconds))
    }
}

fn percent(value: f64) -> String {
    format!("{:.0}%", value * 100.0)
}

const STYLE: &str =
    "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:820px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}table{border-collapse:collapse}
td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}
.chart{width:100%;height:auto;background:#fff}.tick,.legend{font-size:11px;fill:#555}
.axis{font-size:11px;fill:#333}
.note{color:#666;font-size:12px}.inside{fill:#fff}";

impl Report {
    /// The report as one self-contained HTML page: a summary, then one chart per section
    /// (utilisation by type, CPU utilisation by pool, GPU utilisation by pool when pools have
    /// GPUs, queue depth, the wait distribution, each tenant's share against its
    /// entitlement).
    pub fn html(&self) -> String {
        let xs: Vec<f64> = self.samples.iter().map(|s| s.t_s).collect();
        let mut page = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
            escape(&self.name),
            escape(&self.name)
        );
        let _ = writeln!(
            page,
            "<table class=\"summary\"><tr><th>policy</th><td>{} (placement {})</td></tr><tr><th>tasks</th><td>{} ({} instances), {} completed, {} rejected</td></tr><tr><th>makespan</th><td>{:.1} s</td></tr><tr><th>wait</th><td>p50 {:.1} s, p99 {:.1} s, max {:.1} s</td></tr><tr><th>jobs</th><td>{}</td></tr><tr><th>fairness</th><td>{}</td></tr><tr><th>preemptions</th><td>{}</td></tr><tr><th>scaling decisions</th><td>{}</td></tr><tr><th>audit</th><td>{}</td></tr></table>",
            escape(&self.policy),
            escape(&self.strategy),
            self.tasks,
            self.instances,
            self.completed,
            self.rejected,
            self.makespan_s,
            self.wait.p50_s,
            self.wait.p99_s,
            self.wait.max_s,
            if self.jobs.completion_measured {
                format!(
                    "{} of {}; completion p50 {:.1} s, p99 {:.1} s",
                    self.jobs.completed, self.jobs.count, self.jobs.jct_p50_s, self.jobs.jct_p99_s
                )
            } else {
                format!(
                    "{} of {} placed; completion times not measured (filling: pods never leave)",
                    self.jobs.completed, self.jobs.count
                )
            },
            if self.fairness.contended_samples == 0 {
                "not measured: no task ever waited".to_owned()
            } else {
                format!(
                    "Jain's index {:.3} among tenants with demand",
                    self.fairness.jain_index
                )
            },
            self.preemptions,
            self.scaling.len(),
            if self.audit_clean {
                "clean"
            } else {
                "violations"
            }
        );
        let ratio = |ppm: u64| ppm as f64 / 1_000_000.0;

        let type_lines: Vec<Line<'_>> = self
            .types
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let d = ["cpu", "memory", "gpu"]
                    .iter()
                    .position(|t| t == name)
                    .unwrap_or(i);
                Line {
                    name: name.clone(),
                    xs: &xs,
                    values: self
                        .samples
                        .iter()
                        .map(|s| ratio(s.utilization_ppm[d]))
                        .collect(),
                    dashed: false,
                    colour: PALETTE[i % PALETTE.len()],
                }
            })
            .collect();
        section(
            &mut page,
            "utilization-by-type",
            "Utilisation by resource type",
            &line_chart(
                "chart-utilization-by-type",
                &type_lines,
                Axis::Percent,
                "in use",
            ),
        );

        let pool_lines: Vec<Line<'_>> = self
            .pools
            .iter()
            .enumerate()
            .map(|(i, name)| Line {
                name: name.clone(),
                xs: &xs,
                values: self.samples.iter().map(|s| ratio(s.pools_ppm[i])).collect(),
                dashed: false,
                colour: PALETTE[i % PALETTE.len()],
            })
            .collect();
        section(
            &mut page,
            "utilization-by-pool",
            "CPU utilisation by pool (node group)",
            &line_chart(
                "chart-utilization-by-pool",
                &pool_lines,
                Axis::Percent,
                "cores in use",
            ),
        );

        let gpu_lines: Vec<Line<'_>> = self
            .pools
            .iter()
            .enumerate()
            .filter(|(i, _)| self.gpu_pools.get(*i).copied().unwrap_or(false))
            .enumerate()
            .map(|(k, (i, name))| Line {
                name: name.clone(),
                xs: &xs,
                values: self
                    .samples
                    .iter()
                    .map(|s| ratio(s.pools_gpu_ppm[i]))
                    .collect(),
                dashed: false,
                colour: PALETTE[k % PALETTE.len()],
            })
            .collect();
        if !gpu_lines.is_empty() {
            section(
                &mut page,
                "gpu-utilization-by-pool",
                "GPU utilisation by pool (node group)",
                &line_chart(
                    "chart-gpu-utilization-by-pool",
                    &gpu_lines,
                    Axis::Percent,
                    "GPUs in use",
                ),
            );
        }

        let waiting: Vec<f64> = self.samples.iter().map(|s| s.waiting as f64).collect();
        section(
            &mut page,
            "queue-depth",
            "Queue depth (instances waiting to start)",
            &line_chart(
                "chart-queue-depth",
                &[Line {
                    name: "waiting".into(),
                    xs: &xs,
                    values: waiting,
                    dashed: false,
                    colour: PALETTE[1],
                }],
                Axis::Count,
                "instances",
            ),
        );

        section(
            &mut page,
            "wait-distribution",
            "Wait from ready to start, per instance",
            &bar_chart(
                "chart-wait-distribution",
                &self.wait_histogram,
                "wait from ready to start",
                "instances",
            ),
        );

        let mut share_lines = Vec::new();
        for (i, tenant) in self.tenant_names.iter().enumerate() {
            share_lines.push(Line {
                name: tenant.clone(),
                xs: &xs,
                values: self
                    .samples
                    .iter()
                    .map(|s| ratio(s.shares_ppm[i]))
                    .collect(),
                dashed: false,
                colour: PALETTE[i % PALETTE.len()],
            });
        }
        // One dashed line per distinct entitlement, named by the tenants it belongs to, so
        // that tenants with equal entitlements do not hide each other's line.
        let mut entitlements: Vec<(u64, Vec<&str>, &str)> = Vec::new();
        for (i, tenant) in self.tenant_names.iter().enumerate() {
            let ppm = self.entitled_ppm[i];
            match entitlements.iter_mut().find(|(e, _, _)| *e == ppm) {
                Some((_, names, _)) => names.push(tenant),
                None => entitlements.push((ppm, vec![tenant], PALETTE[i % PALETTE.len()])),
            }
        }
        for (ppm, names, colour) in entitlements {
            share_lines.push(Line {
                name: format!("{} entitled {}", names.join(", "), percent(ratio(ppm))),
                xs: &xs,
                values: vec![ratio(ppm); xs.len()],
                dashed: true,
                colour,
            });
        }
        section(
            &mut page,
            "tenant-shares",
            "Each tenant's dominant share (solid) against its entitlement (dashed)",
            &line_chart(
                "chart-tenant-shares",
                &share_lines,
                Axis::Percent,
                "dominant share",
            ),
        );
        page.push_str("<p class=\"note\">Generated by rmctl; self-contained: no scripts, no external resources.</p>\n</body></html>\n");
        page
    }
}

/// Replays of one workload under several strategies or policies, side by side as one
/// self-contained HTML page: a table with a column per variant, then one chart per measure
/// with a line per variant on the same axes (utilisation of each resource type, queue depth).
pub fn comparison(reports: &[(String, Report)]) -> String {
    let title = reports
        .first()
        .map_or_else(String::new, |(_, r)| format!("{}: compared", r.name));
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    let mut table = String::from("<table class=\"summary\"><tr><th></th>");
    for (name, _) in reports {
        let _ = write!(table, "<th>{}</th>", escape(name));
    }
    table.push_str("</tr>");
    /// A row of the comparison table: its label and how a report fills its cell.
    type Row<'a> = (&'a str, &'a dyn Fn(&Report) -> String);
    let rows: [Row<'_>; 7] = [
        ("tasks completed", &|r| {
            format!("{} of {}", r.completed, r.tasks)
        }),
        ("rejected", &|r| r.rejected.to_string()),
        ("makespan", &|r| format!("{:.1} s", r.makespan_s)),
        ("wait p50", &|r| format!("{:.1} s", r.wait.p50_s)),
        ("wait p99", &|r| format!("{:.1} s", r.wait.p99_s)),
        ("fairness", &|r| {
            if r.fairness.contended_samples == 0 {
                "not measured".to_owned()
            } else {
                format!("Jain {:.3}", r.fairness.jain_index)
            }
        }),
        ("preemptions", &|r| r.preemptions.to_string()),
    ];
    for (label, value) in rows {
        let _ = write!(table, "<tr><th>{}</th>", escape(label));
        for (_, report) in reports {
            let _ = write!(table, "<td>{}</td>", escape(&value(report)));
        }
        table.push_str("</tr>");
    }
    table.push_str("</table>\n");
    page.push_str(&table);
    let xs: Vec<Vec<f64>> = reports
        .iter()
        .map(|(_, r)| r.samples.iter().map(|s| s.t_s).collect())
        .collect();
    let ratio = |ppm: u64| ppm as f64 / 1_000_000.0;
    let types: Vec<String> = reports
        .first()
        .map(|(_, r)| r.types.clone())
        .unwrap_or_default();
    for (i, resource_type) in types.iter().enumerate() {
        let d = ["cpu", "memory", "gpu"]
            .iter()
            .position(|t| t == resource_type)
            .unwrap_or(i);
        let lines: Vec<Line<'_>> = reports
            .iter()
            .zip(&xs)
            .enumerate()
            .map(|(k, ((name, report), xs))| Line {
                name: name.clone(),
                xs,
                values: report
                    .samples
                    .iter()
                    .map(|s| ratio(s.utilization_ppm.get(d).copied().unwrap_or(0)))
                    .collect(),
                dashed: false,
                colour: PALETTE[k % PALETTE.len()],
            })
            .collect();
        section(
            &mut page,
            &format!("utilization-{resource_type}"),
            &format!("{resource_type} utilisation"),
            &line_chart(
                &format!("chart-utilization-{resource_type}"),
                &lines,
                Axis::Percent,
                &format!("{resource_type} in use"),
            ),
        );
    }
    let lines: Vec<Line<'_>> = reports
        .iter()
        .zip(&xs)
        .enumerate()
        .map(|(k, ((name, report), xs))| Line {
            name: name.clone(),
            xs,
            values: report.samples.iter().map(|s| s.waiting as f64).collect(),
            dashed: false,
            colour: PALETTE[k % PALETTE.len()],
        })
        .collect();
    section(
        &mut page,
        "queue-depth",
        "Queue depth (instances waiting to start)",
        &line_chart("chart-queue-depth", &lines, Axis::Count, "instances"),
    );
    page.push_str("<p class=\"note\">Generated by rmctl compare; self-contained: no scripts, no external resources.</p>\n</body></html>\n");
    page
}

/// The FGD experiment as one self-contained HTML page: per pod list, the GPU allocation
/// ratio against the arrived workload, a line per strategy (mean over seeds), then the table.
pub fn inflation(report: &crate::inflate::Report) -> String {
    let title = format!(
        "GPU allocation on the Alibaba 2023 trace: {} strategies, {} seeds",
        report.lists.first().map_or(0, |l| l.strategies.len()),
        report.seeds
    );
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n<p>{} nodes, {:.0} GPUs; the pod list in a seeded order, topped up by pods drawn with replacement until they ask {}% of the GPU, placed in order, never leaving.</p>\n",
        escape(&title),
        escape(&title),
        report.nodes,
        report.gpus,
        report.inflation_pct
    );
    let xs: Vec<f64> = report
        .checkpoints_pct
        .iter()
        .map(|c| f64::from(*c))
        .collect();
    let x_label = |x: f64| format!("{x:.0}%");
    for list in &report.lists {
        let lowest = list
            .strategies
            .iter()
            .flat_map(|s| s.allocation_pct.iter().map(|a| a.mean / 100.0))
            .fold(1.0, f64::min);
        let min = ((lowest * 20.0).floor() / 20.0).clamp(0.0, 0.95);
        let lines: Vec<Line<'_>> = list
            .strategies
            .iter()
            .enumerate()
            .map(|(k, s)| Line {
                name: s.strategy.clone(),
                xs: &xs,
                values: s.allocation_pct.iter().map(|a| a.mean / 100.0).collect(),
                dashed: k >= PALETTE.len(),
                colour: PALETTE[k % PALETTE.len()],
            })
            .collect();
        let x_axis = XAxis {
            min: xs.first().copied().unwrap_or(0.0),
            max: xs.last().copied().unwrap_or(1.0),
            step: 10.0,
            label: &x_label,
            title: "arrived workload (% of the cluster's GPU)",
        };
        let axis = Axis::PercentRange {
            min,
            max: 1.0,
            step: 0.05,
        };
        let id = format!("allocation-{}", list.list);
        section(
            &mut page,
            &id,
            &format!("pod list {} ({} pods)", list.list, list.pods),
            &chart(
                &format!("chart-{id}"),
                &lines,
                axis,
                "GPU allocated",
                &x_axis,
            ),
        );
    }
    let _ = writeln!(page, "<pre>{}</pre>", escape(&report.table()));
    page.push_str("<p class=\"note\">Generated by rmctl compare --inflation; self-contained: no scripts, no external resources.</p>\n</body></html>\n");
    page
}

fn section(page: &mut String, id: &str, title: &str, chart: &str) {
    let _ = write!(
        page,
        "<section id=\"{id}\"><h2>{}</h2>\n{chart}\n</section>\n",
        escape(title)
    );
}
