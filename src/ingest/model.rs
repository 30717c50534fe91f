//! The interaction record of the seed ("交互数据标准格式") and the report events that build it.
//!
//! Every report — start, progress, complete, error, or a whole record from a batch — becomes an
//! [`InteractionEvent`]: the interaction it belongs to and the fields it sets. Stores merge the
//! events of one interaction into one row, so start and complete come back as one interaction, and
//! an event delivered twice changes nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which report an event came from; later stages win when two set the same field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Start,
    Progress,
    Complete,
    Error,
    Record,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Progress => "progress",
            EventKind::Complete => "complete",
            EventKind::Error => "error",
            EventKind::Record => "record",
        }
    }
}

/// The columns of an interaction. `None` means "this event does not say".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fields {
    pub session_id: Option<String>,
    pub mcp_type: Option<String>,
    pub timestamp_ms: Option<i64>,
    pub user_id: Option<String>,
    pub request_type: Option<String>,
    pub input_size: Option<i64>,
    /// Free-form `request_data.parameters`, as JSON text.
    pub parameters: Option<String>,
    pub quality_level: Option<String>,
    pub privacy_level: Option<String>,
    pub start_time_ms: Option<i64>,
    pub end_time_ms: Option<i64>,
    /// Seconds, as the seed reports it.
    pub processing_time: Option<f64>,
    pub adapter_used: Option<String>,
    /// JSON array text.
    pub steps_executed: Option<String>,
    pub cpu_usage: Option<f64>,
    pub memory_usage: Option<f64>,
    pub gpu_usage: Option<f64>,
    pub success: Option<bool>,
    pub output_size: Option<i64>,
    pub quality_score: Option<f64>,
    pub confidence: Option<f64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub mcp_version: Option<String>,
    pub coordinator_version: Option<String>,
    pub environment: Option<String>,
    pub region: Option<String>,
}

impl Fields {
    /// Overlays `later` on `self`: every field `later` sets wins.
    pub fn merge(&mut self, later: &Fields) {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f.clone(); } )* };
        }
        take!(
            session_id,
            mcp_type,
            timestamp_ms,
            user_id,
            request_type,
            input_size,
            parameters,
            quality_level,
            privacy_level,
            start_time_ms,
            end_time_ms,
            processing_time,
            adapter_used,
            steps_executed,
            cpu_usage,
            memory_usage,
            gpu_usage,
            success,
            output_size,
            quality_score,
            confidence,
            error_code,
            error_message,
            mcp_version,
            coordinator_version,
            environment,
            region
        );
    }
}

/// One accepted report, as it goes through the spool to the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionEvent {
    /// Stable identity of this report: replays and duplicate deliveries carry the same one.
    pub event_id: String,
    pub interaction_id: String,
    pub mcp_id: String,
    pub kind: EventKind,
    /// When the ingest server acknowledged it (epoch ms).
    pub received_ms: i64,
    pub fields: Fields,
}

impl InteractionEvent {
    /// Builds an event whose id is a digest of what it says, so the same report sent twice is
    /// recognisably the same event.
    pub fn new(
        interaction_id: String,
        mcp_id: String,
        kind: EventKind,
        received_ms: i64,
        fields: Fields,
    ) -> Self {
        let digest_input =
            serde_json::json!([interaction_id, mcp_id, kind.as_str(), fields]).to_string();
        let event_id = format!(
            "{}:{}:{:016x}",
            interaction_id,
            kind.as_str(),
            fnv1a64(digest_input.as_bytes())
        );
        Self {
            event_id,
            interaction_id,
            mcp_id,
            kind,
            received_ms,
            fields,
        }
    }
}

/// FNV-1a: stable across builds and platforms, unlike std's hasher.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Where an interaction stands, derived from its merged fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionStatus {
    InProgress,
    Completed,
    Failed,
}

/// A merged interaction as queries return it, in the seed's standard format.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub interaction_id: String,
    pub mcp_id: String,
    pub fields: Fields,
    pub first_received_ms: i64,
    pub last_received_ms: i64,
}

impl Interaction {
    pub fn status(&self) -> InteractionStatus {
        match (self.fields.success, &self.fields.error_code) {
            (Some(false), _) | (_, Some(_)) => InteractionStatus::Failed,
            (Some(true), _) => InteractionStatus::Completed,
            (None, None) => InteractionStatus::InProgress,
        }
    }

    /// The seed's standard JSON shape.
    pub fn to_json(&self) -> Value {
        let f = &self.fields;
        let json_text = |t: &Option<String>| {
            t.as_ref()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
        };
        let mut parameters = json_text(&f.parameters).unwrap_or_else(|| serde_json::json!({}));
        if let Some(obj) = parameters.as_object_mut() {
            if let Some(q) = &f.quality_level {
                obj.entry("quality_level")
                    .or_insert(Value::String(q.clone()));
            }
            if let Some(p) = &f.privacy_level {
                obj.entry("privacy_level")
                    .or_insert(Value::String(p.clone()));
            }
        }
        serde_json::json!({
            "interaction_id": self.interaction_id,
            "session_id": f.session_id,
            "mcp_id": self.mcp_id,
            "mcp_type": f.mcp_type,
            "timestamp": f.timestamp_ms.map(format_ms),
            "status": self.status(),
            "request_data": {
                "user_id": f.user_id,
                "request_type": f.request_type,
                "input_size": f.input_size,
                "parameters": parameters,
            },
            "processing_data": {
                "start_time": f.start_time_ms.map(format_ms),
                "end_time": f.end_time_ms.map(format_ms),
                "processing_time": f.processing_time,
                "adapter_used": f.adapter_used,
                "steps_executed": json_text(&f.steps_executed).unwrap_or_else(|| serde_json::json!([])),
                "resource_usage": {"cpu_usage": f.cpu_usage, "memory_usage": f.memory_usage, "gpu_usage": f.gpu_usage},
            },
            "result_data": {
                "success": f.success,
                "output_size": f.output_size,
                "quality_score": f.quality_score,
                "confidence": f.confidence,
                "error_code": f.error_code,
                "error_message": f.error_message,
            },
            "metadata": {
                "mcp_version": f.mcp_version,
                "coordinator_version": f.coordinator_version,
                "environment": f.environment,
                "region": f.region,
            },
        })
    }
}

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
    fn later_events_fill_and_override_fields() {
        let mut start = Fields {
            user_id: Some("u".into()),
            success: None,
            ..Default::default()
        };
        let complete = Fields {
            success: Some(true),
            processing_time: Some(5.3),
            ..Default::default()
        };
        start.merge(&complete);
        assert_eq!(start.user_id.as_deref(), Some("u"));
        assert_eq!(start.success, Some(true));
        assert_eq!(start.processing_time, Some(5.3));
    }

    #[test]
    fn identical_reports_have_identical_event_ids() {
        let f = Fields {
            success: Some(true),
            ..Default::default()
        };
        let a = InteractionEvent::new("i".into(), "m".into(), EventKind::Complete, 1, f.clone());
        let b = InteractionEvent::new("i".into(), "m".into(), EventKind::Complete, 2, f);
        assert_eq!(
            a.event_id, b.event_id,
            "receive time is not part of the identity"
        );
        let c = InteractionEvent::new(
            "i".into(),
            "m".into(),
            EventKind::Start,
            1,
            Fields::default(),
        );
        assert_ne!(a.event_id, c.event_id);
    }

    #[test]
    fn timestamps_round_trip_with_milliseconds() {
        let ms = parse_rfc3339_ms("2025-06-15T19:45:00.123Z").unwrap();
        assert_eq!(format_ms(ms), "2025-06-15T19:45:00.123Z");
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
