//! Reports read straight from JSON text, without first building a `serde_json::Value` of the
//! whole record: the batch path, where building and dropping those maps (a heap key per field, a
//! tree per section) was the largest cost of the ingest server in its profile. A record comes out
//! as [`parse_report`](super::parse_report) makes it from the same text, and a refusal names the
//! same field; where a record has several faults, the first in the text is the one named.
//!
//! A record's faults refuse that record only: the rest of it is read past, and the batch goes on.
//! Only text that is not JSON at all fails the whole batch.

use std::fmt;

use serde::de::value::SeqAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::borrowed::{Json, Key};
use super::checks::BadReport;
use super::event::EventKind;
use super::fields::{FieldId, Fields};
use super::kinds::{wrong_type, Refusal};
use super::section::{At, Section};
use super::wire::{
    finish, has_field, read_kind, read_section, subsection, typed, unknown, Identity, ParsedReport,
};

/// One record of a batch: the report it makes, or why it was refused.
pub type Record = Result<ParsedReport, BadReport>;

/// The records of a batch, a JSON array of reports of `kind`. The error is serde's: a `Data`
/// error when the text is JSON but not an array, a syntax error otherwise.
pub fn parse_records(text: &str, kind: EventKind) -> Result<Vec<Record>, serde_json::Error> {
    let mut json = serde_json::Deserializer::from_str(text);
    let records = json.deserialize_seq(RecordsVisitor { kind })?;
    json.end()?;
    Ok(records)
}

/// One record (a line of NDJSON).
pub fn parse_record(text: &str, kind: EventKind) -> Result<Record, serde_json::Error> {
    let mut json = serde_json::Deserializer::from_str(text);
    let record = ReportSeed { kind, path: "" }.deserialize(&mut json)?;
    json.end()?;
    Ok(record)
}

struct RecordsVisitor {
    kind: EventKind,
}

impl<'de> Visitor<'de> for RecordsVisitor {
    type Value = Vec<Record>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of interaction records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Record>, A::Error> {
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        let seed = || ReportSeed {
            kind: self.kind,
            path: "",
        };
        while let Some(record) = seq.next_element_seed(seed())? {
            records.push(record);
        }
        Ok(records)
    }
}

/// Reads the rest of a map without looking at it (after a refusal).
fn skip_rest<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    while map.next_key::<IgnoredAny>()?.is_some() {
        map.next_value::<IgnoredAny>()?;
    }
    Ok(())
}

/// Values that are not maps, kept as values for the refusal that names their type.
macro_rules! not_a_map {
    ($refuse:expr) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok($refuse(self, Value::Bool(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok($refuse(self, Value::from(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok($refuse(self, Value::from(v)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok($refuse(self, Value::from(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok($refuse(self, Value::String(v.to_owned())))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let value = Value::deserialize(SeqAccessDeserializer::new(seq))?;
            Ok($refuse(self, value))
        }
    };
}

/// One report: identity, top-level fields, sections, and the flat fields of the data protocol,
/// which win over the same fields in their sections (applied last, as `read_top` does).
struct ReportSeed<'p> {
    kind: EventKind,
    path: &'p str,
}

impl<'de> DeserializeSeed<'de> for ReportSeed<'_> {
    type Value = Record;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Record, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ReportSeed<'_> {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an interaction record (a JSON object)")
    }

    not_a_map!(|this: Self, _| Err(BadReport::new(this.path, "must be a JSON object")));

    fn visit_unit<E: de::Error>(self) -> Result<Record, E> {
        Ok(Err(BadReport::new(self.path, "must be a JSON object")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let top = At::report(self.path);
        let mut fields = Fields::default();
        let mut identity = Identity::default();
        let mut flat: Vec<(String, Value)> = Vec::new();
        let mut flat_sections: Vec<Value> = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            let at = top.child(&key);
            let read: Result<(), BadReport> = match key.as_ref() {
                "interaction_id" => {
                    typed(map.next_value()?, at).map(|id| identity.interaction_id = id)
                }
                "mcp_id" => typed(map.next_value()?, at).map(|id| identity.mcp_id = id),
                "kind" => read_kind(map.next_value()?, self.kind, at)
                    .map(|kind| identity.kind = Some(kind)),
                key => match FieldId::of(Section::Top, key) {
                    Some(id) => fields.set_json(id, map.next_value()?, at),
                    None => read_other_top(
                        key,
                        at,
                        &mut map,
                        &mut fields,
                        &mut flat,
                        &mut flat_sections,
                    )?,
                },
            };
            if let Err(refused) = read {
                skip_rest(&mut map)?;
                return Ok(Err(refused));
            }
        }
        let applied = (|| {
            for value in flat_sections {
                read_section(
                    Section::ResourceUsage,
                    value,
                    top.child("resource_usage"),
                    &mut fields,
                )?;
            }
            for (key, value) in &mut flat {
                let section = if has_field(Section::ProcessingData, key) {
                    Section::ProcessingData
                } else {
                    Section::ResultData
                };
                fields.set(section, key, value.take(), top.child(key))?;
            }
            Ok(())
        })();
        Ok(applied.and_then(|()| finish(fields, identity, self.kind, self.path)))
    }
}

/// A top-level key that is not a top-level field: a section, a flat field of the data protocol
/// (kept to apply last), or a key the record does not have.
fn read_other_top<'de, A: MapAccess<'de>>(
    key: &str,
    at: At<'_>,
    map: &mut A,
    fields: &mut Fields,
    flat: &mut Vec<(String, Value)>,
    flat_sections: &mut Vec<Value>,
) -> Result<Result<(), BadReport>, A::Error> {
    Ok(match subsection(Section::Top, key) {
        Some(Section::ResourceUsage) => {
            flat_sections.push(map.next_value()?);
            Ok(())
        }
        Some(section) => map.next_value_seed(SectionSeed {
            section,
            at,
            fields,
        })?,
        None if [Section::ProcessingData, Section::ResultData]
            .iter()
            .any(|s| has_field(*s, key)) =>
        {
            flat.push((key.to_owned(), map.next_value()?));
            Ok(())
        }
        None => {
            map.next_value::<IgnoredAny>()?;
            Err(unknown(Section::Top, key, at))
        }
    })
}

/// One nested section (an object, or null for "not given"), read into `fields`.
struct SectionSeed<'a, 'k> {
    section: Section,
    at: At<'k>,
    fields: &'a mut Fields,
}

impl<'de> DeserializeSeed<'de> for SectionSeed<'_, '_> {
    type Value = Result<(), BadReport>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SectionSeed<'_, '_> {
    type Value = Result<(), BadReport>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    not_a_map!(|this: Self, value: Value| {
        let problem = match wrong_type::<Map<String, Value>>(&value, "an object") {
            Refusal::WrongType(p) | Refusal::Invalid(p) => p,
        };
        Err(BadReport::new(this.at.found_at(), problem))
    });

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let section = self.section;
        while let Some(Key(key)) = map.next_key::<Key>()? {
            let inner = self.at.child(&key);
            let read = if let Some(id) = FieldId::of(section, &key) {
                let json: Json = map.next_value()?;
                if id == FieldId::parameters {
                    read_parameters(&json, inner, self.fields)
                        .and_then(|()| self.fields.set_json(id, json, inner))
                } else {
                    self.fields.set_json(id, json, inner)
                }
            } else if let Some(sub) = subsection(section, &key) {
                map.next_value_seed(SectionSeed {
                    section: sub,
                    at: inner,
                    fields: &mut *self.fields,
                })?
            } else {
                map.next_value::<IgnoredAny>()?;
                Err(unknown(section, &key, inner))
            };
            if let Err(refused) = read {
                skip_rest(&mut map)?;
                return Ok(Err(refused));
            }
        }
        Ok(Ok(()))
    }
}

/// The labels among the request's parameters (`wire::read_parameters`, from the borrowed value):
/// in key order, each key's last value.
fn read_parameters(
    parameters: &Json<'_>,
    at: At<'_>,
    fields: &mut Fields,
) -> Result<(), BadReport> {
    let Json::Object(entries) = parameters else {
        return Ok(());
    };
    for (key, value) in entries {
        if let Some(id) = FieldId::of(Section::Parameters, key) {
            fields.set_by_id(id, value.clone().into_value(), at.child(key))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{parse_report, FIELDS};
    use super::*;

    /// The streamed reading and the reading of a value agree on `record`, accepted or refused.
    fn agree(record: &Value, kind: EventKind) -> Record {
        let text = record.to_string();
        let streamed = parse_record(&text, kind).unwrap_or_else(|e| panic!("{text}: {e}"));
        let from_value = parse_report(record.clone(), kind, "");
        assert_eq!(streamed, from_value, "{text}");
        streamed
    }

    fn seed_record() -> Value {
        json!({
            "interaction_id": "int_20250615_194500_abc123",
            "mcp_id": "ocr_workflow_mcp_001",
            "session_id": "sess_1",
            "timestamp": "2025-06-15T19:45:00.123Z",
            "request_data": {"user_id": "user_12345", "request_type": "ocr_processing", "input_size": 1024000,
                "parameters": {"quality_level": "high", "privacy_level": "internal", "dpi": 300, "nested": {"a": [1, 2]}}},
            "processing_data": {"start_time": "2025-06-15T19:45:00.123Z", "end_time": "2025-06-15T19:45:05.456Z",
                "processing_time": 5.333, "adapter_used": "tesseract_v5_adapter",
                "steps_executed": ["validation", "ocr"],
                "resource_usage": {"cpu_usage": 45.2, "memory_usage": 512.5, "gpu_usage": 0.0}},
            "result_data": {"success": true, "output_size": 2048, "quality_score": 0.95, "confidence": 0.92,
                "error_code": null, "error_message": null},
            "metadata": {"mcp_version": "1.2.3", "coordinator_version": "0.1.0", "environment": "production", "region": "eu-west-1"}
        })
    }

    #[test]
    fn the_seed_record_reads_as_from_a_value() {
        let parsed = agree(&seed_record(), EventKind::Record).unwrap();
        assert_eq!(parsed.fields.cpu_usage, Some(45.2));
        assert_eq!(parsed.fields.quality_level.as_deref(), Some("high"));
        assert_eq!(
            parsed.fields.steps_executed.as_deref(),
            Some(r#"["validation","ocr"]"#)
        );
        for kind in [
            EventKind::Start,
            EventKind::Progress,
            EventKind::Complete,
            EventKind::Error,
        ] {
            let _ = agree(&seed_record(), kind);
        }
    }

    #[test]
    fn every_field_and_every_wrong_type_reads_as_from_a_value() {
        let wrong = [
            json!("text"),
            json!(-1),
            json!(2.5),
            json!(true),
            json!([1]),
            json!({"a": 1}),
        ];
        for spec in FIELDS {
            for value in wrong.iter().cloned().chain([Value::Null]) {
                let mut record = json!({});
                match spec.section {
                    Section::Parameters => Section::RequestData.insert(
                        &mut record,
                        "parameters",
                        json!({spec.key: value}),
                    ),
                    section => section.insert(&mut record, spec.key, value),
                }
                let _ = agree(&record, EventKind::Record);
            }
        }
    }

    #[test]
    fn the_flat_protocol_and_refusals_read_as_from_a_value() {
        for record in [
            json!({"processing_time": 2.0, "processing_data": {"processing_time": 1.0},
                   "resource_usage": {"cpu_usage": 3.0}, "success": false, "error_code": "E"}),
            json!({"request_info": {"user_id": "u"}, "message": "half way", "progress": 0.5}),
            json!({"cpu_usage": 1}),
            json!({"qualty": 1}),
            json!({"request_data": {"colour": "red"}}),
            json!({"resource_usage": {"gpu_usage": -1.0}}),
            json!({"processing_data": {"resource_usage": 5}}),
            json!({"request_data": 7}),
            json!({"request_data": "text"}),
            json!({"result_data": [1, {"a": 2}]}),
            json!({"metadata": null, "result_data": null}),
            json!({"interaction_id": 5}),
            json!({"interaction_id": "has space"}),
            json!({"mcp_id": null}),
            json!({"interaction_id": "i", "result_data": {"error_message": "x".repeat(70_000)}}),
            json!({"request_data": {"parameters": "not an object"}}),
            json!({"request_data": {"parameters": {"privacy_level": "secret"}}}),
        ] {
            for kind in [EventKind::Record, EventKind::Error, EventKind::Complete] {
                let _ = agree(&record, kind);
            }
        }
        for not_a_record in [json!(1), json!("x"), json!([1]), json!(null), json!(true)] {
            let _ = agree(&not_a_record, EventKind::Record);
        }
    }

    #[test]
    fn repeated_keys_escapes_and_free_form_fields_read_as_from_a_value() {
        for text in [
            r#"{"request_data": {"parameters": {"z": 1, "quality_level": "low", "a": {"y": [2, {"b": null, "a": 1.5}]}, "quality_level": "high"}}}"#,
            r#"{"request_data": {"parameters": {"privacy_level": "secret", "privacy_level": "public"}}}"#,
            r#"{"request_data": {"parameters": {"privacy_level": "public", "privacy_level": "secret"}}}"#,
            r#"{"request_data": {"parameters": {"quality_level": 5, "l\u00e4ng": "d\u00e9", "esc\"ape": "a\nb"}}}"#,
            r#"{"request_data": {"parameters": {"quality_level": "x", "privacy_level": 7, "quality_level": 8}}}"#,
            r#"{"request_data": {"parameters": [1, 2]}}"#,
            r#"{"request_data": {"parameters": null, "user_id": "u"}}"#,
            r#"{"processing_data": {"steps_executed": ["a", "b\u00e9", "a"], "steps_executed": ["c"]}}"#,
            r#"{"processing_data": {"steps_executed": ["a", 1]}}"#,
            r#"{"processing_data": {"steps_executed": "a"}}"#,
            r#"{"processing_data": {"steps_executed": []}}"#,
            r#"{"processing_data": {"steps_executed": null}}"#,
            r#"{"result_data": {"error_code": 404, "error_message": "not\tfound"}}"#,
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            for kind in [EventKind::Record, EventKind::Complete] {
                let streamed = parse_record(text, kind).unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(streamed, parse_report(value.clone(), kind, ""), "{text}");
            }
        }
        let parsed = parse_record(
            r#"{"request_data": {"parameters": {"b": [1, "x"], "a": true}}}"#,
            EventKind::Record,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            parsed.fields.parameters.as_deref(),
            Some(r#"{"a":true,"b":[1,"x"]}"#)
        );
    }

    #[test]
    fn keys_with_escapes_are_read() {
        let text = r#"{"interaction_id": "i", "request_d\u0061ta": {"user_id": "u\"1"}}"#;
        let parsed = parse_record(text, EventKind::Record).unwrap().unwrap();
        assert_eq!(parsed.fields.user_id.as_deref(), Some("u\"1"));
    }

    #[test]
    fn a_batch_refuses_records_one_by_one_and_only_broken_text_as_a_whole() {
        let good = seed_record();
        let text = json!([good, {"request_data": 7}, 1, good]).to_string();
        let records = parse_records(&text, EventKind::Record).unwrap();
        assert_eq!(records.len(), 4);
        assert!(records[0].is_ok() && records[3].is_ok());
        assert_eq!(records[1].as_ref().unwrap_err().field, "request_data");
        assert!(records[2]
            .as_ref()
            .unwrap_err()
            .problem
            .contains("JSON object"));
        let not_an_array = parse_records(r#"{"interaction_id": "i"}"#, EventKind::Record);
        assert_eq!(
            not_an_array.unwrap_err().classify(),
            serde_json::error::Category::Data
        );
        let broken = parse_records(r#"[{"interaction_id": "i"}"#, EventKind::Record);
        assert_eq!(
            broken.unwrap_err().classify(),
            serde_json::error::Category::Eof
        );
        let trailing = parse_records("[] x", EventKind::Record);
        assert_eq!(
            trailing.unwrap_err().classify(),
            serde_json::error::Category::Syntax
        );
    }
}
