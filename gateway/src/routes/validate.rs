//! Input checks shared by handlers, each with the message a client can act on.

use std::time::Duration;

use agenttier_crds::parse_go_duration;

use crate::error::ApiError;

/// Kubernetes' RFC 1123 label rule, which sandbox names and namespaces follow.
pub fn dns_label(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid {field} {value:?}: must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"
        )))
    }
}

/// A positive Go duration (`invalid <field>: …` otherwise).
pub fn positive_duration(field: &str, value: &str) -> Result<Duration, ApiError> {
    match parse_go_duration(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(ApiError::BadRequest(format!(
            "invalid {field}: must be positive, got {value:?}"
        ))),
        Err(e) => Err(ApiError::BadRequest(format!("invalid {field}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "my-sandbox-1", &"a".repeat(63)] {
            assert!(dns_label("name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64), "ü"] {
            assert!(dns_label("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            positive_duration("timeout", "5m").ok(),
            Some(Duration::from_secs(300))
        );
        assert!(positive_duration("timeout", "0s").is_err());
        assert!(positive_duration("timeout", "five").is_err());
    }
}
