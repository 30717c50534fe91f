//! The interaction record of the seed ("交互数据标准格式"): its fields, declared once in
//! [`interaction_fields!`], the report events that build it, how events merge, and the wire format
//! reports arrive in. Ingest, the stores and routing all speak in these types; this module imports
//! nothing of theirs.
//!
//! Adding a field is one line in the list below (plus its tests): the [`Fields`] struct, the
//! merge, the report parser, the standard JSON shape and the ClickHouse columns follow from it.

mod borrowed;
mod checks;
mod compact;
mod event;
mod fields;
pub mod kinds;
mod record;
mod section;
mod streamed;
mod time;
pub mod wire;

pub use checks::{check_id, BadReport};
pub use compact::Undecodable;
pub use event::{fnv1a64, EventKind, InteractionEvent};
pub use fields::{FieldSpec, Fields, FIELDS};
pub use record::{timeline, Interaction, InteractionStatus, ProgressNote, MAX_TIMELINE};
pub use section::Section;
pub use streamed::{parse_record, parse_records, Record};
pub use time::{format_ms, parse_rfc3339_ms};
pub use wire::{
    gather_progress_details, new_interaction_id, parse_report, ParsedReport, UNKNOWN_ERROR,
};

/// Every field of an interaction, in storage order. Each line: the field, its Rust type, its kind
/// (how a report's value is read and checked, how it is stored and shown: see [`kinds`]), the
/// section of the standard record it sits in, its key there, and whether ClickHouse keeps it as
/// `LowCardinality` on current servers.
///
/// The list is handed to `$callback`, a macro that takes the lines as they are, so every place
/// that needs all fields (struct, merge, parser, JSON, ClickHouse rows) expands from it.
macro_rules! interaction_fields {
    ($callback:ident) => {
        $callback! {
            session_id:          String = Name       @ Top            "session_id"          | false;
            mcp_type:            String = Name       @ Top            "mcp_type"            | true;
            timestamp_ms:        i64    = Time       @ Top            "timestamp"           | false;
            user_id:             String = Name       @ RequestData    "user_id"             | false;
            request_type:        String = Name       @ RequestData    "request_type"        | true;
            input_size:          i64    = Count      @ RequestData    "input_size"          | false;
            // Free-form `request_data.parameters`, as JSON text.
            parameters:          String = Object     @ RequestData    "parameters"          | false;
            quality_level:       String = Label      @ Parameters     "quality_level"       | true;
            privacy_level:       String = Privacy    @ Parameters     "privacy_level"       | true;
            start_time_ms:       i64    = Time       @ ProcessingData "start_time"          | false;
            end_time_ms:         i64    = Time       @ ProcessingData "end_time"            | false;
            // Seconds, as the seed reports it.
            processing_time:     f64    = Amount     @ ProcessingData "processing_time"     | false;
            adapter_used:        String = Name       @ ProcessingData "adapter_used"        | true;
            // A JSON array of strings, as text.
            steps_executed:      String = List       @ ProcessingData "steps_executed"      | false;
            cpu_usage:           f64    = Amount     @ ResourceUsage  "cpu_usage"           | false;
            memory_usage:        f64    = Amount     @ ResourceUsage  "memory_usage"        | false;
            gpu_usage:           f64    = Amount     @ ResourceUsage  "gpu_usage"           | false;
            success:             bool   = Flag       @ ResultData     "success"             | false;
            output_size:         i64    = Count      @ ResultData     "output_size"         | false;
            quality_score:       f64    = Unit       @ ResultData     "quality_score"       | false;
            confidence:          f64    = Unit       @ ResultData     "confidence"          | false;
            error_code:          String = Code       @ ResultData     "error_code"          | true;
            error_message:       String = Text       @ ResultData     "error_message"       | false;
            mcp_version:         String = Name       @ Metadata       "mcp_version"         | true;
            coordinator_version: String = Name       @ Metadata       "coordinator_version" | true;
            environment:         String = Name       @ Metadata       "environment"         | true;
            region:              String = Name       @ Metadata       "region"              | true;
            // A progress report's notes: how far along (0–1) and what it says. The latest are
            // here; every one is in the interaction's timeline.
            progress:            f64    = Unit       @ Top            "progress"            | false;
            progress_message:    String = Text       @ Top            "message"             | false;
            // What else a progress report said (the seed's free-form `progress_data`), as JSON
            // text.
            progress_details:    String = Object     @ Top            "details"             | false;
        }
    };
}
pub(crate) use interaction_fields;
