//! A JSON value read straight from a report's text, its keys and strings borrowed from the text
//! where they hold no escapes: what the streamed reader reads fields into. The fields kept as JSON
//! text (the request's parameters, lists) are written back from it exactly as serde_json writes a
//! [`Value`] (keys sorted, the last of repeated keys kept, compact), without building one: building
//! and dropping those values (a heap key and a heap string each, a tree per object) was two
//! fifths of reading a batch in the ingest profile. Every other field becomes the [`Value`] its
//! kind reads.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::{Number, Value};

/// A JSON value, borrowed from the text it was read from where it can be.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'de> {
    /// Null, a boolean or a number (none of which allocates as a [`Value`]).
    Scalar(Value),
    Text(Cow<'de, str>),
    List(Vec<Json<'de>>),
    /// Sorted by key, each key once (the last given), as a [`Value`]'s map holds them.
    Object(Vec<(Cow<'de, str>, Json<'de>)>),
}

impl Json<'_> {
    /// The same value as a [`Value`].
    pub(super) fn into_value(self) -> Value {
        match self {
            Json::Scalar(value) => value,
            Json::Text(text) => Value::String(text.into_owned()),
            Json::List(items) => Value::Array(items.into_iter().map(Json::into_value).collect()),
            Json::Object(entries) => Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.into_owned(), value.into_value()))
                    .collect(),
            ),
        }
    }

    /// Compact JSON text, the text `serde_json::to_string` writes for the same [`Value`].
    pub(super) fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.clone().into_value().to_string())
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Scalar(value) => value.serialize(serializer),
            Json::Text(text) => serializer.serialize_str(text),
            Json::List(items) => serializer.collect_seq(items),
            Json::Object(entries) => {
                serializer.collect_map(entries.iter().map(|(key, value)| (key.as_ref(), value)))
            }
        }
    }
}

/// A key or a string, borrowed from the text unless it holds escapes.
pub(super) struct Key<'de>(pub(super) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
            fn visit_string<E: de::Error>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// Reads values as serde_json's own visitor for [`Value`] does, keeping strings borrowed.
struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Value::Number(v.into())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(
            Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Text(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        // A map keeps the last of repeated keys: reversed, a stable sort puts the last given of
        // each key first among its equals, and dedup keeps the first.
        entries.reverse();
        entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        entries.dedup_by(|(later, _), (kept, _)| later == kept);
        Ok(Json::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(text: &str) -> Json<'_> {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// Its text and its value are serde_json's for the same JSON text.
    fn agrees(text: &str) {
        let value: Value = serde_json::from_str(text).unwrap();
        let json = read(text);
        assert_eq!(
            json.text(),
            serde_json::to_string(&value).unwrap(),
            "{text}"
        );
        assert_eq!(json.into_value(), value, "{text}");
    }

    #[test]
    fn it_writes_what_serde_json_writes_for_the_same_value() {
        for text in [
            r#"{"quality_level": "high", "language": "en", "output_format": "json", "dpi": 300}"#,
            r#"{"b": 1, "a": {"d": [1, 2.5, -3, 1e300, 0.1], "c": null}, "B": true, "": false}"#,
            r#"{"k": 1, "k": 2, "j": 0, "k": 3}"#,
            r#"{"k": {"x": 1}, "k": [1]}"#,
            r#"{"esc\"aped": "line\nbreak \u00e9 \ud83d\ude00 \\ \/", "ä": "ö", "a": "ä"}"#,
            r#"["validation", "preprocessing", "ocr"]"#,
            r#"[[], {}, [{}], 18446744073709551615, -9223372036854775808, 1.0, 0.30000000000000004]"#,
            r#""text""#,
            "12.5e-3",
            "null",
            "{}",
        ] {
            agrees(text);
        }
    }

    #[test]
    fn keys_and_strings_without_escapes_are_borrowed() {
        let json = read(r#"{"plain": "text", "esc\u0061ped": "t\u0065xt"}"#);
        let Json::Object(entries) = json else {
            panic!("not an object")
        };
        assert!(matches!(entries[0].0, Cow::Owned(_)), "escaped key");
        assert!(
            matches!(entries[0].1, Json::Text(Cow::Owned(_))),
            "escaped string"
        );
        assert!(matches!(entries[1].0, Cow::Borrowed("plain")));
        assert!(matches!(entries[1].1, Json::Text(Cow::Borrowed("text"))));
        assert_eq!(
            read(r#"{"a": [1, "x"]}"#).into_value(),
            json!({"a": [1, "x"]})
        );
    }
}
