use proptest::prelude::*;

use super::*;

/// Parses `input` and checks the exact value in thousandths and the canonical print.
#[track_caller]
fn check(input: &str, milli: i64, canonical: &str) {
    let quantity: Quantity = input
        .parse()
        .unwrap_or_else(|err| panic!("{input:?} should parse: {err}"));
    assert_eq!(quantity.as_milli(), milli, "value of {input:?}");
    assert_eq!(
        quantity.to_string(),
        canonical,
        "canonical print of {input:?}"
    );
    let reparsed: Quantity = canonical.parse().expect("canonical form parses");
    assert_eq!(reparsed, quantity, "{canonical:?} parses back to {input:?}");
}

#[test]
fn parses_and_prints_the_forms_people_write() {
    let gi = 1i64 << 30;
    let cases: &[(&str, i64, &str)] = &[
        ("0", 0, "0"),
        ("-0", 0, "0"),
        ("500m", 500, "500m"),
        ("0.5", 500, "500m"),
        (".5", 500, "500m"),
        ("1.", 1000, "1"),
        ("2", 2000, "2"),
        ("+2", 2000, "2"),
        ("-2", -2000, "-2"),
        ("1500m", 1500, "1500m"),
        ("1.5", 1500, "1500m"),
        ("2Gi", 2 * gi * 1000, "2Gi"),
        ("512Mi", 512 * (1 << 20) * 1000, "512Mi"),
        ("1024Mi", gi * 1000, "1Gi"),
        ("1536Mi", 1536 * (1 << 20) * 1000, "1536Mi"),
        ("0.5Gi", gi / 2 * 1000, "512Mi"),
        ("1Ki", 1024 * 1000, "1Ki"),
        ("0.5Ki", 512 * 1000, "512"),
        ("1.5Ki", 1536 * 1000, "1536"),
        ("10G", 10_000_000_000_000, "10G"),
        ("1000M", 1_000_000_000_000, "1G"),
        ("1e3", 1_000_000, "1e3"),
        ("1E3", 1_000_000, "1e3"),
        ("1e-3", 1, "1e-3"),
        ("1500e-3", 1500, "1500e-3"),
        ("2e0", 2000, "2"),
        ("100.035k", 100_035_000, "100035"),
        ("1k", 1_000_000, "1k"),
        ("1000", 1_000_000, "1k"),
        ("1000000n", 1, "1m"),
        ("1000u", 1, "1m"),
        ("3T", 3_000_000_000_000_000, "3T"),
        ("9P", 9_000_000_000_000_000_000, "9P"),
    ];
    for &(input, milli, canonical) in cases {
        check(input, milli, canonical);
    }
    // Exa is valid syntax but beyond the range.
    assert_eq!(
        Quantity::parse("1E"),
        Err(QuantityError::OutOfRange { input: "1E".into() })
    );
}

fn invalid(input: &str, reason: &'static str) -> QuantityError {
    QuantityError::Invalid {
        input: input.to_owned(),
        reason,
    }
}

#[test]
fn malformed_input_is_a_typed_error() {
    let cases: &[(&str, QuantityError)] = &[
        ("", QuantityError::Empty),
        (" 1", invalid(" 1", "expected a number")),
        ("1 ", invalid("1 ", "unknown suffix")),
        ("1.1.M", invalid("1.1.M", "unknown suffix")),
        ("aoeu", invalid("aoeu", "expected a number")),
        ("1i", invalid("1i", "unknown suffix")),
        ("-", invalid("-", "expected a number")),
        (".", invalid(".", "expected a number")),
        ("1e", invalid("1e", "the exponent is not an integer")),
        ("1e+", invalid("1e+", "the exponent is not an integer")),
        ("1e1.5", invalid("1e1.5", "the exponent is not an integer")),
        ("1Gb", invalid("1Gb", "unknown suffix")),
        ("--1", invalid("--1", "expected a number")),
        ("1mm", invalid("1mm", "unknown suffix")),
    ];
    for (input, expected) in cases {
        assert_eq!(Quantity::parse(input).as_ref(), Err(expected), "{input:?}");
    }
}

#[test]
fn values_out_of_range_or_too_fine_are_errors() {
    let out_of_range = [
        "10Ei",
        "9223372036854776",
        "1e16",
        "1e99999",
        "99999999999999999999999999999999999999999999",
        "-9223372036854776",
    ];
    for input in out_of_range {
        assert_eq!(
            Quantity::parse(input),
            Err(QuantityError::OutOfRange {
                input: input.into()
            }),
            "{input:?}"
        );
    }
    let too_precise = ["1n", "0.0001", "1u", "1e-4", "0.0001Ki", "1e-99999"];
    for input in too_precise {
        assert_eq!(
            Quantity::parse(input),
            Err(QuantityError::TooPrecise {
                input: input.into()
            }),
            "{input:?}"
        );
    }
    // The extremes themselves are in range.
    check("9223372036854775807m", i64::MAX, "9223372036854775807m");
    check("-9223372036854775808m", i64::MIN, "-9223372036854775808m");
    // Zero with any suffix, even a huge exponent, is zero.
    check("0e99999", 0, "0");
}

#[test]
fn arithmetic_is_checked() {
    let one = Quantity::from(1);
    assert_eq!(
        Quantity::MAX.checked_add(Quantity::from_milli(1)),
        Err(QuantityError::Overflow { operation: "add" })
    );
    assert_eq!(
        Quantity::MIN.checked_sub(Quantity::from_milli(1)),
        Err(QuantityError::Overflow {
            operation: "subtract"
        })
    );
    assert_eq!(
        Quantity::MAX.checked_mul(2),
        Err(QuantityError::Overflow {
            operation: "multiply"
        })
    );
    assert_eq!(
        Quantity::MIN.checked_neg(),
        Err(QuantityError::Overflow {
            operation: "negate"
        })
    );
    assert_eq!(
        one.checked_sub(Quantity::from(3)).map(|q| q.to_string()),
        Ok("-2".into())
    );
    assert_eq!(
        Quantity::checked_sum([one, one, Quantity::from_milli(500)]).map(|q| q.as_milli()),
        Ok(2500)
    );
    assert!(Quantity::checked_sum([Quantity::MAX, one]).is_err());
    assert_eq!(
        Quantity::from(2).saturating_sub_to_zero(Quantity::from(5)),
        Quantity::ZERO
    );
    assert_eq!(
        Quantity::try_from_units(i64::MAX),
        Err(QuantityError::Overflow {
            operation: "from units"
        })
    );
    assert_eq!(
        Quantity::try_from(u64::MAX),
        Err(QuantityError::Overflow {
            operation: "from units"
        })
    );
}

#[test]
fn sums_keep_the_format_of_the_left_side() {
    let gi: Quantity = "1Gi".parse().unwrap();
    let sum = gi.checked_add(gi).unwrap();
    assert_eq!(sum.to_string(), "2Gi");
    assert_eq!(Quantity::ZERO.checked_add(gi).unwrap().to_string(), "1Gi");
}

#[test]
fn rounding_to_units() {
    // (milli, floor, ceiling, away from zero as Kubernetes' Value())
    let cases = [
        (1500, 1, 2, 2),
        (-1500, -2, -1, -2),
        (9010, 9, 10, 10),
        (-9010, -10, -9, -10),
        (2000, 2, 2, 2),
        (-2000, -2, -2, -2),
        (1, 0, 1, 1),
        (-1, -1, 0, -1),
        (0, 0, 0, 0),
        (
            i64::MAX,
            i64::MAX / 1000,
            i64::MAX / 1000 + 1,
            i64::MAX / 1000 + 1,
        ),
        (
            i64::MIN,
            i64::MIN / 1000 - 1,
            i64::MIN / 1000,
            i64::MIN / 1000 - 1,
        ),
    ];
    for (milli, floor, ceil, away) in cases {
        let q = Quantity::from_milli(milli);
        assert_eq!(
            (
                q.to_units_floor(),
                q.to_units_ceil(),
                q.to_units_away_from_zero()
            ),
            (floor, ceil, away),
            "{milli}m"
        );
    }
}

#[test]
fn any_spelling_of_a_value_in_range_parses() {
    // Trailing zeros of the integer part cancel a negative exponent, however many.
    let one = format!("1{}e-41", "0".repeat(41));
    check(&one, 1000, "1");
    check(&format!("0.{}1e41", "0".repeat(40)), 1000, "1");
    let milli = |text: String| Quantity::parse(&text).map(Quantity::as_milli);
    assert_eq!(milli(format!("5{}e-10003", "0".repeat(10_000))), Ok(5));
    assert_eq!(
        milli(format!("-9223372036854775808{}e-3003", "0".repeat(3000))),
        Ok(i64::MIN)
    );
    // Leading zeros and a long exact fraction.
    check(&format!("{}1.5", "0".repeat(100)), 1500, "1500m");
    check(&format!("2.5{}", "0".repeat(100)), 2500, "2500m");
    // A binary suffix with a fraction of many digits: 2^-10 Ki is 1, and 5^60 / 10^63 Ei
    // (63 decimal places, 42 significant digits) is exactly 1m.
    check("0.0009765625Ki", 1000, "1");
    let long = format!(
        "0.{}{}Ei",
        "0".repeat(21),
        "867361737988403547205962240695953369140625"
    );
    check(&long, 1, "1m");
    // Values just out of range or finer than 1m stay errors.
    assert!(matches!(
        Quantity::parse(&format!("1{}e-40", "0".repeat(60))),
        Err(QuantityError::OutOfRange { .. })
    ));
    assert!(matches!(
        Quantity::parse(&format!("1{}e-45", "0".repeat(41))),
        Err(QuantityError::TooPrecise { .. })
    ));
    assert!(matches!(
        Quantity::parse(&format!("1{}", "1".repeat(100))),
        Err(QuantityError::OutOfRange { .. })
    ));
    assert!(matches!(
        Quantity::parse(&format!("0.{}", "1".repeat(100))),
        Err(QuantityError::TooPrecise { .. })
    ));
}

#[test]
fn comparison_ignores_the_format() {
    let binary: Quantity = "1Ki".parse().unwrap();
    let decimal: Quantity = "1024".parse().unwrap();
    assert_eq!(binary, decimal);
    assert!(Quantity::from_milli(999) < Quantity::from(1));
    let mut set = std::collections::HashSet::new();
    set.insert(binary);
    assert!(set.contains(&decimal));
}

#[test]
fn ratios_for_reporting_and_scoring() {
    let half = Quantity::from_milli(500);
    assert_eq!(half.ratio_of(Quantity::from(1)), 0.5);
    assert_eq!(half.ratio_of(Quantity::ZERO), 0.0);
    assert_eq!(half.parts_per_million_of(Quantity::from(1)), 500_000);
    assert_eq!(
        Quantity::from(1).parts_per_million_of(Quantity::from(3)),
        333_333
    );
    // Large amounts take the 128-bit path and give the same answer.
    let tib: Quantity = "1Ti".parse().unwrap();
    let half_tib = Quantity::from_milli(tib.as_milli() / 2);
    assert_eq!(half_tib.parts_per_million_of(tib), 500_000);
}

#[test]
fn display_honours_width() {
    assert_eq!(format!("{:>6}", Quantity::from_milli(500)), "  500m");
}

#[test]
fn serde_uses_the_string_form() {
    let q: Quantity = "512Mi".parse().unwrap();
    assert_eq!(serde_json::to_string(&q).unwrap(), "\"512Mi\"");
    assert_eq!(
        serde_json::from_str::<Quantity>("\"0.5\"").unwrap(),
        Quantity::from_milli(500)
    );
    assert_eq!(
        serde_json::from_str::<Quantity>("4").unwrap(),
        Quantity::from(4)
    );
    assert_eq!(
        serde_json::from_str::<Quantity>("-4").unwrap(),
        Quantity::from(-4)
    );
    let float = serde_json::from_str::<Quantity>("0.5")
        .unwrap_err()
        .to_string();
    assert!(float.contains("write it as a string"), "{float}");
    let malformed = serde_json::from_str::<Quantity>("\"1.1.M\"")
        .unwrap_err()
        .to_string();
    assert!(malformed.contains("unknown suffix"), "{malformed}");
}

fn any_format() -> impl Strategy<Value = QuantityFormat> {
    prop_oneof![
        Just(QuantityFormat::DecimalSi),
        Just(QuantityFormat::BinarySi),
        Just(QuantityFormat::DecimalExponent),
    ]
}

fn any_quantity() -> impl Strategy<Value = Quantity> {
    let milli = prop_oneof![
        any::<i64>(),
        (-1_000_000i64..1_000_000),
        // Whole multiples of powers of 1024 and 1000, where suffixes kick in.
        (-4096i64..4096, 0u32..5).prop_map(|(m, p)| m * 1024i64.pow(p) * 1000),
        (-4096i64..4096, 0u32..6).prop_map(|(m, p)| m * 1000i64.pow(p)),
    ];
    (milli, any_format())
        .prop_map(|(milli, format)| Quantity::from_milli(milli).with_format(format))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("RM_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)
    ))]

    #[test]
    fn parse_of_print_is_identity(q in any_quantity()) {
        let printed = q.to_string();
        let parsed: Quantity = printed.parse().map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
        prop_assert_eq!(parsed, q);
        // Printing is canonical: printing the reparsed value gives the same text.
        prop_assert_eq!(parsed.to_string(), printed);
    }

    #[test]
    fn trailing_zeros_and_exponents_cancel(milli in any::<i64>(), zeros in 0usize..80) {
        let text = format!("{milli}{}e-{}", "0".repeat(zeros), zeros + 3);
        prop_assert_eq!(Quantity::parse(&text).map(Quantity::as_milli), Ok(milli), "{}", text);
        let magnitude = milli.unsigned_abs();
        let sign = if milli < 0 { "-" } else { "" };
        let text = format!("{sign}0.{}{magnitude}e{}", "0".repeat(zeros), zeros + magnitude.to_string().len() - 3);
        if magnitude != 0 && zeros + magnitude.to_string().len() >= 3 {
            prop_assert_eq!(Quantity::parse(&text).map(Quantity::as_milli), Ok(milli), "{}", text);
        }
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in "[-+0-9.eEkKMGTPimnu ]{0,24}") {
        let _ = Quantity::parse(&text);
    }

    #[test]
    fn addition_matches_integer_arithmetic(a in any::<i64>(), b in any::<i64>()) {
        let sum = Quantity::from_milli(a).checked_add(Quantity::from_milli(b));
        prop_assert_eq!(sum.ok().map(Quantity::as_milli), a.checked_add(b));
    }
}
