//! What a read's query parameters mean: each parsed, bounded and refused with the parameter
//! named.

use std::collections::HashMap;

use super::now_ms;
use super::reply::ApiError;
use crate::interaction::parse_rfc3339_ms;
use crate::store::{Dimension, TimeRange};

pub(super) const MINUTE_MS: i64 = 60_000;
/// The most points a series answers.
const MAX_POINTS: i64 = 2_000;

/// The decoded query string.
pub type Params = HashMap<String, String>;

pub fn parse_query(query: &str) -> Params {
    reqwest::Url::parse(&format!("http://q/?{query}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn limit(params: &Params) -> Result<usize, ApiError> {
    match params.get("limit") {
        None => Ok(100),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::query("limit", "must be a whole number from 1 to 1000")),
    }
}

pub(super) fn time(text: &str, field: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .or_else(|| parse_rfc3339_ms(text))
        .ok_or_else(|| {
            ApiError::query(field, "must be an RFC 3339 timestamp or epoch milliseconds")
        })
}

/// The `range` parameter (default 1h) as given and as the window ending now.
pub(super) fn range(params: &Params) -> Result<(String, TimeRange), ApiError> {
    let text = params.get("range").cloned().unwrap_or_else(|| "1h".into());
    let range = TimeRange::parse(&text, now_ms()).map_err(|p| ApiError::query("range", &p))?;
    Ok((text, range))
}

/// The `group_by` parameter, if given.
pub(super) fn group_by(params: &Params) -> Result<Option<Dimension>, ApiError> {
    params
        .get("group_by")
        .map(|text| Dimension::parse(text).map_err(|p| ApiError::query("group_by", &p)))
        .transpose()
}

/// The `step` parameter (whole minutes; by default the range in about 60 points) as given and in
/// milliseconds.
pub(super) fn step(params: &Params, range: TimeRange) -> Result<(String, i64), ApiError> {
    let span = range.until_ms - range.since_ms;
    let Some(text) = params.get("step") else {
        let minutes = ((span + 60 * MINUTE_MS - 1) / (60 * MINUTE_MS)).max(1);
        return Ok((format!("{minutes}m"), minutes * MINUTE_MS));
    };
    let parsed = TimeRange::parse(text, 0).map_err(|p| ApiError::query("step", &p))?;
    let step_ms = parsed.until_ms - parsed.since_ms;
    if step_ms % MINUTE_MS != 0 {
        return Err(ApiError::query(
            "step",
            "must be whole minutes, such as 1m, 5m or 1h",
        ));
    }
    if (span + step_ms - 1) / step_ms > MAX_POINTS {
        return Err(ApiError::query(
            "step",
            &format!("gives more than {MAX_POINTS} points over this range; widen it"),
        ));
    }
    Ok((text.clone(), step_ms))
}

/// The `user_id` parameter, if given: one user's interactions (the pseudonym history shows).
pub(super) fn user_id(params: &Params) -> Result<Option<String>, ApiError> {
    match params.get("user_id") {
        Some(u) if u.is_empty() || u.len() > 256 => Err(ApiError::query(
            "user_id",
            "a user ID of 1–256 bytes (the pseudonym history shows)",
        )),
        other => Ok(other.cloned()),
    }
}
