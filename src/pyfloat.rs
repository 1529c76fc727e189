//! Floats written the way Python's `json.dumps` writes them, so responses are byte-identical to the
//! Bento service's: shortest round-trip digits, `repr` layout (`8506.8203125`, `1e-05`, `1e+16`,
//! `5.0`), and `NaN` / `Infinity` for non-finite values.

use std::fmt::Write;

/// Appends `value` as Python's `repr(float(value))`.
pub fn write_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as Python's repr does. When two
    // candidates of that length are equally near (964.09161376953125: ...312 or ...313), Rust takes
    // the upper and Python (David Gay's dtoa) the even one, which is what exact formatting to the
    // same number of digits gives; it is kept when it reads back as the same number.
    let mut scientific = String::with_capacity(32);
    let _ = write!(scientific, "{value:e}");
    let significant = scientific
        .split('e')
        .next()
        .unwrap_or_default()
        .bytes()
        .filter(u8::is_ascii_digit)
        .count();
    let even = format!("{value:.*e}", significant.saturating_sub(1));
    if even != scientific && even.parse::<f64>() == Ok(value) {
        scientific = even;
    }
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Exact formatting may carry into a trailing zero (9.5 to one digit is 1.0e1); repr shows none.
    let digits = match digits.trim_end_matches('0') {
        "" => "0".to_owned(),
        kept => kept.to_owned(),
    };
    out.push_str(sign);
    if !(-4..16).contains(&exponent) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.unsigned_abs()
        );
    } else if exponent >= 0 {
        let point = exponent as usize + 1;
        if digits.len() <= point {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
        out.push_str(&digits);
    }
}

/// A compact JSON array of float32 predictions, as `json.dumps(array.tolist(), separators=(",", ":"))`.
pub fn float32_array(values: &[f32]) -> String {
    let mut out = String::with_capacity(2 + values.len() * 20);
    out.push('[');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_float(&mut out, f64::from(*value));
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(x: f64) -> String {
        let mut s = String::new();
        write_float(&mut s, x);
        s
    }

    #[test]
    #[allow(clippy::excessive_precision)] // both example prices are exact in f32
    fn layouts_match_python_repr() {
        // Each expectation is what CPython 3.11 prints for repr(x).
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (5.0, "5.0"),
            (8506.8203125, "8506.8203125"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (1.2345678901234567e16, "1.2345678901234568e+16"),
            (-3.4028234663852886e38, "-3.4028234663852886e+38"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, expected) in cases {
            assert_eq!(repr(x), expected, "repr({x:e})");
        }
        assert_eq!(
            float32_array(&[8506.8203125, 17892.189453125]),
            "[8506.8203125,17892.189453125]"
        );
        assert_eq!(float32_array(&[]), "[]");
    }
}
