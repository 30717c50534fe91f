//! The kinds of interaction fields: how a report's JSON value becomes a stored value (with the
//! check that goes with it), the ClickHouse type it is stored as, and how it is shown in the
//! standard record. Each field in `interaction_fields!` names its kind.

use serde::Deserialize;
use serde_json::Value;

use super::checks::{check_range, BadReport};
use super::time::{format_ms, parse_rfc3339_ms};

/// One kind of field.
pub trait Kind {
    /// What is stored.
    type Value;
    /// The ClickHouse column type (always wrapped in `Nullable`).
    const COLUMN: &'static str;
    /// Reads a non-null JSON value. Type errors name `found_at` (where the value was), check
    /// failures name `field` (the field's place in the standard record).
    fn read(value: &Value, found_at: &str, field: &str) -> Result<Option<Self::Value>, BadReport>;
    /// The value in the standard record (`null` when absent); `None` leaves the key out.
    fn show(value: Option<&Self::Value>) -> Option<Value>
    where
        Self::Value: Into<Value> + Clone,
    {
        Some(value.cloned().map_or(Value::Null, Into::into))
    }
}

fn typed<'a, T: Deserialize<'a>>(value: &'a Value, found_at: &str) -> Result<T, BadReport> {
    T::deserialize(value).map_err(|e| BadReport::new(found_at, e.to_string()))
}

/// Free text.
pub struct Text;
impl Kind for Text {
    type Value = String;
    const COLUMN: &'static str = "String";
    fn read(value: &Value, found_at: &str, _: &str) -> Result<Option<String>, BadReport> {
        typed(value, found_at).map(Some)
    }
}

/// A size: a whole number, not negative.
pub struct Count;
impl Kind for Count {
    type Value = i64;
    const COLUMN: &'static str = "Int64";
    fn read(value: &Value, found_at: &str, field: &str) -> Result<Option<i64>, BadReport> {
        match typed::<i64>(value, found_at)? {
            v if v < 0 => Err(BadReport::new(field, format!("{v} must not be negative"))),
            v => Ok(Some(v)),
        }
    }
}

/// A measurement (seconds, a share of a CPU, megabytes): a finite number, not negative.
pub struct Amount;
impl Kind for Amount {
    type Value = f64;
    const COLUMN: &'static str = "Float64";
    fn read(value: &Value, found_at: &str, field: &str) -> Result<Option<f64>, BadReport> {
        match typed::<f64>(value, found_at)? {
            v if !v.is_finite() || v < 0.0 => Err(BadReport::new(
                field,
                format!("{v} must be a non-negative number"),
            )),
            v => Ok(Some(v)),
        }
    }
}

/// A score from 0 to 1.
pub struct Unit;
impl Kind for Unit {
    type Value = f64;
    const COLUMN: &'static str = "Float64";
    fn read(value: &Value, found_at: &str, field: &str) -> Result<Option<f64>, BadReport> {
        let v = typed::<f64>(value, found_at)?;
        check_range(v, 0.0, 1.0, field)?;
        Ok(Some(v))
    }
}

/// An RFC 3339 timestamp, stored as epoch milliseconds.
pub struct Time;
impl Kind for Time {
    type Value = i64;
    const COLUMN: &'static str = "Int64";
    fn read(value: &Value, found_at: &str, field: &str) -> Result<Option<i64>, BadReport> {
        let text: &str = typed(value, found_at)?;
        parse_rfc3339_ms(text).map(Some).ok_or_else(|| {
            BadReport::new(
                field,
                format!("{text:?} is not an RFC 3339 timestamp such as 2025-06-15T19:45:00.123Z"),
            )
        })
    }
    fn show(value: Option<&i64>) -> Option<Value> {
        Some(value.map_or(Value::Null, |ms| Value::String(format_ms(*ms))))
    }
}

/// Yes or no.
pub struct Flag;
impl Kind for Flag {
    type Value = bool;
    const COLUMN: &'static str = "UInt8";
    fn read(value: &Value, found_at: &str, _: &str) -> Result<Option<bool>, BadReport> {
        typed(value, found_at).map(Some)
    }
}

/// An error code: text, or a whole number (kept as its text).
pub struct Code;
impl Kind for Code {
    type Value = String;
    const COLUMN: &'static str = "String";
    fn read(value: &Value, found_at: &str, _: &str) -> Result<Option<String>, BadReport> {
        match value {
            Value::String(text) => Ok(Some(text.clone())),
            Value::Number(n) if n.as_i64().is_some() => Ok(Some(n.to_string())),
            other => Err(BadReport::new(
                found_at,
                format!("invalid type: {other}, expected a string or a whole number"),
            )),
        }
    }
}

/// A free-form JSON object, stored as its text; shown as `{}` when absent.
pub struct Object;
impl Kind for Object {
    type Value = String;
    const COLUMN: &'static str = "String";
    fn read(value: &Value, found_at: &str, _: &str) -> Result<Option<String>, BadReport> {
        typed::<serde_json::Map<String, Value>>(value, found_at)?;
        Ok(Some(value.to_string()))
    }
    fn show(value: Option<&String>) -> Option<Value> {
        Some(json_text(value).unwrap_or_else(|| Value::Object(Default::default())))
    }
}

/// A list of strings, stored as JSON text; shown as `[]` when absent.
pub struct List;
impl Kind for List {
    type Value = String;
    const COLUMN: &'static str = "String";
    fn read(value: &Value, found_at: &str, _: &str) -> Result<Option<String>, BadReport> {
        typed::<Vec<&str>>(value, found_at)?;
        Ok(Some(value.to_string()))
    }
    fn show(value: Option<&String>) -> Option<Value> {
        Some(json_text(value).unwrap_or_else(|| Value::Array(Vec::new())))
    }
}

fn json_text(value: Option<&String>) -> Option<Value> {
    value.and_then(|text| serde_json::from_str(text).ok())
}

/// A label taken from a free-form section (the request's parameters): kept when it is text,
/// ignored otherwise; shown only when set, beside the free-form keys.
pub struct Label;
impl Kind for Label {
    type Value = String;
    const COLUMN: &'static str = "String";
    fn read(value: &Value, _: &str, _: &str) -> Result<Option<String>, BadReport> {
        Ok(value.as_str().map(str::to_string))
    }
    fn show(value: Option<&String>) -> Option<Value> {
        value.cloned().map(Value::String)
    }
}

/// The privacy level a request asks for: a [`Label`] that must be public, internal or sensitive.
pub struct Privacy;
impl Kind for Privacy {
    type Value = String;
    const COLUMN: &'static str = "String";
    fn read(value: &Value, found_at: &str, field: &str) -> Result<Option<String>, BadReport> {
        match Label::read(value, found_at, field)? {
            Some(level) if !matches!(level.as_str(), "public" | "internal" | "sensitive") => {
                Err(BadReport::new(
                    field,
                    format!("{level:?} is not one of public, internal, sensitive"),
                ))
            }
            other => Ok(other),
        }
    }
    fn show(value: Option<&String>) -> Option<Value> {
        Label::show(value)
    }
}
