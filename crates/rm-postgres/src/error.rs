//! The errors of setting a ledger up; operations fail with the contract's
//! [`LedgerError`](rm_model::LedgerError).

/// Why a [`PgLedger`](crate::PgLedger) or a [`Listener`](crate::Listener) could not be
/// set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range or malformed.
    #[error("configure the PostgreSQL ledger: {field}: {reason}")]
    InvalidConfig {
        /// The setting (`url`, `schema`, `default_ttl`, …).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached, refused the connection or the credentials, or
    /// refused the ledger's statements.
    #[error("connect to PostgreSQL")]
    Connect {
        /// The driver's error.
        #[source]
        source: postgres::Error,
    },
    /// Bringing the schema to this build's version failed (nothing was applied).
    #[error("migrate schema {schema}")]
    Migrate {
        /// The schema.
        schema: String,
        /// The driver's error.
        #[source]
        source: postgres::Error,
    },
    /// The schema was migrated by a newer build than this one.
    #[error("schema {schema} is at version {found}, newer than this build's {expected}")]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// Its version.
        found: i32,
        /// The version this build knows.
        expected: i32,
    },
    /// A listener's connection failed or an event could not be read.
    #[error("receive events")]
    Listen {
        /// The driver's error.
        #[source]
        source: postgres::Error,
    },
}
