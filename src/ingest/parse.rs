//! Turning request bodies into events. Every rejection names the field and the problem, because
//! the people reading them are MCP authors debugging their reporting code.

use serde::Deserialize;
use serde_json::Value;

use super::model::{parse_rfc3339_ms, EventKind, Fields};

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

/// The seed's `action` envelope.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub action: String,
    #[serde(default)]
    pub api_key: Option<String>,
    pub data: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestData {
    user_id: Option<String>,
    request_type: Option<String>,
    input_size: Option<i64>,
    parameters: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceUsage {
    cpu_usage: Option<f64>,
    memory_usage: Option<f64>,
    gpu_usage: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessingData {
    start_time: Option<String>,
    end_time: Option<String>,
    processing_time: Option<f64>,
    adapter_used: Option<String>,
    steps_executed: Option<Vec<String>>,
    resource_usage: Option<ResourceUsage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultData {
    success: Option<bool>,
    output_size: Option<i64>,
    quality_score: Option<f64>,
    confidence: Option<f64>,
    error_code: Option<Code>,
    error_message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    mcp_version: Option<String>,
    coordinator_version: Option<String>,
    environment: Option<String>,
    region: Option<String>,
}

/// Error codes arrive as strings or numbers.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Code {
    Text(String),
    Number(i64),
}

/// Everything a report may carry: the standard record's nested sections, and the flat fields of
/// the seed's data protocol (`request_info`, top-level `processing_time`, `success`, …).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    interaction_id: Option<String>,
    session_id: Option<String>,
    mcp_id: Option<String>,
    mcp_type: Option<String>,
    timestamp: Option<String>,
    #[serde(alias = "request_info")]
    request_data: Option<RequestData>,
    processing_data: Option<ProcessingData>,
    result_data: Option<ResultData>,
    metadata: Option<Metadata>,
    start_time: Option<String>,
    end_time: Option<String>,
    processing_time: Option<f64>,
    adapter_used: Option<String>,
    steps_executed: Option<Vec<String>>,
    resource_usage: Option<ResourceUsage>,
    success: Option<bool>,
    output_size: Option<i64>,
    quality_score: Option<f64>,
    confidence: Option<f64>,
    error_code: Option<Code>,
    error_message: Option<String>,
    /// Progress fraction 0–1; accepted, not stored.
    progress: Option<f64>,
    /// Free text with a progress report; accepted, not stored.
    message: Option<String>,
}

/// A parsed report: which interaction and MCP it names (if it does) and the fields it sets.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedReport {
    pub interaction_id: Option<String>,
    pub mcp_id: Option<String>,
    pub fields: Fields,
}

/// Parses one report of `kind` from `value`; `path` prefixes field names in errors (e.g. `data`).
pub fn parse_report(value: Value, kind: EventKind, path: &str) -> Result<ParsedReport, BadReport> {
    if !value.is_object() {
        return Err(BadReport::new(path, "must be a JSON object"));
    }
    let report: Report = serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let field = match (path.is_empty(), inner == ".") {
            (_, true) => path.to_string(),
            (true, false) => inner,
            (false, false) => format!("{path}.{inner}"),
        };
        BadReport::new(field, strip_position(&e.into_inner().to_string()))
    })?;
    let at = |f: &str| {
        if path.is_empty() {
            f.to_string()
        } else {
            format!("{path}.{f}")
        }
    };
    let _ = (&report.progress, &report.message);
    if let Some(p) = report.progress {
        check_range(p, 0.0, 1.0, &at("progress"))?;
    }

    let request = report.request_data.unwrap_or_default();
    let processing = report.processing_data.unwrap_or_default();
    let result = report.result_data.unwrap_or_default();
    let metadata = report.metadata.unwrap_or_default();
    let usage = report
        .resource_usage
        .or(processing.resource_usage)
        .unwrap_or_default();

    let time = |value: Option<String>, field: &str| -> Result<Option<i64>, BadReport> {
        value
            .map(|t| {
                parse_rfc3339_ms(&t).ok_or_else(|| {
                    BadReport::new(
                        at(field),
                        format!(
                            "{t:?} is not an RFC 3339 timestamp such as 2025-06-15T19:45:00.123Z"
                        ),
                    )
                })
            })
            .transpose()
    };
    let parameters = request.parameters;
    let quality_level = parameters
        .as_ref()
        .and_then(|p| p.get("quality_level"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let privacy_level = parameters
        .as_ref()
        .and_then(|p| p.get("privacy_level"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(level) = &privacy_level {
        if !matches!(level.as_str(), "public" | "internal" | "sensitive") {
            return Err(BadReport::new(
                at("request_data.parameters.privacy_level"),
                format!("{level:?} is not one of public, internal, sensitive"),
            ));
        }
    }
    let fields = Fields {
        session_id: report.session_id,
        mcp_type: report.mcp_type,
        timestamp_ms: time(report.timestamp, "timestamp")?,
        user_id: request.user_id,
        request_type: request.request_type,
        input_size: non_negative_int(request.input_size, &at("request_data.input_size"))?,
        parameters: parameters.map(|p| Value::Object(p).to_string()),
        quality_level,
        privacy_level,
        start_time_ms: time(
            report.start_time.or(processing.start_time),
            "processing_data.start_time",
        )?,
        end_time_ms: time(
            report.end_time.or(processing.end_time),
            "processing_data.end_time",
        )?,
        processing_time: non_negative(
            report.processing_time.or(processing.processing_time),
            &at("processing_data.processing_time"),
        )?,
        adapter_used: report.adapter_used.or(processing.adapter_used),
        steps_executed: report
            .steps_executed
            .or(processing.steps_executed)
            .map(|s| Value::from(s).to_string()),
        cpu_usage: non_negative(
            usage.cpu_usage,
            &at("processing_data.resource_usage.cpu_usage"),
        )?,
        memory_usage: non_negative(
            usage.memory_usage,
            &at("processing_data.resource_usage.memory_usage"),
        )?,
        gpu_usage: non_negative(
            usage.gpu_usage,
            &at("processing_data.resource_usage.gpu_usage"),
        )?,
        success: report.success.or(result.success),
        output_size: non_negative_int(
            report.output_size.or(result.output_size),
            &at("result_data.output_size"),
        )?,
        quality_score: unit(
            report.quality_score.or(result.quality_score),
            &at("result_data.quality_score"),
        )?,
        confidence: unit(
            report.confidence.or(result.confidence),
            &at("result_data.confidence"),
        )?,
        error_code: report.error_code.or(result.error_code).map(|c| match c {
            Code::Text(t) => t,
            Code::Number(n) => n.to_string(),
        }),
        error_message: report.error_message.or(result.error_message),
        mcp_version: metadata.mcp_version,
        coordinator_version: metadata.coordinator_version,
        environment: metadata.environment,
        region: metadata.region,
    };
    let mut fields = fields;
    match kind {
        EventKind::Complete if fields.success.is_none() => {
            fields.success = Some(fields.error_code.is_none())
        }
        EventKind::Error => {
            if fields.error_code.is_none() {
                return Err(BadReport::new(
                    at("error_code"),
                    "required for an error report (e.g. \"OCR_TIMEOUT\")",
                ));
            }
            fields.success = Some(false);
        }
        _ => {}
    }
    if let Some(id) = &report.interaction_id {
        check_id(id, &at("interaction_id"))?;
    }
    if let Some(id) = &report.mcp_id {
        check_id(id, &at("mcp_id"))?;
    }
    Ok(ParsedReport {
        interaction_id: report.interaction_id,
        mcp_id: report.mcp_id,
        fields,
    })
}

/// serde_json appends " at line 1 column 42"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn check_range(value: f64, min: f64, max: f64, field: &str) -> Result<(), BadReport> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(BadReport::new(
            field,
            format!("{value} is outside {min}–{max}"),
        ))
    }
}

fn unit(value: Option<f64>, field: &str) -> Result<Option<f64>, BadReport> {
    if let Some(v) = value {
        check_range(v, 0.0, 1.0, field)?;
    }
    Ok(value)
}

fn non_negative(value: Option<f64>, field: &str) -> Result<Option<f64>, BadReport> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => Err(BadReport::new(
            field,
            format!("{v} must be a non-negative number"),
        )),
        other => Ok(other),
    }
}

fn non_negative_int(value: Option<i64>, field: &str) -> Result<Option<i64>, BadReport> {
    match value {
        Some(v) if v < 0 => Err(BadReport::new(field, format!("{v} must not be negative"))),
        other => Ok(other),
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

/// A new interaction id in the seed's style: `int_YYYYMMDD_HHMMSS_xxxxxx`.
pub fn new_interaction_id(now_ms: i64) -> String {
    let stamp = jiff::Timestamp::from_millisecond(now_ms)
        .map(|t| t.strftime("%Y%m%d_%H%M%S").to_string())
        .unwrap_or_else(|_| "00000000_000000".into());
    let mut bytes = [0u8; 3];
    // Uniqueness also rests on the second; a failing OS RNG falls back to the clock's low bits.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = [
            (now_ms & 0xff) as u8,
            ((now_ms >> 8) & 0xff) as u8,
            ((now_ms >> 16) & 0xff) as u8,
        ];
    }
    format!(
        "int_{stamp}_{:02x}{:02x}{:02x}",
        bytes[0], bytes[1], bytes[2]
    )
}

#[cfg(test)]
mod tests {
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
    fn error_reports_need_a_code_and_fail_the_interaction() {
        assert_eq!(
            parse_report(json!({}), EventKind::Error, "")
                .unwrap_err()
                .field,
            "error_code"
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
    fn ids_are_checked_and_generated_in_the_seed_style() {
        assert!(parse_report(json!({"interaction_id": "../etc"}), EventKind::Start, "").is_err());
        let id = new_interaction_id(1_750_016_700_000);
        assert!(id.starts_with("int_20250615_"), "{id}");
        assert_eq!(id.len(), "int_20250615_194500_abc123".len());
    }
}
