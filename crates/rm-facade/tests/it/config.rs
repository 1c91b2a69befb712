//! Configuration: unknown fields refused, every problem named with its path.

use rm_facade::{Config, ConfigError, ResourceManager};

#[test]
fn an_unknown_field_is_an_error_that_names_it() {
    let err = Config::from_toml("[manager]\nttl_ms = 5\n").unwrap_err();
    let ConfigError::Parse(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("ttl_ms"), "{message}");
    assert!(message.contains("unknown field"), "{message}");
    let err = Config::from_toml("[metricz]\nlisten = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(err.to_string().contains("metricz"), "{err}");
}

#[test]
fn every_problem_is_named_with_its_path() {
    let config = Config::from_toml(
        r#"
        [[resources]]
        name = "node-1"
        type = "compute"
        capacity = { maximum = 8, unit = "cores" }

        [[resources]]
        name = "node-1"
        type = "compute"
        capacity = { maximum = 8, unit = "cores" }

        [[resources]]
        name = "node-2"
        type = "memory"
        capacity = { maximum = 8, unit = "cores" }

        [limits.compute]
        max = 4
        unit = "bytes"

        [policy]
        order = ["quota", "weighted", "priority", "priority"]

        [priorities.requesters]
        etl = "no-such-class"

        [quotas.assign]
        etl = "no-such-group"

        [fair_share.weights]
        etl = 0

        [contention]
        default = "scale"
        fallback = "preempt"

        [[pools]]
        name = "lic"
        guaranteed = 2

        [[pools]]
        name = "lic"
        guaranteed = 2

        [[scaling]]
        target = "workers"
        rule = "predictive"
        metric_target = 50
        minimum = 5
        maximum = 1
        window_ms = 1000

        [metrics.class_weights]
        batch = 0
        "#,
    )
    .unwrap();
    let err = config.check().unwrap_err();
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "resources[1].name",
        "resources[2].capacity.unit",
        "limits.compute",
        "policy.order[3]",
        "priorities.requesters.etl",
        "quotas.assign.etl",
        "fair_share.weights.etl",
        "contention.default",
        "contention.fallback",
        "pools[1].name",
        "metrics.class_weights.batch",
        "scaling[0].metric_target",
    ] {
        assert!(
            paths.iter().any(|path| path.starts_with(expected)),
            "{expected} not among {paths:?}"
        );
    }
    // Building refuses the same configuration with the same problems, and registers nothing.
    let built = ResourceManager::from_config(config).unwrap_err();
    assert!(matches!(
        built,
        rm_facade::Error::Config(ConfigError::Invalid(_))
    ));
}

#[test]
fn a_section_for_a_policy_that_is_not_used_is_a_problem() {
    let config = Config::from_toml(
        r#"
        [policy]
        order = ["priority"]
        [quotas.requesters.etl]
        compute = { amount = 6, unit = "cores" }
        "#,
    )
    .unwrap();
    let err = config.check().unwrap_err();
    assert_eq!(err.problems()[0].path, "quotas", "{err}");
}

#[test]
fn a_configuration_file_is_read_and_its_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("rm-facade-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[manager]\ndefault_ttl_ms = 1000\n").unwrap();
    assert_eq!(
        Config::from_file(&good).unwrap().manager.default_ttl_ms,
        1000
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[manager\n").unwrap();
    let err = Config::from_file(&bad).unwrap_err();
    assert!(err.to_string().contains("bad.toml"), "{err}");
    let missing = Config::from_file(dir.join("missing.toml")).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_zero_ttl_is_named() {
    let config = Config::from_toml("[manager]\ndefault_ttl_ms = 0\n").unwrap();
    let err = ResourceManager::from_config(config).unwrap_err();
    assert!(err.to_string().contains("manager.default_ttl_ms"), "{err}");
}

#[test]
fn a_zero_retention_is_named_by_check_and_build() {
    let config = Config::from_toml("[manager]\nretention_ms = 0\n").unwrap();
    let err = config.check().unwrap_err();
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["manager.retention_ms"], "{err}");
    let err = ResourceManager::from_config(config).unwrap_err();
    assert!(err.to_string().contains("manager.retention_ms"), "{err}");
}

/// A configuration file with a 1 MB line or name is refused with a short message that says
/// how long the input was.
#[test]
fn errors_about_huge_input_stay_short() {
    let huge = "x".repeat(1 << 20);
    let unparsable = Config::from_toml(&format!("[manager]\nretention_ms = {huge}\n")).unwrap_err();
    let unknown_field = Config::from_toml(&format!("[manager]\n{huge} = 1\n")).unwrap_err();
    let bad_weight = Config::from_toml(&format!("[metrics.class_weights]\n\"{huge}\" = 0\n"))
        .unwrap()
        .check()
        .unwrap_err();
    for err in [unparsable, unknown_field, bad_weight] {
        let message = err.to_string();
        assert!(message.len() < 2_000, "{} bytes", message.len());
        assert!(message.contains(" bytes)"), "{message}");
    }
}

fn ledger_problems(table: &str) -> Vec<(String, String)> {
    let config = Config::from_toml(table).expect("parses");
    match config.check() {
        Ok(()) => Vec::new(),
        Err(err) => err
            .problems()
            .iter()
            .map(|p| (p.path.clone(), p.message.clone()))
            .collect(),
    }
}

#[test]
fn the_ledger_table_names_its_problems() {
    let paths = |table: &str| -> Vec<String> {
        ledger_problems(table)
            .into_iter()
            .map(|(path, _)| path)
            .collect()
    };
    // Random fit's seed is for either backend.
    assert!(paths("[ledger]\nplacement_seed = 7").is_empty());
    // The embedded ledger takes no PostgreSQL settings.
    assert_eq!(
        paths("[ledger]\nurl = \"postgres://rm@db/x\"\npool_size = 2"),
        ["ledger.url", "ledger.pool_size"]
    );
    // A URL is required, without a password in it.
    let backend: &[&str] = if cfg!(feature = "postgres") {
        &[]
    } else {
        &["ledger.backend"]
    };
    let with = |more: &[&str]| -> Vec<String> {
        backend
            .iter()
            .chain(more)
            .map(|p| (*p).to_owned())
            .collect()
    };
    assert_eq!(
        paths("[ledger]\nbackend = \"postgres\""),
        with(&["ledger.url"])
    );
    for url in [
        "postgres://rm:hunter2@db:5432/x",
        "postgresql://rm:hunter2@db/x",
        "host=db user=rm password=hunter2",
    ] {
        let problems = ledger_problems(&format!(
            "[ledger]\nbackend = \"postgres\"\nurl = \"{url}\""
        ));
        let paths: Vec<_> = problems.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(paths, with(&["ledger.url"]), "{url}");
        assert!(
            problems
                .iter()
                .all(|(_, message)| !message.contains("hunter2")),
            "the password is never repeated: {problems:?}"
        );
    }
    assert_eq!(
        paths(
            "[ledger]\nbackend = \"postgres\"\nurl = \"postgres://rm@db:5432/x\"\n\
             password_env = \"RM_PG_PASSWORD\"\nschema = \"ci\""
        ),
        with(&[])
    );
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_postgres_ledger_without_the_feature_is_refused_by_name() {
    let problems =
        ledger_problems("[ledger]\nbackend = \"postgres\"\nurl = \"postgres://rm@db:5432/x\"");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].0, "ledger.backend");
    assert!(
        problems[0].1.contains("`postgres` feature"),
        "{}",
        problems[0].1
    );
}
