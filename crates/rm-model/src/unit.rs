//! Units of measure and exact conversion between compatible ones.
//!
//! A unit belongs to a [`Dimension`]; units of one dimension convert into each other by exact
//! integer factors (`cores` and `millicores`, `bytes` and `GiB`), and a conversion that would
//! lose precision is an error, never a rounding. Names that are not known units are custom units
//! (`licences`, `slots`), each its own dimension.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::name::{NameError, check_name};
use crate::quantity::Quantity;

/// What a unit measures. Units convert only within one dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// Processor time: `cores`, `millicores`.
    Cpu,
    /// Bytes of memory or storage: `bytes`, `KiB` … `PiB`, `kB` … `PB`.
    Bytes,
    /// Network bandwidth: `bps`, `Kbps`, `Mbps`, `Gbps`, `Tbps`.
    BitsPerSecond,
    /// Whole devices such as GPUs: `devices`.
    Devices,
    /// A custom unit, which is its own dimension.
    Custom(Arc<str>),
}

struct KnownUnit {
    name: &'static str,
    aliases: &'static [&'static str],
    dimension: Dimension,
    /// How many of the dimension's smallest unit one of this unit is.
    factor: u64,
}

const KIB: u64 = 1024;

static KNOWN: [KnownUnit; 17] = [
    KnownUnit {
        name: "cores",
        aliases: &["core", "cpu", "cpus"],
        dimension: Dimension::Cpu,
        factor: 1000,
    },
    KnownUnit {
        name: "millicores",
        aliases: &["millicore", "millicpu"],
        dimension: Dimension::Cpu,
        factor: 1,
    },
    KnownUnit {
        name: "bytes",
        aliases: &["byte", "B"],
        dimension: Dimension::Bytes,
        factor: 1,
    },
    KnownUnit {
        name: "KiB",
        aliases: &["Ki"],
        dimension: Dimension::Bytes,
        factor: KIB,
    },
    KnownUnit {
        name: "MiB",
        aliases: &["Mi"],
        dimension: Dimension::Bytes,
        factor: KIB.pow(2),
    },
    KnownUnit {
        name: "GiB",
        aliases: &["Gi"],
        dimension: Dimension::Bytes,
        factor: KIB.pow(3),
    },
    KnownUnit {
        name: "TiB",
        aliases: &["Ti"],
        dimension: Dimension::Bytes,
        factor: KIB.pow(4),
    },
    KnownUnit {
        name: "PiB",
        aliases: &["Pi"],
        dimension: Dimension::Bytes,
        factor: KIB.pow(5),
    },
    KnownUnit {
        name: "kB",
        aliases: &["KB"],
        dimension: Dimension::Bytes,
        factor: 1000,
    },
    KnownUnit {
        name: "MB",
        aliases: &[],
        dimension: Dimension::Bytes,
        factor: 1000u64.pow(2),
    },
    KnownUnit {
        name: "GB",
        aliases: &[],
        dimension: Dimension::Bytes,
        factor: 1000u64.pow(3),
    },
    KnownUnit {
        name: "TB",
        aliases: &[],
        dimension: Dimension::Bytes,
        factor: 1000u64.pow(4),
    },
    KnownUnit {
        name: "bps",
        aliases: &["bit/s"],
        dimension: Dimension::BitsPerSecond,
        factor: 1,
    },
    KnownUnit {
        name: "Kbps",
        aliases: &["kbps"],
        dimension: Dimension::BitsPerSecond,
        factor: 1000,
    },
    KnownUnit {
        name: "Mbps",
        aliases: &[],
        dimension: Dimension::BitsPerSecond,
        factor: 1000u64.pow(2),
    },
    KnownUnit {
        name: "Gbps",
        aliases: &[],
        dimension: Dimension::BitsPerSecond,
        factor: 1000u64.pow(3),
    },
    KnownUnit {
        name: "devices",
        aliases: &["device", "gpus", "gpu"],
        dimension: Dimension::Devices,
        factor: 1,
    },
];

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    Known(u8),
    Custom(Arc<str>),
}

/// A unit of measure, such as `cores`, `GiB` or a custom `licences`.
///
/// ```
/// use rm_model::{Quantity, Unit};
///
/// let gib: Unit = "Gi".parse()?;
/// assert_eq!(gib, Unit::GIB);
/// let bytes = gib.convert(Quantity::from(2), &Unit::BYTES)?;
/// assert_eq!(bytes, Quantity::try_from(2u64 << 30)?);
/// // Half a core is 500 millicores, exactly.
/// assert_eq!(Unit::CORES.convert("0.5".parse()?, &Unit::MILLICORES)?, Quantity::from(500));
/// // Bytes and cores do not mix.
/// assert!(Unit::BYTES.convert(Quantity::from(1), &Unit::CORES).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unit(Repr);

/// Why a unit could not be read or a quantity could not be converted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// The unit name is not well-formed.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The two units measure different things.
    #[error("convert from {from} to {to}: the units measure different dimensions")]
    Incompatible {
        /// The unit converted from.
        from: Unit,
        /// The unit converted to.
        to: Unit,
    },
    /// The converted amount is not a whole number of thousandths of the target unit.
    #[error("convert {quantity} {from} to {to}: the result is finer than 1m {to}")]
    Inexact {
        /// The amount converted.
        quantity: Quantity,
        /// The unit converted from.
        from: Unit,
        /// The unit converted to.
        to: Unit,
    },
    /// The converted amount is out of range.
    #[error("convert {quantity} {from} to {to}: the result is out of range")]
    Overflow {
        /// The amount converted.
        quantity: Quantity,
        /// The unit converted from.
        from: Unit,
        /// The unit converted to.
        to: Unit,
    },
}

impl Unit {
    /// Whole processor cores.
    pub const CORES: Unit = Unit(Repr::Known(0));
    /// Thousandths of a core.
    pub const MILLICORES: Unit = Unit(Repr::Known(1));
    /// Bytes.
    pub const BYTES: Unit = Unit(Repr::Known(2));
    /// 2¹⁰ bytes.
    pub const KIB: Unit = Unit(Repr::Known(3));
    /// 2²⁰ bytes.
    pub const MIB: Unit = Unit(Repr::Known(4));
    /// 2³⁰ bytes.
    pub const GIB: Unit = Unit(Repr::Known(5));
    /// 2⁴⁰ bytes.
    pub const TIB: Unit = Unit(Repr::Known(6));
    /// Bits per second.
    pub const BPS: Unit = Unit(Repr::Known(12));
    /// 10⁹ bits per second.
    pub const GBPS: Unit = Unit(Repr::Known(15));
    /// Whole devices (GPUs, accelerators).
    pub const DEVICES: Unit = Unit(Repr::Known(16));

    /// Reads a unit name: a known unit or one of its aliases (`Gi` is `GiB`, `core` is
    /// `cores`), otherwise a custom unit with that name.
    pub fn parse(name: &str) -> Result<Unit, UnitError> {
        if let Some(index) = KNOWN
            .iter()
            .position(|known| known.name == name || known.aliases.contains(&name))
        {
            return Ok(Unit(Repr::Known(index as u8)));
        }
        check_name("unit", name, 63)?;
        Ok(Unit(Repr::Custom(Arc::from(name))))
    }

    /// A custom unit (`licences`, `slots`). Known names give the known unit.
    pub fn custom(name: &str) -> Result<Unit, UnitError> {
        Unit::parse(name)
    }

    /// The canonical name (`GiB` for a unit read as `Gi`).
    pub fn name(&self) -> &str {
        match &self.0 {
            Repr::Known(index) => KNOWN[usize::from(*index)].name,
            Repr::Custom(name) => name,
        }
    }

    /// What the unit measures.
    pub fn dimension(&self) -> Dimension {
        match &self.0 {
            Repr::Known(index) => KNOWN[usize::from(*index)].dimension.clone(),
            Repr::Custom(name) => Dimension::Custom(name.clone()),
        }
    }

    /// Whether the unit is a custom one.
    pub fn is_custom(&self) -> bool {
        matches!(self.0, Repr::Custom(_))
    }

    /// Whether quantities in this unit can be converted to `other` at all.
    pub fn is_convertible_to(&self, other: &Unit) -> bool {
        self == other || self.dimension() == other.dimension()
    }

    fn factor(&self) -> u64 {
        match &self.0 {
            Repr::Known(index) => KNOWN[usize::from(*index)].factor,
            Repr::Custom(_) => 1,
        }
    }

    /// Converts `quantity`, measured in `self`, to the unit `to`, exactly.
    pub fn convert(&self, quantity: Quantity, to: &Unit) -> Result<Quantity, UnitError> {
        if self == to {
            return Ok(quantity);
        }
        if self.dimension() != to.dimension() {
            return Err(UnitError::Incompatible {
                from: self.clone(),
                to: to.clone(),
            });
        }
        let numerator = i128::from(quantity.as_milli()) * i128::from(self.factor());
        let denominator = i128::from(to.factor());
        if numerator % denominator != 0 {
            return Err(UnitError::Inexact {
                quantity,
                from: self.clone(),
                to: to.clone(),
            });
        }
        i64::try_from(numerator / denominator)
            .map(|milli| Quantity::from_milli(milli).with_format(quantity.format()))
            .map_err(|_| UnitError::Overflow {
                quantity,
                from: self.clone(),
                to: to.clone(),
            })
    }
}

impl Unit {
    /// Converts `quantity` to `to`, rounding toward zero where the exact result is finer than
    /// `1m`: for reports (what is free, in the asker's unit), never for accounting.
    pub fn convert_floor(&self, quantity: Quantity, to: &Unit) -> Result<Quantity, UnitError> {
        match self.convert(quantity, to) {
            Err(UnitError::Inexact { .. }) => {
                let numerator = i128::from(quantity.as_milli()) * i128::from(self.factor());
                i64::try_from(numerator / i128::from(to.factor()))
                    .map(|milli| Quantity::from_milli(milli).with_format(quantity.format()))
                    .map_err(|_| UnitError::Overflow {
                        quantity,
                        from: self.clone(),
                        to: to.clone(),
                    })
            }
            other => other,
        }
    }
}

impl Unit {
    /// Compares `a` in `self` with `b` in `other` exactly, without converting either (so
    /// amounts that do not convert exactly still compare).
    pub fn compare(
        &self,
        a: Quantity,
        other: &Unit,
        b: Quantity,
    ) -> Result<std::cmp::Ordering, UnitError> {
        if self.dimension() != other.dimension() {
            return Err(UnitError::Incompatible {
                from: self.clone(),
                to: other.clone(),
            });
        }
        let left = i128::from(a.as_milli()) * i128::from(self.factor());
        let right = i128::from(b.as_milli()) * i128::from(other.factor());
        Ok(left.cmp(&right))
    }
}

impl Unit {
    /// `quantity` (in this unit) in thousandths of the dimension's smallest unit (millicores,
    /// millibytes, …): an exact common scale for sums and comparisons across units.
    pub fn to_base_milli(&self, quantity: Quantity) -> i128 {
        i128::from(quantity.as_milli()) * i128::from(self.factor())
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl fmt::Debug for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unit({})", self.name())
    }
}

impl FromStr for Unit {
    type Err = UnitError;
    fn from_str(name: &str) -> Result<Unit, UnitError> {
        Unit::parse(name)
    }
}

impl TryFrom<&str> for Unit {
    type Error = UnitError;
    fn try_from(name: &str) -> Result<Unit, UnitError> {
        Unit::parse(name)
    }
}

impl Serialize for Unit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Unit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Unit, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Unit::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(amount: &str, from: &str, to: &str, expected: Result<&str, &str>) {
        let from: Unit = from.parse().unwrap();
        let to: Unit = to.parse().unwrap();
        let result = from.convert(amount.parse().unwrap(), &to);
        match expected {
            Ok(value) => assert_eq!(
                result,
                Ok(value.parse().unwrap()),
                "{amount} {from} -> {to}"
            ),
            Err(kind) => {
                let err = result.expect_err("conversion should fail");
                let debug = format!("{err:?}");
                assert!(debug.starts_with(kind), "{amount} {from} -> {to}: {debug}");
            }
        }
    }

    #[test]
    fn converts_exactly_within_a_dimension() {
        check("2", "cores", "millicores", Ok("2000"));
        check("500", "millicores", "cores", Ok("500m"));
        check("1", "millicores", "cores", Ok("1m"));
        check("1", "GiB", "bytes", Ok("1073741824"));
        check("512", "MiB", "GiB", Ok("500m"));
        check("1", "GB", "MB", Ok("1000"));
        check("1", "Gbps", "Mbps", Ok("1000"));
        check("3", "gpus", "devices", Ok("3"));
        check("5", "licences", "licences", Ok("5"));
    }

    #[test]
    fn refuses_lossy_or_mixed_conversions() {
        check("1", "bytes", "GiB", Err("Inexact"));
        check("1m", "millicores", "cores", Err("Inexact"));
        check("1", "cores", "bytes", Err("Incompatible"));
        check("1", "licences", "slots", Err("Incompatible"));
        check("1", "devices", "cores", Err("Incompatible"));
        check("9000000000000", "TiB", "bytes", Err("Overflow"));
    }

    #[test]
    fn exact_comparison_across_units() {
        use std::cmp::Ordering::*;
        let q = |s: &str| s.parse::<Quantity>().unwrap();
        assert_eq!(Unit::BYTES.compare(q("1"), &Unit::GIB, q("1m")), Ok(Less));
        assert_eq!(Unit::MIB.compare(q("1024"), &Unit::GIB, q("1")), Ok(Equal));
        assert_eq!(
            Unit::CORES.compare(q("2"), &Unit::MILLICORES, q("1999")),
            Ok(Greater)
        );
        assert!(Unit::CORES.compare(q("1"), &Unit::BYTES, q("1")).is_err());
    }

    #[test]
    fn floor_conversion_for_reports() {
        let one_and_a_bit = Quantity::try_from((1u64 << 30) + 1).unwrap();
        let gib = Unit::BYTES
            .convert_floor(one_and_a_bit, &Unit::GIB)
            .unwrap();
        assert_eq!(gib, Quantity::from(1));
        assert!(
            Unit::BYTES
                .convert_floor(one_and_a_bit, &Unit::CORES)
                .is_err()
        );
    }

    #[test]
    fn names_and_aliases() {
        assert_eq!(Unit::parse("Gi").unwrap().name(), "GiB");
        assert_eq!(Unit::parse("core").unwrap(), Unit::CORES);
        assert_eq!(Unit::parse("gpu").unwrap(), Unit::DEVICES);
        assert_eq!(Unit::parse("Gbps").unwrap(), Unit::GBPS);
        assert_eq!(Unit::parse("bps").unwrap(), Unit::BPS);
        assert_eq!(Unit::parse("TiB").unwrap(), Unit::TIB);
        assert_eq!(Unit::parse("KiB").unwrap(), Unit::KIB);
        assert_eq!(Unit::parse("MiB").unwrap(), Unit::MIB);
        let licences = Unit::parse("licences").unwrap();
        assert!(licences.is_custom());
        assert_eq!(licences.dimension(), Dimension::Custom("licences".into()));
        assert!(Unit::parse("").is_err());
        assert!(Unit::parse("two words").is_err());
    }

    #[test]
    fn serde_as_the_name() {
        assert_eq!(serde_json::to_string(&Unit::GIB).unwrap(), "\"GiB\"");
        assert_eq!(serde_json::from_str::<Unit>("\"Mi\"").unwrap(), Unit::MIB);
        assert!(serde_json::from_str::<Unit>("\"\"").is_err());
    }
}
