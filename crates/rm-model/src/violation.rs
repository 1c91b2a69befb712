//! What validation reports: a [`Violation`] (a field path and a message), the
//! [`FieldPath`] that names the field without allocating until a violation is reported, and
//! [`ValidationErrors`], every violation of one value. The vocabulary alone, so that the
//! values that check themselves (requirements, requests) and the validator contract can all
//! use it without importing each other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem found by validation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Violation {
    /// The path of the offending field (`requirements[1].amount`, `capacity.maximum`).
    pub path: String,
    /// What is wrong, in lower case, without a final period.
    pub message: String,
}

impl Violation {
    /// A violation at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Violation {
        Violation {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same violation under a parent path (`resources[3]` + `name`).
    pub fn under(mut self, parent: &str) -> Violation {
        self.path = if self.path.is_empty() {
            parent.to_owned()
        } else if self.path.starts_with('[') {
            format!("{parent}{}", self.path)
        } else {
            format!("{parent}.{}", self.path)
        };
        self
    }
}

/// A field path that is only formatted when a violation is reported, so that validating a
/// well-formed value allocates nothing: `requirements[1].constraints[0]`.
#[derive(Clone, Copy)]
pub struct FieldPath<'a> {
    parent: Option<&'a FieldPath<'a>>,
    field: &'a str,
    index: Option<usize>,
}

impl<'a> FieldPath<'a> {
    /// A top-level field (`requirements`).
    pub const fn root(field: &'a str) -> FieldPath<'a> {
        FieldPath {
            parent: None,
            field,
            index: None,
        }
    }

    /// A field under this one (`.amount`).
    pub const fn field(&'a self, field: &'a str) -> FieldPath<'a> {
        FieldPath {
            parent: Some(self),
            field,
            index: None,
        }
    }

    /// An element of this list field (`[3]`).
    pub const fn index(&self, index: usize) -> FieldPath<'a> {
        FieldPath {
            parent: self.parent,
            field: self.field,
            index: Some(index),
        }
    }

    /// A violation at this path.
    pub fn violation(&self, message: impl Into<String>) -> Violation {
        Violation::new(self.to_string(), message)
    }
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            write!(f, "{parent}.")?;
        }
        f.write_str(self.field)?;
        if let Some(index) = self.index {
            write!(f, "[{index}]")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({self})")
    }
}

/// Prints path and message [clipped](crate::clip_lines): a message may quote a value given.
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            crate::clip_lines(&self.path),
            crate::clip_lines(&self.message)
        )
    }
}

/// Every problem validation found; never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("validate {}: {}", crate::clip(.subject), list(.violations))]
pub struct ValidationErrors {
    /// What was validated (`resource node-1`, `request by task-1`).
    pub subject: String,
    /// The problems, in field order.
    pub violations: Vec<Violation>,
}

fn list(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationErrors {
    /// `Ok` when `violations` is empty, the error otherwise.
    pub fn check(
        subject: impl Into<String>,
        violations: Vec<Violation>,
    ) -> Result<(), ValidationErrors> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors {
                subject: subject.into(),
                violations,
            })
        }
    }

    /// [`check`](Self::check) with a subject built only when there is something to report,
    /// so that a passing check on a hot path formats nothing.
    pub fn check_with(
        subject: impl FnOnce() -> String,
        violations: Vec<Violation>,
    ) -> Result<(), ValidationErrors> {
        if violations.is_empty() {
            Ok(())
        } else {
            Self::check(subject(), violations)
        }
    }
}
