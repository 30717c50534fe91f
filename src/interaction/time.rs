//! Timestamps of the standard record: RFC 3339 with milliseconds, kept as epoch milliseconds.

/// RFC 3339 with milliseconds, UTC.
pub fn format_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => ms.to_string(),
    }
}

/// Parses an RFC 3339 timestamp into epoch milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_with_milliseconds() {
        let ms = parse_rfc3339_ms("2025-06-15T19:45:00.123Z").unwrap();
        assert_eq!(format_ms(ms), "2025-06-15T19:45:00.123Z");
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
