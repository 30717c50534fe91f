//! Checks every report passes, and how a refusal is worded: the field (a JSON path) and the
//! problem, because the people reading them are MCP authors debugging their reporting code.

/// Why a report was refused: the field (a JSON path, empty for the body as a whole) and the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{problem}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct BadReport {
    pub field: String,
    pub problem: String,
}

impl BadReport {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// `min ≤ value ≤ max`, and finite.
pub fn check_range(value: f64, min: f64, max: f64) -> Result<(), String> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{value} is outside {min}–{max}"))
    }
}

/// IDs travel in URLs and file names: keep them to a safe alphabet.
pub fn check_id(id: &str, field: &str) -> Result<(), BadReport> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(BadReport::new(
            field,
            format!("{id:?} must be 1–128 characters of letters, digits, '_', '-', '.', ':'"),
        ))
    }
}
