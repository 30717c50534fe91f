//! The sections of the standard record, and where in a report a value was found.

use serde_json::{Map, Value};

/// A section of the standard record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    Top,
    RequestData,
    /// The free-form `request_data.parameters`, of which some keys are also fields.
    Parameters,
    ProcessingData,
    ResourceUsage,
    ResultData,
    Metadata,
}

impl Section {
    /// Where the section sits in the standard record, as a dotted path (empty for the top).
    pub fn path(self) -> &'static str {
        match self {
            Section::Top => "",
            Section::RequestData => "request_data",
            Section::Parameters => "request_data.parameters",
            Section::ProcessingData => "processing_data",
            Section::ResourceUsage => "processing_data.resource_usage",
            Section::ResultData => "result_data",
            Section::Metadata => "metadata",
        }
    }

    /// The dotted path of `key` in this section.
    pub fn field_path(self, key: &str) -> String {
        join(self.path(), key)
    }

    /// Puts `value` at `key` of this section in `record`, creating the sections on the way; a key
    /// already there (a free-form parameter of the same name) is kept.
    pub(super) fn insert(self, record: &mut Value, key: &str, value: Value) {
        let mut at = record;
        for part in self.path().split('.').filter(|p| !p.is_empty()) {
            let Some(object) = at.as_object_mut() else {
                return;
            };
            at = object
                .entry(part)
                .or_insert_with(|| Value::Object(Map::new()));
        }
        if let Some(object) = at.as_object_mut() {
            object.entry(key).or_insert(value);
        }
    }
}

/// Where a value was found: the report's own path (e.g. `data` in the envelope) and the keys that
/// lead to it. Rendered as text only when something is refused.
#[derive(Clone, Copy)]
pub struct At<'a> {
    report: &'a str,
    trail: [&'a str; 3],
    depth: usize,
}

impl<'a> At<'a> {
    /// The top of a report whose own path is `report` (empty for a body that is the report).
    pub fn report(report: &'a str) -> Self {
        Self {
            report,
            trail: [""; 3],
            depth: 0,
        }
    }

    /// One key further down (the record nests three deep at most).
    pub fn child(self, key: &'a str) -> Self {
        let mut next = self;
        if next.depth < next.trail.len() {
            next.trail[next.depth] = key;
            next.depth += 1;
        }
        next
    }

    /// The dotted path where the value was found, which type errors name.
    pub fn found_at(&self) -> String {
        self.trail[..self.depth]
            .iter()
            .fold(self.report.to_string(), |path, key| join(&path, key))
    }

    /// The field's place in the standard record, which failed checks name.
    pub fn field(&self, section: Section, key: &str) -> String {
        join(self.report, &section.field_path(key))
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}
