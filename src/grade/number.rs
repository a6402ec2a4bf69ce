//! When is a token a number? Exactly when the Kattis reference validator (problemtools'
//! `default_validator`) says so, and with the value it reads.
//!
//! The reference takes a token as a float when `sscanf(token, "%lf%10s", ...)` converts exactly
//! one item and the value is neither infinite nor NaN. That is C's `scanf` number scanning as the
//! GNU C library does it (the reference runs on Linux), followed by `strtod` on what was scanned.
//! Written here from that behaviour, as a grammar:
//!
//! 1. The token is read as a C string: it ends at its first NUL byte. Leading whitespace (space,
//!    `\t`, `\n`, `\v`, `\f`, `\r`) is skipped; nothing else → not a number.
//! 2. An optional sign `+` or `-`. A sign alone → not a number.
//! 3. `n…` or `i…` (any case: `nan`, `nan(…)`, `inf`, `infinity`) → never a number: what scans is
//!    NaN or infinite, and the reference refuses both.
//! 4. Scanning, greedily, one character at a time, never backing up:
//!    - `0x` or `0X` after the sign starts a hexadecimal number (exponent letter `p`); a `0` not
//!      followed by `x` is a digit;
//!    - digits (hexadecimal ones too in a hexadecimal number, up to the exponent letter), one
//!      `.` (not after the exponent letter), the exponent letter (`e`/`E`, or `p`/`P` for hex)
//!      once and only after a digit, and a `+`/`-` right after the exponent letter.
//!
//!    Nothing scanned, or only `0x` → not a number.
//! 5. `strtod` converts the longest number at the start of what was scanned: digits with an
//!    optional `.` (at least one digit), or `0x` with hexadecimal digits and an optional `.`
//!    (at least one digit, else just the `0`), then an exponent only if a digit follows the
//!    letter (and its sign). So `1e`, `1e+`, `0x1p` and `0x.` are numbers (1, 1, 1 and 0):
//!    what scanning took but `strtod` did not is dropped, not handed back. If `strtod` converts
//!    nothing (`.`, `-.`) → not a number.
//! 6. Whatever is left after the scanned part must be whitespace only: a token that merely
//!    starts with a number (`1.5abc`, `100ergs`, `1e5e3`, `0x1e+3`, `1,5`) is not a number.
//! 7. The value is rounded to the nearest double (ties to even, subnormals included) as
//!    `strtod` does; an infinite result (`1e999`, `0x1p1024`) is not a number, an underflow to
//!    zero (`1e-999`) is the number 0.
//!
//! This module is pure and knows nothing of tolerances; [`super::compare`] uses it for answer
//! and output tokens and for the tolerance values themselves.

/// The token as the reference reads it: `Some(value)` when it is a finite number, per the
/// module docs.
pub fn parse_float(token: &[u8]) -> Option<f64> {
    // A C string ends at its first NUL.
    let token = token
        .iter()
        .position(|&byte| byte == 0)
        .map_or(token, |nul| &token[..nul]);
    let mut at = token.iter().take_while(|&&byte| is_c_space(byte)).count();
    let negative = match token.get(at) {
        None => return None,
        Some(b'-') => {
            at += 1;
            true
        }
        Some(b'+') => {
            at += 1;
            false
        }
        Some(_) => false,
    };
    match token.get(at).map(u8::to_ascii_lowercase) {
        // A sign alone, NaN or infinity: never a finite number.
        None | Some(b'n' | b'i') => return None,
        Some(_) => {}
    }
    let start = at;
    let end = scan(token, start);
    let scanned = &token[start..end];
    let hex = scanned.len() >= 2 && scanned[0] == b'0' && scanned[1].eq_ignore_ascii_case(&b'x');
    if scanned.is_empty() || (hex && scanned.len() == 2) {
        return None;
    }
    if !token[end..].iter().all(|&byte| is_c_space(byte)) {
        return None;
    }
    let magnitude = if hex {
        hex_value(&scanned[2..])
    } else {
        decimal_value(scanned)?
    };
    let value = if negative { -magnitude } else { magnitude };
    value.is_finite().then_some(value)
}

/// C's `isspace` in the C locale.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Step 4: the end of what scanning takes from `token[start..]`.
fn scan(token: &[u8], start: usize) -> usize {
    let mut at = start;
    let mut hex = false;
    let mut got_digit = false;
    let mut got_dot = false;
    let mut got_exponent = false;
    if token.get(at) == Some(&b'0') {
        at += 1;
        if token
            .get(at)
            .is_some_and(|byte| byte.eq_ignore_ascii_case(&b'x'))
        {
            at += 1;
            hex = true;
        } else {
            got_digit = true;
        }
    }
    let exponent_letter = if hex { b'p' } else { b'e' };
    while let Some(&byte) = token.get(at) {
        let after_exponent_letter =
            got_exponent && token[at - 1].to_ascii_lowercase() == exponent_letter;
        let taken = if byte.is_ascii_digit() || (hex && !got_exponent && byte.is_ascii_hexdigit()) {
            got_digit = true;
            true
        } else if after_exponent_letter && matches!(byte, b'+' | b'-') {
            true
        } else if got_digit && !got_exponent && byte.to_ascii_lowercase() == exponent_letter {
            // The exponent ends the place for a dot, as in the reference.
            got_exponent = true;
            got_dot = true;
            true
        } else if byte == b'.' && !got_dot {
            got_dot = true;
            true
        } else {
            false
        };
        if !taken {
            break;
        }
        at += 1;
    }
    at
}

/// Step 5 for a decimal number: `strtod`'s value of the longest number at the start of
/// `scanned` (which holds only digits, `.`, `e`/`E` and signs after the `e`).
fn decimal_value(scanned: &[u8]) -> Option<f64> {
    let digits = |from: usize| {
        scanned[from..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count()
    };
    let whole = digits(0);
    let mut end = whole;
    let mut fraction = 0;
    if scanned.get(end) == Some(&b'.') {
        fraction = digits(end + 1);
        end += 1 + fraction;
    }
    if whole + fraction == 0 {
        return None;
    }
    if scanned
        .get(end)
        .is_some_and(|byte| byte.eq_ignore_ascii_case(&b'e'))
    {
        let sign = usize::from(matches!(scanned.get(end + 1), Some(b'+' | b'-')));
        let exponent = digits(end + 1 + sign);
        if exponent > 0 {
            end += 1 + sign + exponent;
        }
    }
    // Rust's parser rounds to nearest, ties to even, as strtod does; this grammar is a subset
    // of what it accepts (ASCII only, so from_utf8 cannot fail).
    std::str::from_utf8(&scanned[..end]).ok()?.parse().ok()
}

/// Step 5 for a hexadecimal number: `strtod`'s value of `digits` (what follows `0x`: hex digits,
/// at most one `.`, then maybe `p`, a sign and decimal digits). No hex digit at all is `0x`
/// read as `0`.
fn hex_value(digits: &[u8]) -> f64 {
    /// Mantissa bits kept: enough for 53 and the rounding bits; the rest only counts as sticky.
    const ROOM: u64 = 1 << 60;
    let mut mantissa: u64 = 0;
    let mut exponent: i64 = 0;
    let mut sticky = false;
    let mut seen_digit = false;
    let mut in_fraction = false;
    let mut at = 0;
    while let Some(&byte) = digits.get(at) {
        if byte == b'.' && !in_fraction {
            in_fraction = true;
            at += 1;
            continue;
        }
        let Some(value) = char::from(byte).to_digit(16) else {
            break;
        };
        seen_digit = true;
        if mantissa < ROOM {
            mantissa = mantissa * 16 + u64::from(value);
            if in_fraction {
                exponent -= 4;
            }
        } else {
            sticky |= value != 0;
            if !in_fraction {
                exponent += 4;
            }
        }
        at += 1;
    }
    if !seen_digit || mantissa == 0 {
        return 0.0;
    }
    if digits
        .get(at)
        .is_some_and(|byte| byte.eq_ignore_ascii_case(&b'p'))
    {
        let (sign, from) = match digits.get(at + 1) {
            Some(b'-') => (-1, at + 2),
            Some(b'+') => (1, at + 2),
            _ => (1, at + 1),
        };
        let written: Vec<i64> = digits[from..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .map(|byte| i64::from(byte - b'0'))
            .collect();
        if !written.is_empty() {
            // Far beyond any double's range either way; saturating keeps the sum exact enough.
            let power = written
                .iter()
                .fold(0i64, |power, digit| (power * 10 + digit).min(1 << 40));
            exponent += sign * power;
        }
    }
    round_to_double(mantissa, exponent, sticky)
}

/// `mantissa × 2^exponent` (plus something below the mantissa's last bit when `sticky`), rounded
/// to the nearest double, ties to even.
fn round_to_double(mantissa: u64, exponent: i64, sticky: bool) -> f64 {
    let bits = i64::from(64 - mantissa.leading_zeros());
    let top = exponent + bits - 1;
    if top > 1023 {
        return f64::INFINITY;
    }
    // The weight of the last bit a double can keep here: 53 bits, or fewer when subnormal.
    let last = (top - 52).max(-1074);
    let drop = last - exponent;
    if drop <= 0 {
        // Exact: at most 53 bits, and no finer than the smallest subnormal.
        return mantissa as f64 * power_of_two(exponent);
    }
    let (kept, rest, half) = if drop >= 128 {
        (0u128, 1u128, 2u128)
    } else {
        let wide = u128::from(mantissa);
        (
            wide >> drop,
            wide & ((1u128 << drop) - 1),
            1u128 << (drop - 1),
        )
    };
    let round_up = rest > half || (rest == half && (sticky || kept & 1 == 1));
    let kept = kept + u128::from(round_up);
    // At most 2^53: exact as a double, and the product below is exact or overflows to infinity.
    kept as f64 * power_of_two(last)
}

/// 2^`exponent` for -1074 ≤ `exponent` ≤ 1023, exactly.
fn power_of_two(exponent: i64) -> f64 {
    if exponent >= -1022 {
        f64::from_bits(((exponent + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (exponent + 1074))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (token, what the reference reads): every branch of the grammar.
    const TABLE: &[(&str, Option<f64>)] = &[
        // Plain decimals, signs, leading and trailing dots.
        ("0", Some(0.0)),
        ("-1", Some(-1.0)),
        ("+2", Some(2.0)),
        ("007", Some(7.0)),
        ("1.", Some(1.0)),
        (".5", Some(0.5)),
        ("-.5e+3", Some(-500.0)),
        ("1.5", Some(1.5)),
        // Exponents, and the letter without digits (dropped by strtod).
        ("1e5", Some(1e5)),
        ("1E-5", Some(1e-5)),
        ("1e", Some(1.0)),
        ("1e+", Some(1.0)),
        ("1E-", Some(1.0)),
        ("0e", Some(0.0)),
        ("1.5e", Some(1.5)),
        ("1.e5", Some(1e5)),
        // No digit before the exponent letter or at all.
        ("e5", None),
        (".e5", None),
        ("-.e1", None),
        (".", None),
        ("", None),
        ("+", None),
        ("-", None),
        ("+-1", None),
        ("--1", None),
        // Only a prefix is a number: refused.
        ("1.5abc", None),
        ("100ergs", None),
        ("1e5e3", None),
        ("1e5.", None),
        ("1e+-5", None),
        ("1.2.3", None),
        ("1,5", None),
        ("1_000", None),
        ("0ep", None),
        ("00x1", None),
        ("0x0x1", None),
        ("12x", None),
        // Hexadecimal floats.
        ("0x1.8p3", Some(12.0)),
        ("0X1.8P3", Some(12.0)),
        ("-0x1p-2", Some(-0.25)),
        ("+0xAp0", Some(10.0)),
        ("0x1e3", Some(483.0)),
        ("0x10", Some(16.0)),
        ("0x.8", Some(0.5)),
        ("0x.1", Some(0.0625)),
        ("0x1.", Some(1.0)),
        ("0x1p", Some(1.0)),
        ("0x1p+", Some(1.0)),
        ("0x1.p", Some(1.0)),
        ("0x.", Some(0.0)),
        ("0x", None),
        ("0X", None),
        ("-0x", None),
        ("0xp3", None),
        ("0xg", None),
        ("0x.p1", None),
        ("0x1e+3", None),
        ("0x1p3p", None),
        ("0x1.8.", None),
        // NaN and infinities, in every spelling: never numbers.
        ("nan", None),
        ("NaN", None),
        ("-nan", None),
        ("nan(123)", None),
        ("inf", None),
        ("-Inf", None),
        ("infinity", None),
        ("INFINITY", None),
        ("infinit", None),
        ("in", None),
        ("n", None),
        // Out of range: infinite is refused, underflow is zero.
        ("1e999", None),
        ("-1e999", None),
        ("0x1p1024", None),
        ("1e-999", Some(0.0)),
        ("0x1p-1075", Some(0.0)),
        ("0x1p-1074", Some(5e-324)),
        ("1.7976931348623157e308", Some(f64::MAX)),
        ("0x1.fffffffffffffp1023", Some(f64::MAX)),
        ("0x1.fffffffffffff8p1023", None),
        // Rounding of long hexadecimal mantissas: to nearest, ties to even.
        ("0x1.00000000000008p0", Some(1.0)),
        ("0x1.000000000000080000001p0", Some(1.0000000000000002)),
        ("0x1.00000000000018p0", Some(1.0000000000000004)),
        ("0x1.8000000000000000000000000001p-1074", Some(1e-323)),
        ("0x123456789abcdef0123p-12", Some(1.3117684674637903e18)),
        // Whitespace around (tolerance values may carry it; tokens never do), and NUL.
        (" \t1.5", Some(1.5)),
        ("1.5 \n", Some(1.5)),
        ("1.5 x", None),
        ("   ", None),
        ("1.5\0garbage", Some(1.5)),
        ("\0", None),
    ];

    #[test]
    fn every_branch_of_the_grammar() {
        for &(token, expected) in TABLE {
            let got = parse_float(token.as_bytes());
            let same = match (got, expected) {
                (Some(got), Some(expected)) => got.to_bits() == expected.to_bits(),
                (None, None) => true,
                _ => false,
            };
            assert!(same, "{token:?}: got {got:?}, expected {expected:?}");
        }
        assert!(parse_float(b"-0").unwrap().is_sign_negative());
    }

    /// The platform's own `sscanf`, as the reference calls it: the oracle for the table and for
    /// every short token over the characters that matter.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn reference(token: &[u8]) -> Option<f64> {
        let text = std::ffi::CString::new(token).ok()?;
        let mut value: f64 = 0.0;
        let mut trash = [0 as libc::c_char; 20];
        // SAFETY: the format takes a double and a string of at most 10 characters (plus NUL)
        // into the 20-byte buffer; both pointers are valid for the call.
        let converted = unsafe {
            libc::sscanf(
                text.as_ptr(),
                c"%lf%10s".as_ptr(),
                &mut value as *mut f64,
                trash.as_mut_ptr(),
            )
        };
        (converted == 1 && value.is_finite()).then_some(value)
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn agrees_with_the_c_library_on_every_short_token() {
        let same = |token: &[u8]| {
            let (ours, theirs) = (parse_float(token), reference(token));
            assert!(
                ours.map(f64::to_bits) == theirs.map(f64::to_bits),
                "{:?}: ours {ours:?}, sscanf {theirs:?}",
                String::from_utf8_lossy(token)
            );
        };
        for &(token, _) in TABLE {
            if !token.contains('\0') {
                same(token.as_bytes());
            }
        }
        // Every token of up to five characters over the ones the grammar cares about.
        const ALPHABET: &[u8] = b"01.eEpxX+-a ";
        let mut token = Vec::new();
        let mut tried = 0;
        for length in 1..=5u32 {
            for mut index in 0..ALPHABET.len().pow(length) {
                token.clear();
                for _ in 0..length {
                    token.push(ALPHABET[index % ALPHABET.len()]);
                    index /= ALPHABET.len();
                }
                same(&token);
                tried += 1;
            }
        }
        assert!(tried > 250_000);
        // Long mantissas and exponents, where rounding happens.
        for token in [
            "0x1.fffffffffffff7ffffffp0",
            "0x1.fffffffffffff8p0",
            "0x0.0000000000000000000000001p0",
            "0x00000000000000000000001.8p-3",
            "0xffffffffffffffffffffffffffffffffp-200",
            "0x1p-1022",
            "0x0.fffffffffffff8p-1022",
            "0x0.fffffffffffffcp-1022",
            "0x1p999999999999999999999",
            "0x1p-999999999999999999999",
            "123456789012345678901234567890e-30",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
        ] {
            same(token.as_bytes());
        }
    }
}
