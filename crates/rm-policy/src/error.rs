//! The crate's own error: a policy that cannot be configured as asked.

/// Why a policy could not be configured.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A priority class of that name is not defined.
    #[error("assign priority class {class:?}: no such class")]
    UnknownClass {
        /// The class asked for, [clipped](rm_model::clip) when long.
        class: String,
    },
    /// A quota group of that name is not defined.
    #[error("use quota group {group:?}: no such group")]
    UnknownGroup {
        /// The group asked for, [clipped](rm_model::clip) when long.
        group: String,
    },
    /// A quota group's parent would make a cycle, or the group exists already.
    #[error("add quota group {group:?}: {reason}")]
    InvalidGroup {
        /// The group, [clipped](rm_model::clip) when long.
        group: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A weight or aging setting is out of range.
    #[error("configure {setting}: {reason}")]
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}
