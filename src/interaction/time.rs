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
    utc_form_ms(text.as_bytes()).or_else(|| {
        text.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_millisecond())
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` from 1970 to 9998, the form clients send (a record carries up to
/// three), read without a general parser: jiff's was a sixteenth of reading a batch. `None` means
/// "not this form", not "invalid": offsets, leap seconds, other years and anything malformed are
/// left to jiff, which decides.
fn utc_form_ms(b: &[u8]) -> Option<i64> {
    if !(20..=30).contains(&b.len()) {
        return None;
    }
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, c)| b[at] != c) || b[b.len() - 1] != b'Z' {
        return None;
    }
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (number(&b[0..4])?, number(&b[5..7])?, number(&b[8..10])?);
    let (hour, minute, second) = (
        number(&b[11..13])?,
        number(&b[14..16])?,
        number(&b[17..19])?,
    );
    let millis = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            number(fraction)?;
            let first_three = fraction.iter().chain([b'0'; 2].iter()).take(3);
            first_three.fold(0, |n, &c| n * 10 + i64::from(c - b'0'))
        }
        _ => return None,
    };
    // jiff's timestamps end on 9999-12-30: the last year is left to it.
    let valid = (1970..=9998).contains(&year)
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    let seconds = ((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second;
    Some(seconds * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
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

    /// The quick reading of the common form answers as jiff does, and never takes what jiff
    /// refuses: dates, times and fractions at and beyond their edges, and malformed variants.
    #[test]
    fn the_common_form_reads_as_jiff_reads_it() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let jiff = |t: &str| {
            t.parse::<jiff::Timestamp>()
                .ok()
                .map(|t| t.as_millisecond())
        };
        let mut quick = 0;
        for _ in 0..200_000 {
            let year = [1969, 1970, 2000, 2024, 2100, 9999][next(6) as usize] + next(3) as i64 - 1;
            let fraction = match next(4) {
                0 => String::new(),
                _ => {
                    let (from, digits) = (next(10) as usize, 1 + next(10) as usize);
                    format!(".{}", &"0123456789".repeat(2)[from..][..digits])
                }
            };
            let text = format!(
                "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{}",
                next(14),
                next(33),
                next(26),
                next(62),
                next(62),
                ["Z", "Z", "z", "+00:00", "+01:30", ""][next(6) as usize],
            );
            let mut text = text.into_bytes();
            if next(8) == 0 {
                let at = next(text.len() as u64) as usize;
                text[at] = b"0T:-.Z x9"[next(9) as usize];
            }
            let text = String::from_utf8(text).unwrap();
            let fast = utc_form_ms(text.as_bytes());
            if fast.is_some() {
                quick += 1;
                assert_eq!(fast, jiff(&text), "{text}");
            }
            assert_eq!(parse_rfc3339_ms(&text), jiff(&text), "{text}");
        }
        assert!(quick > 10_000, "the quick path read only {quick}");
    }
}
