//! The crate's own error: a manager that cannot be configured. Ledger operations fail with
//! the contract's [`LedgerError`](rm_model::LedgerError).

/// Why a [`ReservationManager`](crate::ReservationManager) could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range.
    #[error("configure the reservation manager: {field} {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
