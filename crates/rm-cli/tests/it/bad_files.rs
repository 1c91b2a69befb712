//! Bad files: one message per problem, a non-zero exit, never a panic.

use crate::rmctl;

fn check(text: &str) -> (i32, String) {
    let path = std::env::temp_dir().join(format!(
        "rmctl-bad-{}-{}.toml",
        std::process::id(),
        text.len()
    ));
    std::fs::write(&path, text).unwrap();
    let output = rmctl(&["validate", path.to_str().unwrap()]);
    let simulate = rmctl(&["simulate", "--quiet", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(output.status.code(), simulate.status.code());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code().unwrap(), stderr)
}

#[test]
fn every_problem_is_named_once_with_its_place() {
    let (code, stderr) = check(
        r#"
        [[cluster]]
        prefix = "n"
        count = 1
        cpu = -2

        [[tenants]]
        name = "t"

        [[tasks]]
        id = "a"
        tenant = "nobody"
        duration_s = 1
        cpu = -1
        after = ["b"]

        [[tasks]]
        id = "b"
        tenant = "t"
        duration_s = 1
        cpu = 1
        after = ["a"]
        "#,
    );
    assert_eq!(code, 2);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 4, "{stderr}");
    for expected in [
        "cluster[0].cpu: must be positive",
        "tasks[0].tenant: no tenant named \"nobody\"",
        "tasks[0].cpu: must be positive",
        "dependency cycle: a -> b -> a",
    ] {
        assert!(stderr.contains(expected), "{expected} missing in {stderr}");
    }
}

#[test]
fn a_missing_field_or_unknown_type_names_the_line() {
    let (code, stderr) = check("[[tasks]]\nid = \"a\"\ntenant = \"t\"\ncpu = 1\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("missing field `duration_s`"), "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
    let (code, stderr) = check(
        "[[resources]]\nname = \"n\"\ntype = \"quantum\"\ncapacity = { maximum = 1, unit = \"cores\" }\n",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("line 3") || stderr.contains("quantum"),
        "{stderr}"
    );
}

#[test]
fn a_facade_configuration_is_validated_too() {
    let (code, stderr) = check("[policy]\norder = [\"priority\", \"priority\"]\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("policy.order[1]"), "{stderr}");
    let output = rmctl(&["validate", "scenarios/showcase.toml"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn usage_errors_exit_non_zero() {
    assert_eq!(rmctl(&[]).status.code(), Some(2));
    assert_eq!(rmctl(&["simulate", "--bogus"]).status.code(), Some(2));
    assert_eq!(rmctl(&["simulate", "missing.toml"]).status.code(), Some(2));
    assert!(rmctl(&["help"]).status.success());
    // A bad strategy names the flag, the name and the names there are.
    let out = rmctl(&["compare", "--strategy", "greedy,binpack"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'binpack' for '--strategy")
            && stderr.contains("unknown strategy \"binpack\"")
            && stderr.contains("bin-pack"),
        "{stderr}"
    );
    // So do a bad policy, a bad number and an unknown flag.
    for (args, names) in [
        (&["compare", "--policy", "lifo"][..], "'lifo' for '--policy"),
        (
            &["stress", "--workers", "many"][..],
            "'many' for '--workers",
        ),
        (&["simulate", "--bogus"][..], "'--bogus'"),
    ] {
        let out = rmctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
}

/// `--help` of rmctl and of every subcommand prints its usage and examples, with success.
#[test]
fn every_command_has_help_with_examples() {
    for args in [
        &["--help"][..],
        &["simulate", "--help"],
        &["compare", "--help"],
        &["validate", "--help"],
        &["stress", "--help"],
        &["help", "simulate"],
    ] {
        let out = rmctl(args);
        assert!(out.status.success(), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("Usage: rmctl") && stdout.contains("Examples:\n  rmctl"),
            "{args:?}: {stdout}"
        );
    }
}

#[test]
fn enormous_times_are_refused_and_long_quiet_replays_finish() {
    let scenario = |tasks: &str| {
        format!(
            r#"
            [[cluster]]
            prefix = "n"
            count = 1
            cpu = 4
            autoscale = {{ min = 1, max = 2 }}
            [[scaling]]
            target = "n"
            metric_target = 50
            minimum = 1
            maximum = 2
            [[tenants]]
            name = "t"
            {tasks}
            "#
        )
    };
    let path = std::env::temp_dir().join(format!("rmctl-huge-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        scenario(
            "[[tasks]]\nid = \"late\"\ntenant = \"t\"\narrival_s = 18446744073709551615\nduration_s = 18446744073709551615\ncpu = 1\n",
        ),
    )
    .unwrap();
    let refused = rmctl(&["simulate", "--quiet", path.to_str().unwrap()]);
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tasks[0].arrival_s"), "{stderr}");
    assert!(stderr.contains("tasks[0].duration_s"), "{stderr}");
    // A long but possible replay (95 years of virtual time, mostly quiet) finishes at once.
    std::fs::write(
        &path,
        scenario(
            "[[tasks]]\nid = \"long\"\ntenant = \"t\"\narrival_s = 3000000000\nduration_s = 3000000000\ncpu = 1\n",
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let output = rmctl(&["simulate", "--quiet", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// A 1 MB name or line is reported with a bounded prefix and its length, not repeated whole.
#[test]
fn huge_input_is_echoed_as_a_bounded_prefix() {
    let huge = "z".repeat(1 << 20);
    for text in [
        format!(
            "[[tenants]]\nname = \"t\"\n[[tasks]]\nid = \"a\"\ntenant = \"{huge}\"\nduration_s = 1\ncpu = 1\n"
        ),
        format!("[[tenants]]\nname = \"t\"\n{huge} = 1\n"),
        format!("[[cluster]]\nprefix = \"n\"\ncount = 1\ncpu = \"{huge}\"\n"),
    ] {
        let (code, stderr) = check(&text);
        assert_ne!(code, 0);
        assert!(
            stderr.len() < 4_000,
            "{} bytes: {}",
            stderr.len(),
            &stderr[..500]
        );
        assert!(stderr.contains(" bytes)"), "{stderr}");
    }
}

/// The corpus of hostile scenario files in `tests/bad-scenarios/`: each says in its first
/// lines the error it must give (`# expect: …`), and whether it is a warning that `--strict`
/// makes an error (`# strict`). Each fails fast and clearly, in `validate` and in `simulate`.
#[test]
fn hostile_scenarios_fail_fast_with_the_error_they_name() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .find_map(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} says what it expects", file.display()));
        let strict = text.lines().any(|line| line == "# strict");
        let path = file.to_str().unwrap();
        let started = std::time::Instant::now();
        let args: Vec<&str> = if strict {
            vec!["validate", "--strict", path]
        } else {
            vec!["validate", path]
        };
        let output = rmctl(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{path}: {stderr}");
        assert!(
            stderr.contains(expect),
            "{path}: expected {expect:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{path}: {stderr}");
        if strict {
            // Without --strict it is a warning: the file validates, and says so.
            let output = rmctl(&["validate", path]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(0), "{path}: {stderr}");
            assert!(
                stderr.contains(&format!("warning: {expect}")),
                "{path}: {stderr}"
            );
        } else {
            let output = rmctl(&["simulate", "--quiet", path]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{path}: {stderr}");
            assert!(
                stderr.contains(expect),
                "{path}: expected {expect:?} in {stderr}"
            );
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{path} is slow"
        );
    }
}

/// A 10 MB tenant name is refused by validate (as the run would refuse it), briefly.
#[test]
fn validate_refuses_what_the_run_would() {
    let name = "t".repeat(10 << 20);
    let (code, stderr) = check(&format!(
        "[[cluster]]\nprefix = \"n\"\ncount = 1\ncpu = 1\n[[tenants]]\nname = \"{name}\"\n"
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("tenants[0].name"),
        "{}",
        &stderr[..stderr.len().min(500)]
    );
    assert!(stderr.len() < 2_000, "{} bytes", stderr.len());
}

/// Runs `simulate` on `scenario` beside `files` (name, text) in a folder of their own, removed
/// afterwards; asserts exit 2 and that stderr names `expect`.
#[track_caller]
fn refused_with_files(files: &[(&str, &str)], scenario: &str, expect: &str) {
    let dir = std::env::temp_dir().join(format!(
        "rmctl-bad-files-{}-{}",
        std::process::id(),
        files[0].0
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let path = dir.join("scenario.toml");
    std::fs::write(&path, scenario).unwrap();
    let output = rmctl(&["simulate", "--quiet", path.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(expect), "expected {expect:?} in {stderr}");
}

/// A trace is input too: a task of four billion instances (each a reservation of the run) is
/// refused with its id, as a scenario's own task would be, before anything is allocated for
/// it.
#[test]
fn a_trace_task_of_billions_of_instances_is_refused() {
    refused_with_files(
        &[
            (
                "batch_task.csv",
                "job_arrival_time,job_name,task_name,duration,plan_cpu,plan_mem,instance_num\n\
                 0,j_1,M1,10,50.0,0.3,4000000000\n",
            ),
            (
                "batch_instance_by_task.csv",
                "job_name,task_name,instance_count,duration_min,duration_p50,duration_p90,\
                 duration_max,duration_sum,cpu_avg_mean,cpu_avg_max,mem_avg_mean,mem_avg_max\n\
                 j_1,M1,1,1,1,1,1,10,1,1,1,1\n",
            ),
        ],
        "[[cluster]]\nprefix = \"m\"\ncount = 1\ncpu = 96\nmemory = \"100Gi\"\n\
         [trace]\nkind = \"alibaba-batch-2018\"\npath = \".\"\n",
        "trace: task j_1/M1: 4000000000 is more than 1000000 instances",
    );
}

/// The GPU trace's nodes too: a node of four billion GPUs (each would be a device resource)
/// is refused at its row.
#[test]
fn a_gpu_trace_node_of_billions_of_devices_is_refused() {
    refused_with_files(
        &[
            (
                "nodes.csv",
                "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,4000000000,P100\n",
            ),
            (
                "pods.csv",
                "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\np0,1000,1024,1,1000,\n",
            ),
        ],
        "[trace]\nkind = \"alibaba-gpu-2023\"\nnodes = \"nodes.csv\"\npods = \"pods.csv\"\n\
         mode = \"fill\"\n",
        "nodes.csv:2: gpu: \"4000000000\" is not a count of GPUs from 0 to 64",
    );
}
