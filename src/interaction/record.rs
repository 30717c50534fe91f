//! A merged interaction as queries return it, and the timestamps of the standard record.

use serde::Serialize;
use serde_json::Value;

use super::fields::Fields;

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
    /// Its progress reports, oldest first (at most [`MAX_TIMELINE`], the latest).
    pub timeline: Vec<ProgressNote>,
}

/// One progress report: when it was received, how far along, what it said.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ProgressNote {
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The report's free-form details, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// The progress notes an interaction keeps: the latest, when a long task reports more.
pub const MAX_TIMELINE: usize = 100;

impl ProgressNote {
    /// The note a progress event makes, if it says anything.
    pub fn of(event: &super::InteractionEvent) -> Option<Self> {
        let f = &event.fields;
        let says =
            f.progress.is_some() || f.progress_message.is_some() || f.progress_details.is_some();
        (event.kind == super::EventKind::Progress && says).then(|| Self {
            at_ms: event.received_ms,
            progress: f.progress,
            message: f.progress_message.clone(),
            details: f.progress_details.clone(),
        })
    }
}

/// `notes` in time order, each once, the latest [`MAX_TIMELINE`] of them.
pub fn timeline(mut notes: Vec<ProgressNote>) -> Vec<ProgressNote> {
    notes.sort_by(|a, b| {
        a.at_ms.cmp(&b.at_ms).then_with(|| {
            a.progress
                .partial_cmp(&b.progress)
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    notes.dedup();
    let excess = notes.len().saturating_sub(MAX_TIMELINE);
    notes.drain(..excess);
    notes
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
        let mut record = serde_json::json!({
            "interaction_id": self.interaction_id,
            "mcp_id": self.mcp_id,
            "status": self.status(),
        });
        self.fields.show(&mut record);
        // When the coordinator received the interaction's first and latest report: there even
        // when the client sent no timestamp of its own.
        record["received_at"] = super::format_ms(self.first_received_ms).into();
        record["last_received_at"] = super::format_ms(self.last_received_ms).into();
        record["timeline"] = self
            .timeline
            .iter()
            .map(|note| {
                let mut shown = serde_json::json!({
                    "time": super::format_ms(note.at_ms),
                    "progress": note.progress,
                    "message": note.message,
                });
                // Sealed details stay sealed text; plain ones are shown as the object they were.
                if let Some(details) = &note.details {
                    shown["details"] = serde_json::from_str(details)
                        .unwrap_or_else(|_| Value::String(details.clone()));
                }
                shown
            })
            .collect();
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_shape_nests_each_field_in_its_section() {
        let interaction = Interaction {
            interaction_id: "int_1".into(),
            mcp_id: "ocr_mcp_001".into(),
            fields: Fields {
                timestamp_ms: Some(1_750_016_700_123),
                parameters: Some(r#"{"dpi":300}"#.into()),
                quality_level: Some("high".into()),
                cpu_usage: Some(45.2),
                success: Some(true),
                region: Some("eu".into()),
                ..Default::default()
            },
            first_received_ms: 1,
            last_received_ms: 2,
            timeline: vec![ProgressNote {
                at_ms: 1_750_016_701_000,
                progress: Some(0.5),
                message: Some("half".into()),
                details: Some(r#"{"page":3}"#.into()),
            }],
        };
        let json = interaction.to_json();
        assert_eq!(json["timestamp"], "2025-06-15T19:45:00.123Z");
        assert_eq!(json["received_at"], "1970-01-01T00:00:00.001Z");
        assert_eq!(json["last_received_at"], "1970-01-01T00:00:00.002Z");
        assert_eq!(json["status"], "completed");
        assert_eq!(
            json["request_data"]["parameters"],
            serde_json::json!({"dpi": 300, "quality_level": "high"})
        );
        assert_eq!(json["request_data"]["user_id"], Value::Null);
        assert_eq!(json["processing_data"]["resource_usage"]["cpu_usage"], 45.2);
        assert_eq!(
            json["processing_data"]["steps_executed"],
            serde_json::json!([])
        );
        assert_eq!(json["result_data"]["success"], true);
        assert_eq!(json["metadata"]["region"], "eu");
        assert_eq!(
            json["timeline"],
            serde_json::json!([{"time": "2025-06-15T19:45:01.000Z", "progress": 0.5, "message": "half", "details": {"page": 3}}])
        );
    }

    #[test]
    fn a_timeline_is_ordered_once_and_bounded() {
        let note = |at_ms: i64| ProgressNote {
            at_ms,
            progress: Some(0.1),
            message: None,
            details: None,
        };
        let notes = timeline(vec![note(3), note(1), note(3), note(2)]);
        assert_eq!(notes.iter().map(|n| n.at_ms).collect::<Vec<_>>(), [1, 2, 3]);
        let many = timeline((0..(MAX_TIMELINE as i64 + 20)).rev().map(note).collect());
        assert_eq!(many.len(), MAX_TIMELINE);
        assert_eq!(many[0].at_ms, 20, "the latest are kept");
    }
}
