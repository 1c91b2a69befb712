//! The crate's errors: configuration mistakes, and a target's refusal to resize.

/// Configuration mistakes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting has a value no rule can work with.
    #[error("invalid {setting}: {reason}")]
    InvalidSetting {
        /// The setting, as the builder names it.
        setting: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The replica calculation was given no pods.
    #[error("calculate replicas: no pods were given")]
    NoPods,
    /// No ready pod reported the metric.
    #[error("calculate replicas: no ready pod reported a metric (pods might be unready)")]
    NoMetrics,
    /// A pod has no request for the resource under a utilisation target.
    #[error("calculate replicas: missing request for pods[{pod}]")]
    MissingRequest {
        /// The pod's index in the samples.
        pod: usize,
    },
}

/// A resize a target refused, with its explanation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScaleRefused {
    /// Why the target refused.
    pub message: String,
}
