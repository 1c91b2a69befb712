//! The layer rules of `docs/architecture.md`, checked from `cargo metadata`.
//!
//! A middle crate never depends on another middle crate (`rm-plan`, the planner below them,
//! depends on `rm-model` only); `rm-model` depends on std, serde and thiserror only; `rm-testkit` is a dev-dependency only and sees `rm-model` (and `rm-postgres`, for its PostgreSQL harness); only `rm-facade` may install the
//! Prometheus exporter; `rm-cli` sees `rm-facade` only; every member inherits the workspace
//! lints. A crate missing from [`layer_of`] is itself a violation: adding one is an
//! architecture change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

/// Where a workspace member sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layer {
    /// `rm-model`: vocabulary and traits.
    Model,
    /// `rm-plan`: the placement planner every ledger calls, on `rm-model` only.
    Plan,
    /// The independent middle crates.
    Middle,
    /// `rm-facade`: the wiring.
    Facade,
    /// `rm-cli`: the `rmctl` binary.
    Cli,
    /// `rm-testkit`: conformance suites and fakes.
    Testkit,
    /// `rm-tests` and `rm-benches`: the top-level test and bench crates.
    TopLevel,
    /// `xtask`: automation.
    Xtask,
}

/// The layer of a member, or `None` for a crate the table does not know.
pub(crate) fn layer_of(name: &str) -> Option<Layer> {
    Some(match name {
        "rm-model" => Layer::Model,
        "rm-plan" => Layer::Plan,
        "rm-reserve" | "rm-validate" | "rm-policy" | "rm-contention" | "rm-pool" | "rm-scale"
        | "rm-monitor" | "rm-postgres" => Layer::Middle,
        "rm-facade" => Layer::Facade,
        "rm-cli" => Layer::Cli,
        "rm-testkit" => Layer::Testkit,
        "rm-tests" | "rm-benches" => Layer::TopLevel,
        "xtask" => Layer::Xtask,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    id: String,
    manifest_path: PathBuf,
    dependencies: Vec<Dependency>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
    kind: Option<String>,
}

impl Dependency {
    /// Normal and build dependencies: the ones the crate ships with.
    fn is_shipped(&self) -> bool {
        self.kind.as_deref() != Some("dev")
    }
}

const MODEL_DEPENDENCIES: [&str; 2] = ["serde", "thiserror"];
const EXPORTER: &str = "metrics-exporter-prometheus";

/// Checks the rules on `metadata` (the JSON of `cargo metadata --format-version 1`), reading
/// member manifests through `read_manifest`. Returns one line per violation.
pub(crate) fn check(
    metadata: &str,
    read_manifest: impl Fn(&Path) -> Result<String, String>,
) -> Result<Vec<String>, String> {
    let metadata: Metadata =
        serde_json::from_str(metadata).map_err(|err| format!("read cargo metadata: {err}"))?;
    let mut violations = Vec::new();
    let members = metadata
        .packages
        .iter()
        .filter(|p| metadata.workspace_members.contains(&p.id));
    for package in members {
        let name = package.name.as_str();
        let Some(layer) = layer_of(name) else {
            violations.push(format!(
                "{name}: not in the layer table of xtask/src/tidy.rs; a new crate is an architecture change (update docs/architecture.md too)"
            ));
            continue;
        };
        let manifest = read_manifest(&package.manifest_path)?;
        if !inherits_workspace_lints(&manifest)? {
            violations.push(format!(
                "{name}: its manifest lacks `[lints] workspace = true`"
            ));
        }
        for dep in &package.dependencies {
            let to = dep.name.as_str();
            let edge = format!(
                "{name} -> {to}{}",
                dep.kind
                    .as_deref()
                    .map(|k| format!(" ({k})"))
                    .unwrap_or_default()
            );
            let mut forbid = |why: &str| violations.push(format!("{edge}: {why}"));
            if dep.is_shipped() && to == "rm-testkit" {
                forbid("rm-testkit is a dev-dependency only");
            }
            if dep.is_shipped() && to == EXPORTER && layer != Layer::Facade {
                forbid("only rm-facade installs a metrics recorder");
            }
            let target = layer_of(to);
            match layer {
                Layer::Model => {
                    if dep.is_shipped() && !MODEL_DEPENDENCIES.contains(&to) {
                        forbid("rm-model depends on std, serde and thiserror only");
                    } else if !dep.is_shipped() && target.is_some() {
                        forbid(
                            "rm-model never dev-depends on workspace crates (two copies of a crate in one test binary)",
                        );
                    }
                }
                Layer::Plan => {
                    if target.is_some_and(|t| t != Layer::Model) {
                        forbid("rm-plan depends on rm-model only");
                    }
                }
                Layer::Middle => match target {
                    // A shipped edge to rm-testkit is reported by the rule above.
                    Some(Layer::Model | Layer::Plan | Layer::Testkit) | None => {}
                    Some(_) => forbid(
                        "a middle crate depends on rm-model only, never on another middle crate",
                    ),
                },
                Layer::Testkit => {
                    // The PostgreSQL harness starts clusters with rm-postgres's own code.
                    if target.is_some_and(|t| t != Layer::Model) && to != "rm-postgres" {
                        forbid(
                            "rm-testkit depends on rm-model (and rm-postgres for its PostgreSQL harness) only",
                        );
                    }
                }
                Layer::Facade => {
                    if dep.is_shipped()
                        && !matches!(
                            target,
                            None | Some(Layer::Model | Layer::Plan | Layer::Middle)
                        )
                    {
                        forbid("rm-facade depends on rm-model and the middle crates only");
                    }
                }
                Layer::Cli => {
                    if dep.is_shipped() && target.is_some_and(|t| t != Layer::Facade) {
                        forbid("rm-cli depends on rm-facade only");
                    }
                }
                Layer::TopLevel => {}
                Layer::Xtask => {
                    if target.is_some() {
                        forbid("xtask builds no workspace crate");
                    }
                }
            }
        }
    }
    Ok(violations)
}

fn inherits_workspace_lints(manifest: &str) -> Result<bool, String> {
    let table: toml::Table =
        toml::from_str(manifest).map_err(|err| format!("read manifest: {err}"))?;
    Ok(table
        .get("lints")
        .and_then(|lints| lints.get("workspace"))
        .and_then(toml::Value::as_bool)
        == Some(true))
}

fn metadata(root: &Path) -> Result<String, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .map_err(|err| format!("run cargo metadata: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|err| format!("read cargo metadata: {err}"))
}

/// Crates of which the lock file may hold one version only: with two versions of `metrics`,
/// a middle crate's macros would record into a recorder the facade's exporter never sees.
const SINGLE_COPY: [&str; 2] = ["metrics", "rm-model"];

/// Checks that each crate of [`SINGLE_COPY`] appears at most once in `lock` (Cargo.lock).
pub(crate) fn check_single_copies(lock: &str) -> Result<Vec<String>, String> {
    let lock: toml::Table =
        toml::from_str(lock).map_err(|err| format!("read Cargo.lock: {err}"))?;
    let packages = lock
        .get("package")
        .and_then(toml::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut violations = Vec::new();
    for name in SINGLE_COPY {
        let versions: Vec<&str> = packages
            .iter()
            .filter(|package| package.get("name").and_then(toml::Value::as_str) == Some(name))
            .filter_map(|package| package.get("version").and_then(toml::Value::as_str))
            .collect();
        if versions.len() > 1 {
            violations.push(format!(
                "Cargo.lock: {name} in {} versions ({}); one copy only, or metrics recorded by one are lost to the other",
                versions.len(),
                versions.join(", ")
            ));
        }
    }
    Ok(violations)
}

/// Checks the workspace at `root`.
pub(crate) fn check_workspace(root: &Path) -> Result<Vec<String>, String> {
    let mut violations = check(&metadata(root)?, |path| {
        std::fs::read_to_string(path).map_err(|err| format!("read {}: {err}", path.display()))
    })?;
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|err| format!("read Cargo.lock: {err}"))?;
    violations.extend(check_single_copies(&lock)?);
    Ok(violations)
}

/// The names of the workspace members, sorted.
pub(crate) fn member_names(root: &Path) -> Result<Vec<String>, String> {
    let metadata: Metadata = serde_json::from_str(&metadata(root)?)
        .map_err(|err| format!("read cargo metadata: {err}"))?;
    let names: BTreeMap<_, _> = metadata
        .packages
        .into_iter()
        .filter(|p| metadata.workspace_members.contains(&p.id))
        .map(|p| (p.name, ()))
        .collect();
    Ok(names.into_keys().collect())
}

#[cfg(test)]
mod tests;
