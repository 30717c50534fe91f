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
        };
        let json = interaction.to_json();
        assert_eq!(json["timestamp"], "2025-06-15T19:45:00.123Z");
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
    }
}
