use serde_json::{Value, json};

use super::*;

const FIXTURE: &str = include_str!("fixture.json");
const GOOD_MANIFEST: &str = "[package]\nname = \"x\"\n\n[lints]\nworkspace = true\n";

/// Runs the check on the fixture after `edit`, with every manifest inheriting the lints except
/// the one at `bare_manifest`.
fn check_fixture(edit: impl FnOnce(&mut Value), bare_manifest: Option<&str>) -> Vec<String> {
    let mut metadata: Value = serde_json::from_str(FIXTURE).unwrap();
    edit(&mut metadata);
    check(&metadata.to_string(), |path| {
        Ok(if Some(path.to_str().unwrap()) == bare_manifest {
            "[package]\nname = \"x\"\n".to_owned()
        } else {
            GOOD_MANIFEST.to_owned()
        })
    })
    .unwrap()
}

fn package<'a>(metadata: &'a mut Value, name: &str) -> &'a mut Value {
    metadata["packages"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["name"] == name)
        .unwrap()
}

fn add_dependency(
    name: &'static str,
    to: &'static str,
    kind: Option<&'static str>,
) -> impl FnOnce(&mut Value) {
    move |metadata| {
        package(metadata, name)["dependencies"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": to, "kind": kind}));
    }
}

#[track_caller]
fn assert_one(violations: Vec<String>, expected: &str) {
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(violations[0].contains(expected), "{violations:#?}");
}

#[test]
fn the_fixture_is_clean() {
    assert_eq!(check_fixture(|_| {}, None), Vec::<String>::new());
}

#[test]
fn a_middle_crate_depending_on_another_is_caught() {
    let violations = check_fixture(add_dependency("rm-reserve", "rm-policy", None), None);
    assert_one(
        violations,
        "rm-reserve -> rm-policy: a middle crate depends on rm-model only",
    );
    // Also as a dev-dependency.
    let violations = check_fixture(add_dependency("rm-policy", "rm-reserve", Some("dev")), None);
    assert_one(violations, "rm-policy -> rm-reserve (dev)");
}

#[test]
fn rm_model_gaining_a_dependency_is_caught() {
    let violations = check_fixture(add_dependency("rm-model", "dashmap", None), None);
    assert_one(
        violations,
        "rm-model depends on std, serde and thiserror only",
    );
    let violations = check_fixture(add_dependency("rm-model", "rm-testkit", Some("dev")), None);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    // Build dependencies ship too.
    let violations = check_fixture(add_dependency("rm-model", "cc", Some("build")), None);
    assert_one(violations, "rm-model -> cc (build)");
}

#[test]
fn a_member_without_workspace_lints_is_caught() {
    let violations = check_fixture(|_| {}, Some("/ws/crates/rm-policy/Cargo.toml"));
    assert_one(
        violations,
        "rm-policy: its manifest lacks `[lints] workspace = true`",
    );
}

#[test]
fn other_edges_are_caught() {
    let cases: [(&'static str, &'static str, Option<&'static str>, &str); 6] = [
        (
            "rm-reserve",
            "rm-testkit",
            None,
            "rm-testkit is a dev-dependency only",
        ),
        (
            "rm-policy",
            "metrics-exporter-prometheus",
            None,
            "only rm-facade installs a metrics recorder",
        ),
        (
            "rm-testkit",
            "rm-reserve",
            None,
            "rm-testkit depends on rm-model (and rm-postgres for its PostgreSQL harness) only",
        ),
        (
            "rm-cli",
            "rm-model",
            None,
            "rm-cli depends on rm-facade only",
        ),
        (
            "rm-facade",
            "rm-cli",
            None,
            "rm-facade depends on rm-model and the middle crates only",
        ),
        (
            "rm-policy",
            "rm-facade",
            None,
            "a middle crate depends on rm-model only",
        ),
    ];
    for (from, to, kind, expected) in cases {
        let violations = check_fixture(add_dependency(from, to, kind), None);
        assert_one(violations, expected);
    }
}

#[test]
fn the_postgres_harness_edge_of_rm_testkit_is_allowed() {
    let violations = check_fixture(add_dependency("rm-testkit", "rm-postgres", None), None);
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn an_unknown_crate_is_caught() {
    let violations = check_fixture(
        |metadata| {
            metadata["workspace_members"]
                .as_array_mut()
                .unwrap()
                .push(json!("x-id"));
            metadata["packages"].as_array_mut().unwrap().push(json!({
                "name": "rm-extra", "id": "x-id", "manifest_path": "/ws/crates/rm-extra/Cargo.toml",
                "dependencies": []
            }));
        },
        None,
    );
    assert_one(violations, "rm-extra: not in the layer table");
}

#[test]
fn two_versions_of_metrics_in_the_lock_file_are_caught() {
    let lock = r#"
        version = 4
        [[package]]
        name = "metrics"
        version = "0.24.6"
        [[package]]
        name = "metrics"
        version = "0.23.1"
        [[package]]
        name = "serde"
        version = "1.0.228"
    "#;
    let violations = check_single_copies(lock).unwrap();
    assert_one(violations, "metrics in 2 versions (0.24.6, 0.23.1)");
    let one = "[[package]]\nname = \"metrics\"\nversion = \"0.24.6\"\n";
    assert!(check_single_copies(one).unwrap().is_empty());
}

/// The real workspace follows the rules.
#[test]
fn the_workspace_follows_the_layer_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let violations = check_workspace(root).unwrap();
    assert!(
        violations.is_empty(),
        "layer rules broken:\n{}",
        violations.join("\n")
    );
    let members = member_names(root).unwrap();
    assert!(members.contains(&"rm-model".to_owned()), "{members:?}");
}

/// `rm-plan` sits below the middle crates: they may use it, it may use `rm-model` only.
#[test]
fn the_planner_crate_sits_below_the_middle_crates() {
    let with_planner = |to: &'static str| {
        move |metadata: &mut Value| {
            let mut planner = package(metadata, "rm-model").clone();
            planner["name"] = json!("rm-plan");
            planner["id"] = json!("rm-plan-id");
            planner["manifest_path"] = json!("/w/crates/rm-plan/Cargo.toml");
            planner["dependencies"] =
                json!([{"name": "rm-model", "kind": null}, {"name": to, "kind": null}]);
            metadata["packages"].as_array_mut().unwrap().push(planner);
            metadata["workspace_members"]
                .as_array_mut()
                .unwrap()
                .push(json!("rm-plan-id"));
            add_dependency("rm-reserve", "rm-plan", None)(metadata);
        }
    };
    assert_eq!(
        check_fixture(with_planner("smallvec"), None),
        Vec::<String>::new()
    );
    assert_one(
        check_fixture(with_planner("rm-reserve"), None),
        "rm-plan -> rm-reserve: rm-plan depends on rm-model only",
    );
}
