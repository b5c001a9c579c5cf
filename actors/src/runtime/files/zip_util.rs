//! What the zip writers of both runtimes share.

/// A unix time as a zip timestamp (UTC; zip cannot hold times before 1980 or after 2107).
pub fn zip_time(unix_seconds: i64) -> zip::DateTime {
    use k8s_openapi::jiff::{Timestamp, tz::TimeZone};
    Timestamp::from_second(unix_seconds)
        .ok()
        .map(|t| t.to_zoned(TimeZone::UTC))
        .and_then(|z| {
            let (Ok(year), Ok(month), Ok(day), Ok(hour), Ok(minute), Ok(second)) = (
                u16::try_from(z.year()),
                u8::try_from(z.month()),
                u8::try_from(z.day()),
                u8::try_from(z.hour()),
                u8::try_from(z.minute()),
                u8::try_from(z.second()),
            ) else {
                return None;
            };
            zip::DateTime::from_date_and_time(year, month, day, hour, minute, second).ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_convert_within_the_zip_range() {
        let t = zip_time(1_700_000_000);
        assert_eq!((t.year(), t.month(), t.day()), (2023, 11, 14));
        assert_eq!((t.hour(), t.minute(), t.second()), (22, 13, 20));
        // Before 1980: zip's default (1980-01-01).
        assert_eq!(zip_time(0), zip::DateTime::default());
    }
}
