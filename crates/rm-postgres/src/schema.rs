//! The schema: versioned migrations, applied at start under an advisory lock.

use postgres::Client;

use crate::Error;

/// The migrations of the tables in order; version `n` is `MIGRATIONS[n - 1]`. A released
/// migration never changes: a change to the tables is a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("sessions.sql"),
    include_str!("waiters.sql"),
    include_str!("queue.sql"),
    include_str!("domains.sql"),
];

/// The functions, replaced as a whole whenever their text differs from what the schema has.
const FUNCTIONS: &str = include_str!("functions.sql");

/// A fingerprint of a text (FNV-1a, 64 bits): tells whether the functions changed.
fn fingerprint(text: &str) -> i64 {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The schema version this build expects.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Whether `schema` is a name the crate accepts: lowercase ASCII letters, digits and
/// underscores, starting with a letter or underscore, at most 48 characters (the NOTIFY
/// channel adds a prefix within PostgreSQL's 63).
pub(crate) fn check_schema_name(schema: &str) -> Result<(), Error> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit()
        && !schema.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field: "schema",
            reason: "must be 1-48 lowercase ASCII letters, digits or underscores, starting \
                     with a letter or underscore, not pg_"
                .into(),
        })
    }
}

/// The NOTIFY channel of a schema's events.
pub(crate) fn channel(schema: &str) -> String {
    format!("rm_events_{schema}")
}

/// Brings `schema` to [`SCHEMA_VERSION`], creating it when absent. Processes that start at
/// once serialize on a transaction-scoped advisory lock keyed by the schema name, so each
/// migration is applied exactly once; a database whose schema is newer than this build is
/// refused.
pub(crate) fn migrate(client: &mut Client, schema: &str) -> Result<(), Error> {
    let migrate_err = |source| Error::Migrate {
        schema: schema.to_owned(),
        source,
    };
    let mut tx = client.transaction().map_err(migrate_err)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('rm-postgres migrations'), hashtext($1))",
        &[&schema],
    )
    .map_err(migrate_err)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".schema_version (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )"
    ))
    .map_err(migrate_err)?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM \"{schema}\".schema_version"),
            &[],
        )
        .map_err(migrate_err)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            schema: schema.to_owned(),
            found: current,
            expected: SCHEMA_VERSION,
        });
    }
    let substitute = |sql: &str| {
        sql.replace("@schema", &format!("\"{schema}\""))
            .replace("@channel", &format!("'{}'", channel(schema)))
    };
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i32 + 1;
        tx.batch_execute(&substitute(sql)).map_err(migrate_err)?;
        tx.execute(
            &format!("INSERT INTO \"{schema}\".schema_version (version) VALUES ($1)"),
            &[&version],
        )
        .map_err(migrate_err)?;
    }
    // The functions: every one of the schema dropped and created again when they changed
    // (prepared statements of running processes re-plan against the new ones).
    let wanted = fingerprint(FUNCTIONS);
    let installed: Option<i64> = tx
        .query_opt(
            &format!("SELECT value FROM \"{schema}\".meta WHERE key = 'functions'"),
            &[],
        )
        .map_err(migrate_err)?
        .map(|row| row.get(0));
    if installed != Some(wanted) {
        tx.batch_execute(&format!(
            "DO $$ DECLARE f regprocedure; BEGIN
                 FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
                     WHERE p.pronamespace = '\"{schema}\"'::regnamespace
                 LOOP
                     EXECUTE 'DROP FUNCTION ' || f::text;
                 END LOOP;
             END $$;"
        ))
        .map_err(migrate_err)?;
        tx.batch_execute(&substitute(FUNCTIONS))
            .map_err(migrate_err)?;
        tx.execute(
            &format!(
                "INSERT INTO \"{schema}\".meta VALUES ('functions', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            &[&wanted],
        )
        .map_err(migrate_err)?;
    }
    tx.commit().map_err(migrate_err)
}
