//! The PostgreSQL harness starts a server that answers, once per process, and gives each
//! caller a name of its own.

use crate::postgres::{Durability, server};

#[test]
fn a_private_cluster_answers_queries() {
    let Some(first) = server("a_private_cluster_answers_queries", Durability::Throwaway) else {
        return;
    };
    assert_eq!(first.query("select 1 + 1").unwrap(), "2");
    let second = server("a_private_cluster_answers_queries", Durability::Throwaway).unwrap();
    assert_eq!(first.url, second.url, "one server per process");
    assert_ne!(first.name, second.name, "each caller its own name");
    // The caller's name works as a schema of its own.
    second
        .query(&format!(
            "create schema {0}; create table {0}.t (x int)",
            second.name
        ))
        .unwrap();
    assert_eq!(
        second
            .query(&format!(
                "select count(*) from pg_tables where schemaname = '{}'",
                second.name
            ))
            .unwrap(),
        "1"
    );
    if std::env::var("RM_POSTGRES_URL").is_err() {
        // A private cluster runs with fsync off; its server refuses a bad statement clearly.
        assert_eq!(first.query("show fsync").unwrap(), "off");
        assert!(first.data_dir.as_ref().is_some_and(|d| d.is_dir()));
    }
    assert!(first.query("select from nowhere").is_err());
}

/// What exited test processes left on a shared server is dropped; what a living one uses is
/// kept.
#[test]
fn schemas_of_exited_processes_are_dropped() {
    let Some(server) = server(
        "schemas_of_exited_processes_are_dropped",
        Durability::Throwaway,
    ) else {
        return;
    };
    // No process has this id (above any pid_max).
    let dead = "t4294967295_0";
    let alive = format!("t{}_4294967295", std::process::id());
    server
        .query(&format!(
            "CREATE SCHEMA IF NOT EXISTS {dead}; CREATE SCHEMA IF NOT EXISTS {alive}"
        ))
        .unwrap();
    crate::postgres::drop_schemas_of_exited_processes(&server);
    let left = server
        .query(&format!(
            "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace \
             WHERE nspname IN ('{dead}', '{alive}')"
        ))
        .unwrap();
    assert_eq!(left, alive);
    server.query(&format!("DROP SCHEMA {alive}")).unwrap();
}
