//! Kubernetes resource quantities (`500m`, `2`, `512Mi`, `10Gi`, `1G`, `1e3`) as numbers, for
//! cgroup limits and governance caps.

use crate::error::{Error, Result};

/// Parses a quantity to its value in base units (bytes, or cores for CPU).
pub fn parse_quantity(input: &str) -> Result<f64> {
    let invalid = || Error::InvalidQuantity(input.to_string());
    let s = input.trim();
    if s.is_empty() {
        return Err(invalid());
    }
    let suffixes: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0f64.powi(4)),
        ("Pi", 1024.0f64.powi(5)),
        ("Ei", 1024.0f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = s.strip_suffix(suffix) {
            let value: f64 = number.parse().map_err(|_| invalid())?;
            return finite_non_negative(value * factor).ok_or_else(invalid);
        }
    }
    let value: f64 = s.parse().map_err(|_| invalid())?;
    finite_non_negative(value).ok_or_else(invalid)
}

fn finite_non_negative(v: f64) -> Option<f64> {
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// A memory quantity in bytes.
pub fn parse_bytes(input: &str) -> Result<u64> {
    Ok(parse_quantity(input)?.round() as u64)
}

/// A CPU quantity in millicores.
pub fn parse_millicores(input: &str) -> Result<u64> {
    Ok((parse_quantity(input)? * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities() {
        assert_eq!(parse_bytes("512Mi"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_millicores("500m"), Ok(500));
        assert_eq!(parse_millicores("2"), Ok(2000));
        assert_eq!(parse_millicores("0.5"), Ok(500));
        for bad in ["", "abc", "-1", "1Xi", "Mi"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }
}
