//! [`Error`]: what the facade's operations fail with.

use std::net::SocketAddr;

use rm_model::{LedgerError, Refusal};

use crate::config::ConfigError;

/// What went wrong. Every failed operation leaves the manager as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot be used; every problem is listed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A request was refused: by a policy, by the ledger (the typed ledger error is in
    /// [`Refusal::ledger_error`]) or after contention resolution could not make room.
    #[error("refused ({}): {}{}", .refusal.reason, .refusal.message,
        .explanation.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Refused {
        /// The code and the message naming the limit that refused.
        refusal: Box<Refusal>,
        /// What contention resolution tried, when it ran.
        explanation: Option<String>,
    },
    /// A replacement resolver left the request queued rather than granting or refusing it.
    #[error("queued at position {position}: {explanation}")]
    Queued {
        /// Its position (0 is next).
        position: usize,
        /// What the resolver did.
        explanation: String,
    },
    /// The ledger refused an operation on an existing reservation or resource.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An elastic pool refused a grant.
    #[error(transparent)]
    Pool(#[from] rm_pool::Error),
    /// Prometheus export was turned off (`metrics.prometheus = false`).
    #[error("prometheus export is disabled (metrics.prometheus = false)")]
    PrometheusDisabled,
    /// A global `metrics` recorder is installed already.
    #[error("a global metrics recorder is installed already")]
    GlobalRecorderTaken,
    /// A background thread could not be started (the operating system's error is the
    /// source).
    #[error("start a thread")]
    Thread(#[source] std::io::Error),
    /// The configured ledger backend could not be started (the database is unreachable,
    /// refuses the credentials, or holds a newer schema).
    #[error("start the {backend} ledger")]
    LedgerBackend {
        /// The backend (`postgres`).
        backend: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The metrics endpoint could not be started.
    #[error("serve metrics on {address}")]
    Serve {
        /// The address asked for.
        address: SocketAddr,
        /// The operating system's error (an address in use, a port not allowed).
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The refusal, for a refused request.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }
}
