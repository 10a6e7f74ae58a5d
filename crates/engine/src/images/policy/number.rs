//! Tags read as numbers the way Go's `strconv.ParseFloat(tag, 64)` reads them, which is
//! what Flux's numerical policy does.
//!
//! Accepted, as in Go:
//! - decimals with an optional sign, fraction and exponent: `42`, `-3.5`, `+5`, `.5`,
//!   `5.`, `1e3`, `1E-3`;
//! - hexadecimal floats, which need a `p` exponent: `0x1p-2`, `0x1.8P3`;
//! - `_` between digits (or after `0x`): `1_000`, `0x_1p0`;
//! - `inf`, `infinity` (signed or not) and an unsigned `nan`, in any case.
//!
//! Refused, as in Go: anything else (`1a`, `1_`, `0x1`, ` 1`, `-nan`), and a value beyond
//! the range of a 64-bit float (`1e400`): Go reports that as an error and Flux fails.
//! Hexadecimal values are rounded once to 53 bits and then scaled, so only results in
//! the subnormal range (below 2^-1022) may differ from Go in the last bit.

/// Why a tag is not a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNumber {
    /// Not written as a decimal or hexadecimal floating-point number.
    #[error("not a decimal or hexadecimal floating-point number")]
    Syntax,
    /// Written as a number too large for a 64-bit float.
    #[error("beyond the range of a 64-bit float")]
    OutOfRange,
}

/// `text` as Go's `strconv.ParseFloat(text, 64)` reads it.
pub(super) fn parse(text: &str) -> Result<f64, InvalidNumber> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Ok(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if text.eq_ignore_ascii_case("nan") {
        return Ok(f64::NAN);
    }
    if text.contains('_') && !underscores_separate_digits(text) {
        return Err(InvalidNumber::Syntax);
    }
    let digits: String = unsigned.chars().filter(|&c| c != '_').collect();
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        // Go only reads `0x` as a prefix when something follows it.
        Some(hex) if !hex.is_empty() => parse_hex(hex)?,
        _ => parse_decimal(&digits)?,
    };
    if magnitude.is_infinite() {
        return Err(InvalidNumber::OutOfRange);
    }
    Ok(if negative { -magnitude } else { magnitude })
}

/// Go's rule: an underscore must sit between two digits, or between the `0x` prefix and
/// a digit.
fn underscores_separate_digits(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let bytes = unsigned.as_bytes();
    let hex = bytes.len() >= 2 && bytes[0] == b'0' && matches!(bytes[1], b'x' | b'X');
    let (mut after_digit, mut after_underscore) = (hex, false);
    let rest = if hex { &bytes[2..] } else { bytes };
    for &b in rest {
        if b.is_ascii_digit() || (hex && b.is_ascii_hexdigit()) {
            (after_digit, after_underscore) = (true, false);
        } else if b == b'_' {
            if !after_digit {
                return false;
            }
            (after_digit, after_underscore) = (false, true);
        } else if after_underscore {
            return false;
        } else {
            after_digit = false;
        }
    }
    !after_underscore
}

/// `digits [. digits] [(e|E) [sign] digits]`, at least one mantissa digit.
fn parse_decimal(text: &str) -> Result<f64, InvalidNumber> {
    let bytes = text.as_bytes();
    let count = |from: usize| {
        bytes
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let whole = count(0);
    let mut at = whole;
    let mut fraction = 0;
    if bytes.get(at) == Some(&b'.') {
        fraction = count(at + 1);
        at += 1 + fraction;
    }
    if whole + fraction == 0 {
        return Err(InvalidNumber::Syntax);
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exponent = count(at);
        if exponent == 0 {
            return Err(InvalidNumber::Syntax);
        }
        at += exponent;
    }
    if at != bytes.len() {
        return Err(InvalidNumber::Syntax);
    }
    // The grammar above is a subset of what `f64::from_str` accepts, which rounds
    // correctly, as Go does.
    text.parse().map_err(|_| InvalidNumber::Syntax)
}

/// `hexdigits [. hexdigits] (p|P) [sign] digits` (after `0x`), at least one mantissa digit.
fn parse_hex(text: &str) -> Result<f64, InvalidNumber> {
    let mut mantissa: u64 = 0;
    let mut sticky = false;
    // Binary exponent adjustment for digits that did not fit, and for fraction digits.
    let mut exponent: i64 = 0;
    let mut seen_digit = false;
    let mut seen_dot = false;
    let mut exponent_at = None;
    for (i, c) in text.char_indices() {
        match c {
            '.' if !seen_dot => seen_dot = true,
            'p' | 'P' => {
                exponent_at = Some(i + 1);
                break;
            }
            _ => {
                let digit = c.to_digit(16).ok_or(InvalidNumber::Syntax)?;
                seen_digit = true;
                if mantissa >> 60 == 0 {
                    mantissa = mantissa << 4 | u64::from(digit);
                    if seen_dot {
                        exponent -= 4;
                    }
                } else {
                    sticky |= digit != 0;
                    if !seen_dot {
                        exponent += 4;
                    }
                }
            }
        }
    }
    let (Some(exponent_at), true) = (exponent_at, seen_digit) else {
        return Err(InvalidNumber::Syntax);
    };
    let written = &text[exponent_at..];
    let (sign, digits) = match written.as_bytes().first() {
        Some(b'-') => (-1, &written[1..]),
        Some(b'+') => (1, &written[1..]),
        _ => (1, written),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidNumber::Syntax);
    }
    // Beyond ±100000 the result is 0 or infinite whatever the mantissa.
    let written: i64 = digits
        .bytes()
        .fold(0, |n: i64, b| (n * 10 + i64::from(b - b'0')).min(100_000));
    exponent += sign * written;
    if mantissa == 0 {
        return Ok(0.0);
    }
    // Keep the lost digits' trace in the lowest bit, below the 53 that survive the
    // conversion, so that it rounds the way the full value would.
    let value = (mantissa | u64::from(sticky)) as f64;
    Ok(scale_by_power_of_two(value, exponent))
}

/// `value * 2^exponent`, in steps that stay within `f64`'s exponent range.
fn scale_by_power_of_two(mut value: f64, mut exponent: i64) -> f64 {
    const STEP: i64 = 1000;
    let up = 2f64.powi(1000);
    let down = 2f64.powi(-1000);
    while exponent > STEP && value.is_finite() {
        value *= up;
        exponent -= STEP;
    }
    while exponent < -STEP && value != 0.0 {
        value *= down;
        exponent += STEP;
    }
    // |exponent| <= 1000 here, so the cast is exact.
    value * 2f64.powi(exponent as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_read_as_go_reads_them() {
        for (text, value) in [
            ("0", 0.0),
            ("42", 42.0),
            ("-62", -62.0),
            ("+5", 5.0),
            ("3.25", 3.25),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("1e+3", 1000.0),
            ("1_000", 1000.0),
            ("1_0.2_5e1_0", 10.25e10),
            ("007", 7.0),
            ("1e-400", 0.0),
            ("1606364286", 1_606_364_286.0),
            ("53.47333823144817", 53.473_338_231_448_17),
        ] {
            assert_eq!(parse(text), Ok(value), "{text}");
        }
    }

    #[test]
    fn hexadecimal_floats_need_an_exponent() {
        for (text, value) in [
            ("0x1p-2", 0.25),
            ("0X1.8P3", 12.0),
            ("-0x10p0", -16.0),
            ("0x_1p0", 1.0),
            ("0x.8p1", 1.0),
            ("0x0p99999999", 0.0),
            ("0x1p-1074", f64::from_bits(1)),
            // A tie rounds to even; a digit beyond the sixteenth breaks it upwards.
            ("0x1fffffffffffff8p-3", 2f64.powi(54)),
            ("0x100000000000008000p0", 2f64.powi(68)),
            ("0x100000000000008001p0", 2f64.powi(68) + 2f64.powi(16)),
        ] {
            assert_eq!(parse(text), Ok(value), "{text}");
        }
        for bad in [
            "0x1",
            "0x",
            "0xp1",
            "0x1.8",
            "0x1p",
            "0x1p+",
            "0xgp1",
            "0x1.2.3p1",
        ] {
            assert_eq!(parse(bad), Err(InvalidNumber::Syntax), "{bad}");
        }
    }

    #[test]
    fn infinities_and_nan_are_numbers() {
        assert_eq!(parse("inf"), Ok(f64::INFINITY));
        assert_eq!(parse("-Infinity"), Ok(f64::NEG_INFINITY));
        assert_eq!(parse("+INF"), Ok(f64::INFINITY));
        assert!(parse("NaN").is_ok_and(f64::is_nan));
        assert_eq!(parse("-nan"), Err(InvalidNumber::Syntax));
        assert_eq!(parse("infinit"), Err(InvalidNumber::Syntax));
    }

    #[test]
    fn values_beyond_a_64_bit_float_are_errors() {
        assert_eq!(parse("1e400"), Err(InvalidNumber::OutOfRange));
        assert_eq!(parse("-1e400"), Err(InvalidNumber::OutOfRange));
        assert_eq!(parse("0x1p1024"), Err(InvalidNumber::OutOfRange));
        assert_eq!(parse(&"9".repeat(400)), Err(InvalidNumber::OutOfRange));
        assert!(parse("1.7976931348623157e308").is_ok());
    }

    #[test]
    fn everything_else_is_not_a_number() {
        for bad in [
            "", "-", "+", ".", "e5", "1e", "1e+", "1a", "b", "1.2.3", " 1", "1 ", "_1", "1_",
            "1__0", "1_.5", "1._5", "1e_5", "--1", "+-1", "1,5", "١", "1\u{0}", "v1", "0b101",
            "0o17", "nan1", "infx", "é",
        ] {
            assert_eq!(parse(bad), Err(InvalidNumber::Syntax), "{bad:?}");
        }
    }
}
