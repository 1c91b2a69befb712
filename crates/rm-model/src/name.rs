//! Names and identifiers: well-formed, cheap to clone, never bare strings.
//!
//! Every name newtype shares one rule so that names survive being used as label values, file
//! names and metric labels: 1 to N characters of ASCII letters, digits and `-_./:`, starting with
//! a letter or digit. They hold an `Arc<str>`, so a clone is a reference-count increment.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A name or identifier that is not well-formed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("use {name:?} as a {kind}: {reason}")]
pub struct NameError {
    /// What the name was for (`resource name`, `unit`, `label key`, …).
    pub kind: &'static str,
    /// The name that was given, [clipped](crate::clip) when long.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks the shared name rule.
pub(crate) fn check_name(kind: &'static str, name: &str, max_len: usize) -> Result<(), NameError> {
    let fail = |reason| {
        Err(NameError {
            kind,
            name: crate::clip(name),
            reason,
        })
    };
    let Some(first) = name.chars().next() else {
        return fail("it is empty");
    };
    if name.len() > max_len {
        return fail("it is too long");
    }
    if !first.is_ascii_alphanumeric() {
        return fail("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
    {
        return fail("it may hold only ASCII letters, digits and -_./:");
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl Clone for $name {
            fn clone(&self) -> $name {
                $name(Arc::clone(&self.0))
            }

            /// Leaves the reference count alone when both already share one text (a
            /// record refilled for the same requester, say).
            fn clone_from(&mut self, source: &$name) {
                if !Arc::ptr_eq(&self.0, &source.0) {
                    self.0 = Arc::clone(&source.0);
                }
            }
        }

        impl $name {
            #[doc = concat!("A ", $kind, ", checked against the name rule (at most ", stringify!($max), " characters).")]
            pub fn new(name: &str) -> Result<$name, NameError> {
                check_name($kind, name, $max)?;
                Ok($name(Arc::from(name)))
            }

            #[doc = concat!("The ", $kind, " as text.")]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(name: &str) -> Result<$name, NameError> {
                $name::new(name)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(name: &str) -> Result<$name, NameError> {
                $name::new(name)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(name: String) -> Result<$name, NameError> {
                $name::new(&name)
            }
        }

        impl TryFrom<&String> for $name {
            type Error = NameError;
            fn try_from(name: &String) -> Result<$name, NameError> {
                $name::new(name)
            }
        }

        impl From<&$name> for $name {
            fn from(name: &$name) -> $name {
                name.clone()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::new(&name).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// The name of a registered resource, unique within a ledger (`compute-node-1`).
    ResourceName,
    "resource name",
    253
);

name_type!(
    /// Who asks for resources: a task, job or tenant of the embedding orchestrator (`task-1`).
    RequesterId,
    "requester id",
    253
);

name_type!(
    /// A label key (`zone`, `topology.kubernetes.io/zone`) on a resource or a request.
    LabelKey,
    "label key",
    253
);

name_type!(
    /// The name of a capability in a [`ResourceSpecification`](crate::ResourceSpecification)
    /// (`cores`, `arch`, `gpu.model`).
    CapabilityName,
    "capability name",
    253
);

name_type!(
    /// A key that ties requirements of one request to the same resource (co-location).
    ColocationGroup,
    "co-location group",
    63
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_rule() {
        for good in ["a", "node-1", "zone.example/rack:7", "A_B", "9"] {
            assert!(ResourceName::new(good).is_ok(), "{good}");
        }
        let cases = [
            ("", "it is empty"),
            ("-a", "it must start with a letter or digit"),
            ("a b", "it may hold only ASCII letters, digits and -_./:"),
            ("é", "it must start with a letter or digit"),
        ];
        for (bad, reason) in cases {
            let err = ResourceName::new(bad).unwrap_err();
            assert_eq!(err.reason, reason, "{bad:?}");
            assert_eq!(err.kind, "resource name");
        }
        assert!(ColocationGroup::new(&"x".repeat(64)).is_err());
        assert!(ColocationGroup::new(&"x".repeat(63)).is_ok());
        let err = RequesterId::new("").unwrap_err();
        assert_eq!(err.to_string(), "use \"\" as a requester id: it is empty");
    }

    #[test]
    fn serde_checks_the_rule() {
        let name: ResourceName = serde_json::from_str("\"gpu-7\"").unwrap();
        assert_eq!(name, "gpu-7");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"gpu-7\"");
        assert!(serde_json::from_str::<ResourceName>("\"bad name\"").is_err());
    }

    #[test]
    fn clone_from_takes_the_source_text() {
        let mut name = RequesterId::new("a").unwrap();
        name.clone_from(&RequesterId::new("b").unwrap());
        assert_eq!(name, "b");
        let shared = name.clone();
        name.clone_from(&shared);
        assert_eq!(name, "b");
    }
}
