//! Who starts next within one tenant, checked against a tiny reference simulator: one server,
//! non-preemptive, highest priority first, arrival order among equals.

use rm_cli::{scenario, sim};

/// A seeded generator (xorshift), so that the scenario is the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// (arrival, duration, priority) per task, in file order; arrivals distinct.
fn tasks(seed: u64, n: usize) -> Vec<(u64, u64, i32)> {
    let mut rng = Rng(seed);
    let mut arrival = 0;
    (0..n)
        .map(|_| {
            arrival += 1 + rng.below(4);
            (arrival, 1 + rng.below(9), rng.below(4) as i32)
        })
        .collect()
}

/// Start times of a classic priority queue with one server.
fn reference(tasks: &[(u64, u64, i32)]) -> Vec<u64> {
    let mut start = vec![None; tasks.len()];
    let mut free_at = 0;
    let mut done = 0;
    while done < tasks.len() {
        // The server is free at `free_at`; if nobody waits then, it waits for the next arrival.
        let waiting = |start: &[Option<u64>], t: u64| -> Vec<usize> {
            (0..tasks.len())
                .filter(|&i| start[i].is_none() && tasks[i].0 <= t)
                .collect()
        };
        let now = if waiting(&start, free_at).is_empty() {
            (0..tasks.len())
                .filter(|&i| start[i].is_none())
                .map(|i| tasks[i].0)
                .min()
                .unwrap()
        } else {
            free_at
        };
        let next = waiting(&start, now)
            .into_iter()
            .max_by_key(|&i| (tasks[i].2, std::cmp::Reverse(tasks[i].0)))
            .unwrap();
        start[next] = Some(now);
        free_at = now + tasks[next].1;
        done += 1;
    }
    start.into_iter().map(Option::unwrap).collect()
}

fn scenario_text(tasks: &[(u64, u64, i32)]) -> String {
    let mut text = String::from(
        "[policy]\norder = [\"priority\"]\n\n[[cluster]]\nprefix = \"n\"\ncount = 1\ncpu = 1\n\n[[tenants]]\nname = \"t\"\n",
    );
    for (i, (arrival, duration, priority)) in tasks.iter().enumerate() {
        text.push_str(&format!(
            "\n[[tasks]]\nid = \"task-{i}\"\ntenant = \"t\"\narrival_s = {arrival}\nduration_s = {duration}\ncpu = 1\npriority = {priority}\n"
        ));
    }
    text
}

#[test]
fn per_task_priorities_order_one_tenants_tasks_as_a_priority_queue() {
    for seed in [0x9e37_79b9_7f4a_7c15u64, 7, 12345] {
        let tasks = tasks(seed, 40);
        let scenario = scenario::parse(&scenario_text(&tasks), std::path::Path::new(".")).unwrap();
        let report = sim::run(&scenario, None, &mut |_, _, _| {}).unwrap();
        let got: Vec<u64> = report
            .records
            .iter()
            .map(|r| r.start_s.expect("every task starts") as u64)
            .collect();
        assert_eq!(got, reference(&tasks), "seed {seed}");
    }
}
