//! The wire format of reports: the seed's standard record (nested sections) and the flat fields of
//! its data protocol (`request_info`, top-level `processing_time`, `success`, …), read into
//! [`Fields`] by the field list. Every rejection names the field and the problem, because the
//! people reading them are MCP authors debugging their reporting code.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::checks::{check_id, BadReport};
use super::event::EventKind;
use super::fields::{FieldId, Fields, FIELDS};
use super::kinds::{wrong_type, Refusal};
use super::section::{join, At, Section};

/// The error code of an error report that names none.
pub const UNKNOWN_ERROR: &str = "UNKNOWN_ERROR";

/// The most a progress report's free-form details may take, as JSON text.
pub const MAX_PROGRESS_DETAILS: usize = 8 * 1024;

/// The seed's `report_interaction_progress(progress_data)` takes any keys: those a report does not
/// know are gathered under `details` (bounded), so they are kept and listed in the timeline.
pub fn gather_progress_details(
    report: &mut Map<String, Value>,
    path: &str,
) -> Result<(), BadReport> {
    let unknown: Vec<String> = report
        .keys()
        .filter(|k| !knows_top_key(k))
        .cloned()
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let mut details = match report.remove("details") {
        Some(Value::Object(d)) => d,
        _ => Map::new(),
    };
    for key in unknown {
        if let Some(value) = report.remove(&key) {
            details.insert(key, value);
        }
    }
    let size = Value::Object(details.clone()).to_string().len();
    if size > MAX_PROGRESS_DETAILS {
        return Err(BadReport::new(
            path,
            format!("the progress report's own keys take {size} bytes of JSON; at most {MAX_PROGRESS_DETAILS} are kept"),
        ));
    }
    report.insert("details".into(), Value::Object(details));
    Ok(())
}

/// Whether a report's top level reads `key`: identity, a field, a section, a flat field.
fn knows_top_key(key: &str) -> bool {
    matches!(key, "interaction_id" | "mcp_id" | "details")
        || has_field(Section::Top, key)
        || subsection(Section::Top, key).is_some()
        || [Section::ProcessingData, Section::ResultData]
            .iter()
            .any(|s| has_field(*s, key))
}

/// A parsed report: which interaction and MCP it names (if it does) and the fields it sets.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedReport {
    pub interaction_id: Option<String>,
    pub mcp_id: Option<String>,
    /// The kind a batch item named (`"kind": "start"`, …); a whole record when it names none.
    pub kind: Option<EventKind>,
    pub fields: Fields,
}

/// What a report says besides its fields.
#[derive(Default)]
pub(super) struct Identity {
    pub(super) interaction_id: Option<String>,
    pub(super) mcp_id: Option<String>,
    pub(super) kind: Option<EventKind>,
}

/// A batch item's `kind`: which report it is. Only a batch's items may name one.
pub(super) fn read_kind(
    value: Value,
    parsing: EventKind,
    at: At<'_>,
) -> Result<EventKind, BadReport> {
    if parsing != EventKind::Record {
        return Err(unknown(Section::Top, "kind", at));
    }
    let name: String = typed(value, at)?;
    EventKind::named(&name).ok_or_else(|| {
        BadReport::new(
            at.found_at(),
            format!("{name:?} is not a report: start, progress, complete, error or record"),
        )
    })
}

/// Parses one report of `kind` from `value`; `path` prefixes field names in errors (e.g. `data`).
pub fn parse_report(value: Value, kind: EventKind, path: &str) -> Result<ParsedReport, BadReport> {
    let Value::Object(report) = value else {
        return Err(BadReport::new(path, "must be a JSON object"));
    };
    let mut fields = Fields::default();
    let mut identity = Identity::default();
    read_top(report, path, kind, &mut fields, &mut identity)?;
    finish(fields, identity, kind, path)
}

/// What a report of `kind` implies beyond what it says, and the checks of its identity.
pub(super) fn finish(
    mut fields: Fields,
    identity: Identity,
    kind: EventKind,
    path: &str,
) -> Result<ParsedReport, BadReport> {
    let at = |f: &str| join(path, f);
    let kind = identity.kind.unwrap_or(kind);
    match kind {
        EventKind::Complete if fields.success.is_none() => {
            fields.success = Some(fields.error_code.is_none())
        }
        EventKind::Error => {
            // The seed's error reports need not name a code.
            if fields.error_code.is_none() {
                fields.error_code = Some(UNKNOWN_ERROR.to_string());
            }
            fields.success = Some(false);
        }
        _ => {}
    }
    // The seed's processing_data gives start and end; the duration follows when it is missing.
    if let (None, Some(start), Some(end)) = (
        fields.processing_time,
        fields.start_time_ms,
        fields.end_time_ms,
    ) {
        if end >= start {
            fields.processing_time = Some((end - start) as f64 / 1000.0);
        }
    }
    // The path is written only for a refusal: every record of a batch passes here.
    for (id, key) in [
        (&identity.interaction_id, "interaction_id"),
        (&identity.mcp_id, "mcp_id"),
    ] {
        if let Some(id) = id {
            check_id(id, "").map_err(|refused| BadReport::new(at(key), refused.problem))?;
        }
    }
    Ok(ParsedReport {
        interaction_id: identity.interaction_id,
        mcp_id: identity.mcp_id,
        kind: identity.kind,
        fields,
    })
}

/// The top level: identity, progress notes, sections, and the flat fields, which win over the
/// same fields in their sections.
fn read_top(
    report: Map<String, Value>,
    path: &str,
    parsing: EventKind,
    fields: &mut Fields,
    identity: &mut Identity,
) -> Result<(), BadReport> {
    let top = At::report(path);
    let mut flat = Vec::new();
    let mut flat_sections = Vec::new();
    for (key, value) in report {
        let at = top.child(&key);
        match key.as_str() {
            "interaction_id" => identity.interaction_id = typed(value, at)?,
            "mcp_id" => identity.mcp_id = typed(value, at)?,
            "kind" => identity.kind = Some(read_kind(value, parsing, at)?),
            _ => {
                let Some(value) = fields.set(Section::Top, &key, value, at)? else {
                    continue;
                };
                match subsection(Section::Top, &key) {
                    Some(Section::ResourceUsage) => flat_sections.push(value),
                    Some(section) => read_section(section, value, at, fields)?,
                    None if [Section::ProcessingData, Section::ResultData]
                        .iter()
                        .any(|s| has_field(*s, &key)) =>
                    {
                        flat.push((key, value))
                    }
                    None => return Err(unknown(Section::Top, &key, at)),
                }
            }
        }
    }
    for value in flat_sections {
        read_section(
            Section::ResourceUsage,
            value,
            top.child("resource_usage"),
            fields,
        )?;
    }
    for (key, value) in flat {
        let section = if has_field(Section::ProcessingData, &key) {
            Section::ProcessingData
        } else {
            Section::ResultData
        };
        fields.set(section, &key, value, top.child(&key))?;
    }
    Ok(())
}

/// One nested section (an object, or null for "not given").
pub(super) fn read_section(
    section: Section,
    value: Value,
    at: At<'_>,
    fields: &mut Fields,
) -> Result<(), BadReport> {
    let object = match value {
        Value::Object(object) => object,
        Value::Null => return Ok(()),
        other => {
            let problem = match wrong_type::<Map<String, Value>>(&other, "an object") {
                Refusal::WrongType(p) | Refusal::Invalid(p) => p,
            };
            return Err(BadReport::new(at.found_at(), problem));
        }
    };
    for (key, value) in object {
        let inner = at.child(&key);
        if section == Section::RequestData && key == "parameters" {
            read_parameters(&value, inner, fields)?;
        }
        let Some(value) = fields.set(section, &key, value, inner)? else {
            continue;
        };
        match subsection(section, &key) {
            Some(sub) => read_section(sub, value, inner, fields)?,
            None => return Err(unknown(section, &key, inner)),
        }
    }
    Ok(())
}

/// The parameters are free-form; the keys that are also fields are read as such.
pub(super) fn read_parameters(
    value: &Value,
    at: At<'_>,
    fields: &mut Fields,
) -> Result<(), BadReport> {
    let Some(parameters) = value.as_object() else {
        return Ok(());
    };
    for (key, value) in parameters {
        if has_field(Section::Parameters, key) {
            fields.set(Section::Parameters, key, value.clone(), at.child(key))?;
        }
    }
    Ok(())
}

pub(super) fn subsection(section: Section, key: &str) -> Option<Section> {
    match (section, key) {
        (Section::Top, "request_data" | "request_info") => Some(Section::RequestData),
        (Section::Top, "processing_data") => Some(Section::ProcessingData),
        (Section::Top, "result_data") => Some(Section::ResultData),
        (Section::Top, "metadata") => Some(Section::Metadata),
        // The data protocol's flat form carries resource usage at the top.
        (Section::Top | Section::ProcessingData, "resource_usage") => Some(Section::ResourceUsage),
        _ => None,
    }
}

pub(super) fn has_field(section: Section, key: &str) -> bool {
    FieldId::of(section, key).is_some()
}

pub(super) fn typed<T: DeserializeOwned>(value: Value, at: At<'_>) -> Result<T, BadReport> {
    T::deserialize(value).map_err(|e| BadReport::new(at.found_at(), e.to_string()))
}

pub(super) fn unknown(section: Section, key: &str, at: At<'_>) -> BadReport {
    let mut expected: Vec<&str> = FIELDS
        .iter()
        .filter(|f| f.section == section)
        .map(|f| f.key)
        .collect();
    expected.extend(match section {
        Section::Top => &[
            "interaction_id",
            "mcp_id",
            "request_data",
            "processing_data",
            "result_data",
            "metadata",
            "resource_usage",
        ][..],
        Section::ProcessingData => &["resource_usage"][..],
        _ => &[][..],
    });
    let expected: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
    BadReport::new(
        at.found_at(),
        format!(
            "unknown field `{key}`, expected one of {}",
            expected.join(", ")
        ),
    )
}

/// A new interaction id in the seed's style: `int_YYYYMMDD_HHMMSS_xxxxxx`.
pub fn new_interaction_id(now_ms: i64) -> String {
    let stamp = jiff::Timestamp::from_millisecond(now_ms)
        .map(|t| t.strftime("%Y%m%d_%H%M%S").to_string())
        .unwrap_or_else(|_| "00000000_000000".into());
    format!("int_{stamp}_{:016x}", random_u64())
}

/// 64 random bits: two starts in the same second collide about once in 2^32 pairs, not at a
/// thousand starts a second as 24 bits would (a collision silently merges two interactions).
fn random_u64() -> u64 {
    // The thread's generator (ChaCha, seeded from the OS once): a getrandom system call for
    // every interaction showed in the gateway's profile.
    rand::random::<u64>()
}

#[cfg(test)]
mod tests {
    use super::super::Interaction;
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_start_and_complete_reports_parse() {
        let start = json!({"interaction_id": "int_1", "mcp_id": "ocr_workflow_mcp_001",
            "request_info": {"user_id": "user_12345", "request_type": "ocr_processing", "input_size": 1024000}});
        let parsed = parse_report(start, EventKind::Start, "data").unwrap();
        assert_eq!(parsed.fields.user_id.as_deref(), Some("user_12345"));
        assert_eq!(parsed.fields.input_size, Some(1_024_000));
        let complete = json!({"interaction_id": "int_1", "processing_time": 5.333, "success": true,
            "quality_score": 0.95, "resource_usage": {"cpu_usage": 45.2, "memory_usage": 512.5}});
        let parsed = parse_report(complete, EventKind::Complete, "data").unwrap();
        assert_eq!(parsed.fields.processing_time, Some(5.333));
        assert_eq!(parsed.fields.cpu_usage, Some(45.2));
    }

    #[test]
    fn wrong_types_and_unknown_fields_name_the_field() {
        let err = parse_report(
            json!({"result_data": {"quality_score": "high"}}),
            EventKind::Record,
            "",
        )
        .unwrap_err();
        assert_eq!(err.field, "result_data.quality_score");
        assert!(err.problem.contains("invalid type"), "{err}");
        let err = parse_report(
            json!({"interaction_id": "a", "qualty": 1}),
            EventKind::Start,
            "data",
        )
        .unwrap_err();
        assert!(err.problem.contains("unknown field `qualty`"), "{err}");
        let err =
            parse_report(json!({"quality_score": 1.5}), EventKind::Complete, "data").unwrap_err();
        assert_eq!(
            err.to_string(),
            "data.result_data.quality_score: 1.5 is outside 0–1"
        );
    }

    #[test]
    fn error_reports_fail_the_interaction_with_their_code_or_unknown_error() {
        // The seed's report_interaction_error(error_data) need not name a code.
        let parsed = parse_report(json!({"error_message": "boom"}), EventKind::Error, "").unwrap();
        assert_eq!(
            (parsed.fields.error_code.as_deref(), parsed.fields.success),
            (Some(UNKNOWN_ERROR), Some(false))
        );
        let parsed = parse_report(
            json!({"error_code": 504, "error_message": "timeout"}),
            EventKind::Error,
            "",
        )
        .unwrap();
        assert_eq!(
            (parsed.fields.error_code.as_deref(), parsed.fields.success),
            (Some("504"), Some(false))
        );
    }

    #[test]
    fn a_batch_item_may_say_which_report_it_is_and_nothing_else_may() {
        let parsed = parse_report(
            json!({"kind": "complete", "interaction_id": "i"}),
            EventKind::Record,
            "",
        )
        .unwrap();
        assert_eq!(
            (parsed.kind, parsed.fields.success),
            (Some(EventKind::Complete), Some(true))
        );
        let parsed = parse_report(
            json!({"kind": "error", "interaction_id": "i"}),
            EventKind::Record,
            "",
        )
        .unwrap();
        assert_eq!(parsed.fields.error_code.as_deref(), Some(UNKNOWN_ERROR));
        let streamed = super::super::parse_records(
            r#"[{"kind": "progress", "interaction_id": "i", "progress": 0.5}]"#,
            EventKind::Record,
        )
        .unwrap();
        assert_eq!(
            streamed[0].as_ref().unwrap().kind,
            Some(EventKind::Progress)
        );
        let refused = parse_report(json!({"kind": "done"}), EventKind::Record, "").unwrap_err();
        assert_eq!(refused.field, "kind");
        let refused = parse_report(json!({"kind": "start"}), EventKind::Start, "").unwrap_err();
        assert_eq!(
            refused.field, "kind",
            "a single report's kind is its endpoint's"
        );
    }

    #[test]
    fn a_missing_processing_time_is_derived_from_start_and_end() {
        let parsed = parse_report(
            json!({"processing_data": {"start_time": "2025-06-15T19:45:00.123Z", "end_time": "2025-06-15T19:45:05.456Z"}}),
            EventKind::Complete,
            "",
        )
        .unwrap();
        assert_eq!(parsed.fields.processing_time, Some(5.333));
        // A given one is kept; an end before the start derives nothing.
        let parsed = parse_report(
            json!({"processing_time": 1.0, "processing_data": {"start_time": "2025-06-15T19:45:00Z", "end_time": "2025-06-15T19:45:05Z"}}),
            EventKind::Complete,
            "",
        )
        .unwrap();
        assert_eq!(parsed.fields.processing_time, Some(1.0));
        let parsed = parse_report(
            json!({"processing_data": {"start_time": "2025-06-15T19:45:05Z", "end_time": "2025-06-15T19:45:00Z"}}),
            EventKind::Complete,
            "",
        )
        .unwrap();
        assert_eq!(parsed.fields.processing_time, None);
    }

    #[test]
    fn a_progress_reports_own_keys_are_gathered_as_details_and_bounded() {
        let mut report =
            json!({"interaction_id": "int_1", "progress": 0.5, "page": 3, "stage": "ocr"});
        let map = report.as_object_mut().unwrap();
        gather_progress_details(map, "data").unwrap();
        let parsed = parse_report(report, EventKind::Progress, "data").unwrap();
        assert_eq!(
            parsed.fields.progress_details.as_deref(),
            Some(r#"{"page":3,"stage":"ocr"}"#)
        );
        assert_eq!(parsed.fields.progress, Some(0.5));
        let mut big = json!({"blob": "x".repeat(MAX_PROGRESS_DETAILS)});
        let refused = gather_progress_details(big.as_object_mut().unwrap(), "data").unwrap_err();
        assert!(refused.problem.contains("at most 8192"), "{refused:?}");
    }

    /// A value of each kind that its check accepts.
    fn sample(kind: &str) -> Value {
        match kind {
            "Text" | "Name" | "Code" | "Label" => json!("x"),
            "Count" => json!(7),
            "Amount" => json!(1.5),
            "Unit" => json!(0.5),
            "Time" => json!("2025-06-15T19:45:00.123Z"),
            "Flag" => json!(true),
            "Object" => json!({"a": 1}),
            "List" => json!(["a"]),
            "Privacy" => json!("internal"),
            other => panic!("no sample for kind {other}: add one"),
        }
    }

    #[test]
    fn every_field_is_read_from_its_place_in_the_standard_record() {
        for spec in FIELDS {
            let mut record = json!({});
            let (section, key) = match spec.section {
                // Parameters arrive inside request_data.parameters.
                Section::Parameters => (Section::RequestData, "parameters"),
                s => (s, spec.key),
            };
            let value = match spec.section {
                Section::Parameters => json!({spec.key: sample(spec.kind)}),
                _ => sample(spec.kind),
            };
            section.insert(&mut record, key, value);
            let parsed = parse_report(record.clone(), EventKind::Progress, "")
                .unwrap_or_else(|e| panic!("{}: {record} refused: {e}", spec.name));
            let stored = serde_json::to_value(&parsed.fields).unwrap();
            assert!(
                !stored[spec.name].is_null(),
                "{} was not read from {record}",
                spec.name
            );
            let shown = Interaction {
                interaction_id: "i".into(),
                mcp_id: "m".into(),
                fields: parsed.fields,
                first_received_ms: 0,
                last_received_ms: 0,
                timeline: Vec::new(),
            }
            .to_json();
            let mut at = &shown;
            for part in spec.section.field_path(spec.key).split('.') {
                at = &at[part];
            }
            assert!(
                !at.is_null(),
                "{} is not shown at its place: {shown}",
                spec.name
            );
        }
    }

    #[test]
    fn flat_fields_win_over_their_sections_and_checks_name_the_standard_place() {
        let parsed = parse_report(
            json!({"processing_time": 2.0, "processing_data": {"processing_time": 1.0},
                   "resource_usage": {"cpu_usage": 3.0}}),
            EventKind::Record,
            "",
        )
        .unwrap();
        assert_eq!(parsed.fields.processing_time, Some(2.0));
        assert_eq!(parsed.fields.cpu_usage, Some(3.0));
        let err = parse_report(json!({"cpu_usage": 1}), EventKind::Record, "").unwrap_err();
        assert!(err.problem.contains("unknown field `cpu_usage`"), "{err}");
        let err = parse_report(
            json!({"resource_usage": {"gpu_usage": -1.0}}),
            EventKind::Record,
            "",
        )
        .unwrap_err();
        assert_eq!(err.field, "processing_data.resource_usage.gpu_usage");
    }

    #[test]
    fn names_and_texts_have_a_length_bound() {
        let long_name = "x".repeat(super::super::kinds::MAX_NAME_BYTES + 1);
        let err = parse_report(
            json!({"request_data": {"request_type": long_name}}),
            EventKind::Record,
            "",
        )
        .unwrap_err();
        assert_eq!(err.field, "request_data.request_type");
        assert!(err.problem.contains("at most 256"), "{err}");
        let long_text = "x".repeat(super::super::kinds::MAX_TEXT_BYTES + 1);
        let err =
            parse_report(json!({"error_message": long_text}), EventKind::Record, "").unwrap_err();
        assert_eq!(err.field, "result_data.error_message");
        let ok = "x".repeat(super::super::kinds::MAX_NAME_BYTES);
        let at_the_bound = parse_report(
            json!({"metadata": {"environment": ok}}),
            EventKind::Record,
            "",
        );
        assert!(at_the_bound.is_ok(), "{at_the_bound:?}");
    }

    #[test]
    fn ids_are_checked_and_generated_in_the_seed_style() {
        assert!(parse_report(json!({"interaction_id": "../etc"}), EventKind::Start, "").is_err());
        let id = new_interaction_id(1_750_016_700_000);
        assert!(id.starts_with("int_20250615_194500_"), "{id}");
        let random = &id["int_20250615_194500_".len()..];
        assert_eq!(random.len(), 16, "64 random bits: {id}");
        assert!(random.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        check_id(&id, "interaction_id").unwrap();
        let many: std::collections::HashSet<String> = (0..10_000)
            .map(|_| new_interaction_id(1_750_016_700_000))
            .collect();
        assert_eq!(many.len(), 10_000, "ids of one second do not collide");
    }
}
