//! Exact quantities written in the Kubernetes quantity syntax.
//!
//! A [`Quantity`] is a signed integer count of thousandths of a unit, so accounting is exact and
//! never touches floating point. It parses the forms people already write in pod specs and
//! configuration files (`500m`, `0.5`, `2`, `2Gi`, `512Mi`, `10G`, `1e3`, `100.035k`) and prints
//! them back in canonical form (`0.5` prints `500m`, `1024Mi` prints `1Gi`).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Thousandths of a unit per unit: the fixed resolution of every [`Quantity`].
pub const MILLI_PER_UNIT: i64 = 1000;

/// How a quantity prints: the suffix family it was written with.
///
/// Kubernetes keeps the family a quantity was parsed with and prints in it, so `2Gi` stays in
/// binary suffixes and `500m` in decimal ones. The format never takes part in comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantityFormat {
    /// Decimal SI suffixes: `m`, (none), `k`, `M`, `G`, `T`, `P`.
    #[default]
    DecimalSi,
    /// Binary suffixes: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`, falling back to decimal for values
    /// that are not whole multiples of 1024.
    BinarySi,
    /// Decimal exponents: `1e3`, `500e-3`.
    DecimalExponent,
}

/// An exact amount: a signed integer number of thousandths (`1m`) of a unit.
///
/// The range is ±9.2 × 10¹⁵ units (about 8 PiB when the unit is bytes). Values finer than `1m`
/// and values outside the range are errors, never silently rounded or wrapped.
///
/// Equality, ordering and hashing compare the amount only: `1Gi == 1073741824`.
///
/// ```
/// use rm_model::Quantity;
///
/// let half: Quantity = "0.5".parse()?;
/// assert_eq!(half.to_string(), "500m");
/// assert_eq!("1024Mi".parse::<Quantity>()?.to_string(), "1Gi");
/// assert_eq!(half.checked_add(Quantity::from(2))?, "2500m".parse()?);
/// assert!("1.1.M".parse::<Quantity>().is_err());
/// # Ok::<(), rm_model::QuantityError>(())
/// ```
#[derive(Clone, Copy)]
pub struct Quantity {
    milli: i64,
    format: QuantityFormat,
}

/// Why a quantity could not be parsed or computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantityError {
    /// The input was the empty string.
    #[error("parse quantity: the input is empty")]
    Empty,
    /// The input is not in quantity syntax.
    #[error("parse quantity {input:?}: {reason}")]
    Invalid {
        /// The text that was given, [clipped](crate::clip) when long.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The value does not fit the range of a quantity.
    #[error("parse quantity {input:?}: the value is out of range (at most 9.2e15 units)")]
    OutOfRange {
        /// The text that was given, [clipped](crate::clip) when long.
        input: String,
    },
    /// The value is finer than the resolution of one thousandth.
    #[error("parse quantity {input:?}: the value is finer than the resolution of 1m")]
    TooPrecise {
        /// The text that was given, [clipped](crate::clip) when long.
        input: String,
    },
    /// An arithmetic operation overflowed the range of a quantity.
    #[error("compute {operation}: the result is out of range")]
    Overflow {
        /// The operation that overflowed, for example `add`.
        operation: &'static str,
    },
    /// A floating-point number was given where an exact quantity is needed.
    #[error("read quantity from the float {value}: write it as a string such as \"500m\"")]
    Float {
        /// The number that was given, as printed.
        value: String,
    },
}

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity::from_milli(0);
    /// The largest quantity.
    pub const MAX: Quantity = Quantity::from_milli(i64::MAX);
    /// The smallest (most negative) quantity.
    pub const MIN: Quantity = Quantity::from_milli(i64::MIN);

    /// A quantity of `milli` thousandths of a unit (`from_milli(500)` is `500m`).
    pub const fn from_milli(milli: i64) -> Quantity {
        Quantity {
            milli,
            format: QuantityFormat::DecimalSi,
        }
    }

    /// A whole number of units. Every `i32` fits, so this cannot fail; use
    /// [`Quantity::try_from_units`] for larger values.
    pub const fn from_units(units: i32) -> Quantity {
        Quantity::from_milli(units as i64 * MILLI_PER_UNIT)
    }

    /// A whole number of units, failing when it is out of range.
    pub fn try_from_units(units: i64) -> Result<Quantity, QuantityError> {
        units
            .checked_mul(MILLI_PER_UNIT)
            .map(Quantity::from_milli)
            .ok_or(QuantityError::Overflow {
                operation: "from units",
            })
    }

    /// Parses the Kubernetes quantity syntax: an optional sign, digits with an optional
    /// fraction, and an optional suffix (`m`, `k`, `M`, `G`, `T`, `P`, `E`, `n`, `u`, `Ki` to
    /// `Ei`, or an exponent `e3` / `E-3`). Leading or trailing white space is an error.
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        parse(input)
    }

    /// The amount in thousandths of a unit.
    pub const fn as_milli(self) -> i64 {
        self.milli
    }

    /// The suffix family this quantity prints in.
    pub const fn format(self) -> QuantityFormat {
        self.format
    }

    /// The same amount, printed in another suffix family.
    pub const fn with_format(self, format: QuantityFormat) -> Quantity {
        Quantity {
            milli: self.milli,
            format,
        }
    }

    /// Whether the amount is zero.
    pub const fn is_zero(self) -> bool {
        self.milli == 0
    }

    /// Whether the amount is below zero.
    pub const fn is_negative(self) -> bool {
        self.milli < 0
    }

    /// Whether the amount is above zero.
    pub const fn is_positive(self) -> bool {
        self.milli > 0
    }

    /// Whole units, rounding toward negative infinity.
    pub const fn to_units_floor(self) -> i64 {
        self.milli.div_euclid(MILLI_PER_UNIT)
    }

    /// Whole units, rounding toward positive infinity (`-9.01` gives `-9`). Kubernetes'
    /// `Value()` rounds away from zero instead: see [`Quantity::to_units_away_from_zero`].
    pub const fn to_units_ceil(self) -> i64 {
        let floor = self.milli.div_euclid(MILLI_PER_UNIT);
        if self.milli.rem_euclid(MILLI_PER_UNIT) == 0 {
            floor
        } else {
            floor + 1
        }
    }

    /// Whole units, rounding away from zero: Kubernetes' `Value()` (`9.01` gives `10`,
    /// `-9.01` gives `-10`).
    pub const fn to_units_away_from_zero(self) -> i64 {
        if self.milli < 0 {
            self.to_units_floor()
        } else {
            self.to_units_ceil()
        }
    }

    /// `self + other`, or an overflow error. The result prints in `self`'s format unless `self`
    /// is zero.
    pub fn checked_add(self, other: Quantity) -> Result<Quantity, QuantityError> {
        self.milli
            .checked_add(other.milli)
            .map(|milli| self.derived(other, milli))
            .ok_or(QuantityError::Overflow { operation: "add" })
    }

    /// `self - other`, or an overflow error.
    pub fn checked_sub(self, other: Quantity) -> Result<Quantity, QuantityError> {
        self.milli
            .checked_sub(other.milli)
            .map(|milli| self.derived(other, milli))
            .ok_or(QuantityError::Overflow {
                operation: "subtract",
            })
    }

    /// `self × factor`, or an overflow error.
    pub fn checked_mul(self, factor: i64) -> Result<Quantity, QuantityError> {
        self.milli
            .checked_mul(factor)
            .map(|milli| self.with_milli(milli))
            .ok_or(QuantityError::Overflow {
                operation: "multiply",
            })
    }

    /// `-self`, or an overflow error for [`Quantity::MIN`].
    pub fn checked_neg(self) -> Result<Quantity, QuantityError> {
        self.milli
            .checked_neg()
            .map(|milli| self.with_milli(milli))
            .ok_or(QuantityError::Overflow {
                operation: "negate",
            })
    }

    /// `self - other`, clamped at zero: what is left of `self` after taking `other`.
    pub fn saturating_sub_to_zero(self, other: Quantity) -> Quantity {
        self.with_milli(self.milli.saturating_sub(other.milli).max(0))
    }

    /// The sum of `quantities`, or an overflow error.
    pub fn checked_sum<I>(quantities: I) -> Result<Quantity, QuantityError>
    where
        I: IntoIterator<Item = Quantity>,
    {
        quantities
            .into_iter()
            .try_fold(Quantity::ZERO, Quantity::checked_add)
    }

    /// `self / whole` as a fraction, for reports and dashboards only: accounting never uses it.
    /// Returns 0 when `whole` is zero.
    pub fn ratio_of(self, whole: Quantity) -> f64 {
        if whole.milli == 0 {
            0.0
        } else {
            self.milli as f64 / whole.milli as f64
        }
    }

    /// `self / whole` in parts per million, rounded down and clamped to `0..=1_000_000` when
    /// `self` lies between zero and `whole`: exact integer arithmetic for scoring.
    pub fn parts_per_million_of(self, whole: Quantity) -> i64 {
        if whole.milli <= 0 {
            return 0;
        }
        // 64-bit division when the product fits (the common case), 128-bit otherwise.
        if let Some(scaled) = self.milli.checked_mul(1_000_000) {
            return scaled / whole.milli;
        }
        let ppm = i128::from(self.milli) * 1_000_000 / i128::from(whole.milli);
        ppm.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    const fn with_milli(self, milli: i64) -> Quantity {
        Quantity {
            milli,
            format: self.format,
        }
    }

    fn derived(self, other: Quantity, milli: i64) -> Quantity {
        let format = if self.milli == 0 {
            other.format
        } else {
            self.format
        };
        Quantity { milli, format }
    }
}

impl Default for Quantity {
    fn default() -> Quantity {
        Quantity::ZERO
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.milli == other.milli
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        self.milli.cmp(&other.milli)
    }
}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.milli.hash(state);
    }
}

macro_rules! from_small_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Quantity {
            fn from(units: $t) -> Quantity {
                Quantity::from_milli(i64::from(units) * MILLI_PER_UNIT)
            }
        }
    )*};
}
from_small_int!(i8, u8, i16, u16, i32, u32);

impl TryFrom<i64> for Quantity {
    type Error = QuantityError;
    fn try_from(units: i64) -> Result<Quantity, QuantityError> {
        Quantity::try_from_units(units)
    }
}

impl TryFrom<u64> for Quantity {
    type Error = QuantityError;
    fn try_from(units: u64) -> Result<Quantity, QuantityError> {
        i64::try_from(units)
            .map_err(|_| QuantityError::Overflow {
                operation: "from units",
            })
            .and_then(Quantity::try_from_units)
    }
}

impl TryFrom<usize> for Quantity {
    type Error = QuantityError;
    fn try_from(units: usize) -> Result<Quantity, QuantityError> {
        Quantity::try_from(units as u64)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(input: &str) -> Result<Quantity, QuantityError> {
        parse(input)
    }
}

impl TryFrom<&str> for Quantity {
    type Error = QuantityError;
    fn try_from(input: &str) -> Result<Quantity, QuantityError> {
        parse(input)
    }
}

/// How a suffix scales the number in front of it.
#[derive(Clone, Copy)]
enum Scale {
    /// Times 10 to this power.
    Decimal(i64),
    /// Times 1024 to this power.
    Binary(u32),
}

/// Why text does not read as a quantity, before the text is attached: reading costs no
/// allocation until a caller asks for the [`QuantityError`] (constraints compare label
/// values that are mostly not numbers, once per candidate resource).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Failure {
    Empty,
    Invalid(&'static str),
    OutOfRange,
    TooPrecise,
}

impl Failure {
    fn with_input(self, input: &str) -> QuantityError {
        match self {
            Failure::Empty => QuantityError::Empty,
            Failure::Invalid(reason) => QuantityError::Invalid {
                input: crate::clip(input),
                reason,
            },
            Failure::OutOfRange => QuantityError::OutOfRange {
                input: crate::clip(input),
            },
            Failure::TooPrecise => QuantityError::TooPrecise {
                input: crate::clip(input),
            },
        }
    }
}

fn parse(input: &str) -> Result<Quantity, QuantityError> {
    read(input).map_err(|failure| failure.with_input(input))
}

fn parse_suffix(suffix: &str) -> Result<(Scale, QuantityFormat), Failure> {
    use QuantityFormat::{BinarySi, DecimalExponent, DecimalSi};
    let decimal = |exp| Ok((Scale::Decimal(exp), DecimalSi));
    let binary = |pow| Ok((Scale::Binary(pow), BinarySi));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ => {
            let exponent = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or(Failure::Invalid("unknown suffix"))?;
            let digits = exponent
                .strip_prefix('-')
                .or_else(|| exponent.strip_prefix('+'))
                .unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Failure::Invalid("the exponent is not an integer"));
            }
            // Saturating: an exponent this large is met only by as many digits, and the
            // arithmetic below decides exactly whether the value is in range.
            let value = digits.bytes().fold(0i64, |value, digit| {
                value
                    .saturating_mul(10)
                    .saturating_add(i64::from(digit - b'0'))
            });
            let value = if exponent.starts_with('-') {
                -value
            } else {
                value
            };
            Ok((Scale::Decimal(value), DecimalExponent))
        }
    }
}

/// A 256-bit unsigned integer (little-endian limbs): room for the significant digits of any
/// quantity in range, the longest being a binary suffix with a long fraction (such as
/// `0.000…0005Ki`, whose digits are divided by powers of five before the value is known).
#[derive(Clone, Copy)]
struct Wide([u64; 4]);

impl Wide {
    /// `self × factor + addend`; false (leaving `self` unusable) when it does not fit.
    fn mul_add(&mut self, factor: u64, addend: u64) -> bool {
        let mut carry = u128::from(addend);
        for limb in &mut self.0 {
            let value = u128::from(*limb) * u128::from(factor) + carry;
            *limb = value as u64;
            carry = value >> 64;
        }
        carry == 0
    }

    /// Divides by `divisor` in place; returns the remainder.
    fn div_rem(&mut self, divisor: u64) -> u64 {
        let mut remainder: u128 = 0;
        for limb in self.0.iter_mut().rev() {
            let current = (remainder << 64) | u128::from(*limb);
            *limb = (current / u128::from(divisor)) as u64;
            remainder = current % u128::from(divisor);
        }
        remainder as u64
    }

    /// The value, when it is at most `limit`.
    fn at_most(self, limit: u64) -> Option<u64> {
        (self.0[1..].iter().all(|&limb| limb == 0) && self.0[0] <= limit).then_some(self.0[0])
    }
}

/// [`parse`] without building an error.
pub(crate) fn read(input: &str) -> Result<Quantity, Failure> {
    if input.is_empty() {
        return Err(Failure::Empty);
    }
    let bytes = input.as_bytes();
    let mut pos = 0;
    let negative = match bytes[0] {
        b'-' => {
            pos = 1;
            true
        }
        b'+' => {
            pos = 1;
            false
        }
        _ => false,
    };
    let int_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_digits = &input[int_start..pos];
    let mut frac_digits = "";
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_digits = &input[frac_start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(Failure::Invalid("expected a number"));
    }
    let (scale, format) = parse_suffix(&input[pos..])?;

    // value = digits × 10^(exponent - frac_len), in thousandths: × 10^3. Zeros that end the
    // digits go into the power, so `1000…000e-41` is 1 however many zeros it has; then the
    // value is digits × 2^twos × 5^fives, exact in 256 bits or decided without them.
    let int_digits = int_digits.trim_start_matches('0');
    let frac_digits = frac_digits.trim_end_matches('0');
    let (int_digits, trailing_zeros) = if frac_digits.is_empty() {
        let trimmed = int_digits.trim_end_matches('0');
        (trimmed, int_digits.len() - trimmed.len())
    } else {
        (int_digits, 0)
    };
    let (exponent, binary) = match scale {
        Scale::Decimal(exp) => (exp, 0),
        Scale::Binary(pow) => (0, i64::from(pow) * 10),
    };
    let fives = exponent
        .saturating_add(3)
        .saturating_add(trailing_zeros as i64)
        .saturating_sub(frac_digits.len() as i64);
    let twos = fives.saturating_add(binary);
    // The digits in 64 bits while they fit (every value in range but a few long fractions
    // with a binary suffix), in 256 bits beyond.
    let mut small: u64 = 0;
    let mut wide: Option<Wide> = None;
    for digit in int_digits.bytes().chain(frac_digits.bytes()) {
        let digit = u64::from(digit - b'0');
        let fits = match &mut wide {
            None => match small.checked_mul(10).and_then(|m| m.checked_add(digit)) {
                Some(value) => {
                    small = value;
                    true
                }
                None => {
                    let mut value = Wide([small, 0, 0, 0]);
                    let fits = value.mul_add(10, digit);
                    wide = Some(value);
                    fits
                }
            },
            Some(value) => value.mul_add(10, digit),
        };
        if !fits {
            // More than 77 significant digits, the last not a zero: a whole value would be
            // far out of range, and a fraction cannot end on a whole thousandth.
            return Err(if twos >= 0 {
                Failure::OutOfRange
            } else {
                Failure::TooPrecise
            });
        }
    }
    // The largest magnitude: |i64::MIN| for a negative value.
    let limit = if negative {
        i64::MIN.unsigned_abs()
    } else {
        i64::MAX as u64
    };
    let magnitude = match wide {
        None if small == 0 => 0,
        None if fives >= 0 && twos >= 0 => {
            // The common case, whole thousandths: one multiplication by each power.
            let scaled = u32::try_from(fives)
                .ok()
                .and_then(|fives| 5u128.checked_pow(fives))
                .zip(
                    u32::try_from(twos)
                        .ok()
                        .and_then(|twos| 2u128.checked_pow(twos)),
                )
                .and_then(|(five, two)| u128::from(small).checked_mul(five)?.checked_mul(two));
            scaled
                .and_then(|value| u64::try_from(value).ok())
                .filter(|&value| value <= limit)
                .ok_or(Failure::OutOfRange)?
        }
        _ => {
            let mut digits = wide.unwrap_or(Wide([small, 0, 0, 0]));
            // Divisions first: a value finer than 1m is too precise whatever its size.
            for _ in fives..0 {
                if digits.div_rem(5) != 0 {
                    return Err(Failure::TooPrecise);
                }
            }
            for _ in twos..0 {
                if digits.div_rem(2) != 0 {
                    return Err(Failure::TooPrecise);
                }
            }
            for (times, factor) in [(twos, 2), (fives, 5)] {
                for _ in 0..times {
                    if !digits.mul_add(factor, 0) || digits.at_most(limit).is_none() {
                        return Err(Failure::OutOfRange);
                    }
                }
            }
            digits.at_most(limit).ok_or(Failure::OutOfRange)?
        }
    };
    let milli = if negative {
        0i64.wrapping_sub_unsigned(magnitude)
    } else {
        magnitude as i64
    };
    Ok(Quantity { milli, format })
}

/// Splits `milli` into a mantissa and a power of ten (a multiple of 3, at most 18) with no
/// further factor of 1000 left in the mantissa.
fn strip_thousands(mut milli: u64) -> (u64, u32) {
    let mut exp = 0;
    while exp < 18 && milli.is_multiple_of(1000) {
        milli /= 1000;
        exp += 3;
    }
    (milli, exp)
}

const DECIMAL_SUFFIXES: [&str; 7] = ["m", "", "k", "M", "G", "T", "P"];
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        let mut text = String::with_capacity(24);
        let magnitude = self.milli.unsigned_abs();
        if self.milli < 0 {
            text.push('-');
        }
        let whole = magnitude / 1000;
        let result = if magnitude == 0 {
            text.write_str("0")
        } else if self.format == QuantityFormat::BinarySi
            && magnitude.is_multiple_of(1000)
            && whole >= 1024
            && whole.is_multiple_of(1024)
        {
            // Binary suffixes only where one applies; anything else prints as decimal.
            let mut mantissa = whole;
            let mut power = 0;
            while power < 6 && mantissa.is_multiple_of(1024) {
                mantissa /= 1024;
                power += 1;
            }
            write!(text, "{mantissa}{}", BINARY_SUFFIXES[power])
        } else {
            let (mantissa, exp) = strip_thousands(magnitude);
            if self.format == QuantityFormat::DecimalExponent {
                let exp = exp as i32 - 3;
                if exp == 0 {
                    write!(text, "{mantissa}")
                } else {
                    write!(text, "{mantissa}e{exp}")
                }
            } else {
                write!(text, "{mantissa}{}", DECIMAL_SUFFIXES[(exp / 3) as usize])
            }
        };
        result?;
        f.pad(&text)
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quantity({self})")
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct QuantityVisitor;

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity such as \"500m\", \"2Gi\" or an integer")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Quantity, E> {
        parse(text).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, units: i64) -> Result<Quantity, E> {
        Quantity::try_from_units(units).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, units: u64) -> Result<Quantity, E> {
        Quantity::try_from(units).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Quantity, E> {
        Err(E::custom(QuantityError::Float {
            value: value.to_string(),
        }))
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Quantity, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

#[cfg(test)]
mod tests;
