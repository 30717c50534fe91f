//! The kinds of interaction fields: how a report's JSON value becomes a stored value (with the
//! check that goes with it), the ClickHouse type it is stored as, and how it is shown in the
//! standard record. Each field in `interaction_fields!` names its kind.

use serde::Deserialize;
use serde_json::Value;

use super::borrowed::Json;
use super::checks::check_range;
use super::time::{format_ms, parse_rfc3339_ms};

/// Why a value was refused: its JSON type (named where it was found) or a failed check (named at
/// the field's place in the standard record).
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    WrongType(String),
    Invalid(String),
}

/// One kind of field.
pub trait Kind {
    /// What is stored.
    type Value;
    /// The ClickHouse column type (always wrapped in `Nullable`).
    const COLUMN: &'static str;
    /// Reads a non-null JSON value, taking what it keeps without copying.
    fn read(value: Value) -> Result<Option<Self::Value>, Refusal>;
    /// Reads a value borrowed from the report's text, when this kind keeps it without making a
    /// [`Value`] of it; `None` has the caller read [`Value`] (and refuse with its type).
    fn read_json(_json: &Json<'_>) -> Option<Self::Value> {
        None
    }
    /// The value in the standard record (`null` when absent); `None` leaves the key out.
    fn show(value: Option<&Self::Value>) -> Option<Value>
    where
        Self::Value: Into<Value> + Clone,
    {
        Some(value.cloned().map_or(Value::Null, Into::into))
    }
    /// Merges a later event's value into the interaction's: by default the later value wins.
    fn merge(into: &mut Option<Self::Value>, later: &Option<Self::Value>)
    where
        Self::Value: Clone,
    {
        if later.is_some() {
            into.clone_from(later);
        }
    }
    /// The ClickHouse expression that merges the column `name` over an interaction's events the
    /// way [`Kind::merge`] does (the events grouped, `received_ms` their order).
    fn merged_sql(name: &str) -> String {
        format!("argMaxIf({name}, received_ms, isNotNull({name}))")
    }
    /// A value as [`Kind::merged_sql`] answers it, made what [`Kind::merge`] would have made.
    fn normalize(value: Option<Self::Value>) -> Option<Self::Value> {
        value
    }
}

/// The refusal serde gives when `value` is not a `T` (worked out only once it is known not to be).
pub fn wrong_type<'a, T: Deserialize<'a>>(value: &'a Value, expected: &str) -> Refusal {
    Refusal::WrongType(match T::deserialize(value) {
        Err(e) => e.to_string(),
        Ok(_) => format!("expected {expected}"),
    })
}

fn text(value: Value) -> Result<String, Refusal> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(wrong_type::<String>(&other, "a string")),
    }
}

/// Longest name (an ID, a type, a version, a region, a code), in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest free text (an error message), in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

fn bounded(text: String, max: usize) -> Result<String, Refusal> {
    if text.len() > max {
        return Err(Refusal::Invalid(format!(
            "is {} bytes long; at most {max}",
            text.len()
        )));
    }
    Ok(text)
}

fn number(value: Value) -> Result<f64, Refusal> {
    value
        .as_f64()
        .ok_or_else(|| wrong_type::<f64>(&value, "a number"))
}

/// Text of at most `MAX` bytes.
pub struct Bounded<const MAX: usize>;
impl<const MAX: usize> Kind for Bounded<MAX> {
    type Value = String;
    const COLUMN: &'static str = "String";
    fn read(value: Value) -> Result<Option<String>, Refusal> {
        bounded(text(value)?, MAX).map(Some)
    }
}

/// Free text (an error message).
pub type Text = Bounded<MAX_TEXT_BYTES>;
/// A name: an ID, a type, a version, a region.
pub type Name = Bounded<MAX_NAME_BYTES>;

/// A size: a whole number, not negative.
pub struct Count;
impl Kind for Count {
    type Value = i64;
    const COLUMN: &'static str = "Int64";
    fn read(value: Value) -> Result<Option<i64>, Refusal> {
        match value.as_i64() {
            Some(v) if v < 0 => Err(Refusal::Invalid(format!("{v} must not be negative"))),
            Some(v) => Ok(Some(v)),
            None => Err(wrong_type::<i64>(&value, "a whole number")),
        }
    }
}

/// A measurement (seconds, a share of a CPU, megabytes): a finite number, not negative.
pub struct Amount;
impl Kind for Amount {
    type Value = f64;
    const COLUMN: &'static str = "Float64";
    fn read(value: Value) -> Result<Option<f64>, Refusal> {
        match number(value)? {
            v if !v.is_finite() || v < 0.0 => Err(Refusal::Invalid(format!(
                "{v} must be a non-negative number"
            ))),
            v => Ok(Some(v)),
        }
    }
}

/// A score from 0 to 1.
pub struct Unit;
impl Kind for Unit {
    type Value = f64;
    const COLUMN: &'static str = "Float64";
    fn read(value: Value) -> Result<Option<f64>, Refusal> {
        let score = number(value)?;
        check_range(score, 0.0, 1.0)
            .map(|()| Some(score))
            .map_err(Refusal::Invalid)
    }
}

/// An RFC 3339 timestamp, stored as epoch milliseconds.
pub struct Time;
impl Kind for Time {
    type Value = i64;
    const COLUMN: &'static str = "Int64";
    fn read(value: Value) -> Result<Option<i64>, Refusal> {
        let text = text(value)?;
        parse_rfc3339_ms(&text).map(Some).ok_or_else(|| {
            Refusal::Invalid(format!(
                "{text:?} is not an RFC 3339 timestamp such as 2025-06-15T19:45:00.123Z"
            ))
        })
    }
    /// A timestamp is read from the text itself; one that does not parse goes the way of a
    /// [`Value`], which words the refusal.
    fn read_json(json: &Json<'_>) -> Option<i64> {
        match json {
            Json::Text(text) => parse_rfc3339_ms(text),
            _ => None,
        }
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
    fn read(value: Value) -> Result<Option<bool>, Refusal> {
        value
            .as_bool()
            .map(Some)
            .ok_or_else(|| wrong_type::<bool>(&value, "a boolean"))
    }
}

/// An error code: text, or a whole number (kept as its text).
pub struct Code;
impl Kind for Code {
    type Value = String;
    const COLUMN: &'static str = "String";
    fn read(value: Value) -> Result<Option<String>, Refusal> {
        match value {
            Value::String(text) => bounded(text, MAX_NAME_BYTES).map(Some),
            Value::Number(n) if n.as_i64().is_some() => Ok(Some(n.to_string())),
            other => Err(Refusal::WrongType(format!(
                "invalid type: {other}, expected a string or a whole number"
            ))),
        }
    }
}

/// A free-form JSON object, stored as its text; shown as `{}` when absent.
pub struct Object;
impl Kind for Object {
    type Value = String;
    const COLUMN: &'static str = "String";
    fn read(value: Value) -> Result<Option<String>, Refusal> {
        if !value.is_object() {
            return Err(wrong_type::<serde_json::Map<String, Value>>(
                &value,
                "an object",
            ));
        }
        Ok(Some(compact_text(&value)))
    }
    fn read_json(json: &Json<'_>) -> Option<String> {
        matches!(json, Json::Object(_)).then(|| json.text())
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
    fn read(value: Value) -> Result<Option<String>, Refusal> {
        let strings = value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string));
        if !strings {
            return Err(wrong_type::<Vec<&str>>(&value, "a list of strings"));
        }
        Ok(Some(compact_text(&value)))
    }
    fn read_json(json: &Json<'_>) -> Option<String> {
        let Json::List(items) = json else { return None };
        items
            .iter()
            .all(|item| matches!(item, Json::Text(_)))
            .then(|| json.text())
    }
    fn show(value: Option<&String>) -> Option<Value> {
        Some(json_text(value).unwrap_or_else(|| Value::Array(Vec::new())))
    }
    /// Lists accumulate across reports (`steps_executed` of a progress report and of the
    /// completion): each item once, in the order first reported.
    fn merge(into: &mut Option<String>, later: &Option<String>) {
        let Some(later) = later else { return };
        let Some(earlier) = into.as_deref() else {
            *into = Some(later.clone());
            return;
        };
        *into = Some(union_of_lists(&[earlier, later]));
    }
    /// Every event's list, oldest first, joined into one JSON array (duplicates are removed by
    /// [`Kind::normalize`]).
    fn merged_sql(name: &str) -> String {
        let items = format!(
            "arrayMap(x -> substring(tupleElement(x, 2), 2, length(tupleElement(x, 2)) - 2), \
             arraySort(x -> tupleElement(x, 1), groupArrayIf((received_ms, assumeNotNull({name})), isNotNull({name}))))"
        );
        format!(
            "if(countIf(isNotNull({name})) = 0, NULL, concat('[', arrayStringConcat(arrayFilter(s -> s != '', {items}), ','), ']'))"
        )
    }
    fn normalize(value: Option<String>) -> Option<String> {
        value.map(|text| union_of_lists(&[&text]))
    }
}

/// The items of JSON string arrays, each once, in the order first seen, as a JSON array.
fn union_of_lists(lists: &[&str]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for list in lists {
        let items: Vec<String> = serde_json::from_str(list).unwrap_or_default();
        for item in items {
            if !seen.contains(&item) {
                seen.push(item);
            }
        }
    }
    Value::from(seen).to_string()
}

/// A value as compact JSON text, the text `Value`'s `Display` writes, but written into a buffer
/// sized for it rather than through the formatter's adapter into a string grown from empty (the
/// two were a fifth of reading a batch in the ingest profile).
fn compact_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
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
    fn read(value: Value) -> Result<Option<String>, Refusal> {
        let Value::String(label) = value else {
            return Ok(None);
        };
        bounded(label, MAX_NAME_BYTES).map(Some)
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
    fn read(value: Value) -> Result<Option<String>, Refusal> {
        match Label::read(value)? {
            Some(level) if !matches!(level.as_str(), "public" | "internal" | "sensitive") => {
                Err(Refusal::Invalid(format!(
                    "{level:?} is not one of public, internal, sensitive"
                )))
            }
            other => Ok(other),
        }
    }
    fn show(value: Option<&String>) -> Option<Value> {
        Label::show(value)
    }
}
