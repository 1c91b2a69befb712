//! Integration tests of the facade: configuration, wiring, replacement parts, waiting,
//! pools, autoscaling and the endpoint.

mod config;
mod flows;
mod server;

/// One node of `cores` cores, and whatever `extra` adds.
pub(crate) fn one_node(cores: u32, extra: &str) -> rm_facade::Config {
    rm_facade::Config::from_toml(&format!(
        r#"
        [[resources]]
        name = "node-1"
        type = "compute"
        capacity = {{ maximum = {cores}, unit = "cores" }}
        {extra}
        "#
    ))
    .unwrap()
}
