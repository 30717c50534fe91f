//! [`Fields`]: the columns of an interaction, generated from `interaction_fields!`, with the merge
//! of events and the table of field specifications the stores build their columns from.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checks::BadReport;
use super::kinds::{self, Kind, Refusal};
use super::section::{At, Section};

/// One field as the stores see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    /// The kind's name (see [`kinds`]).
    pub kind: &'static str,
    /// ClickHouse type of the (nullable) column.
    pub column_type: &'static str,
    /// Kept as `LowCardinality` on current ClickHouse servers.
    pub low_cardinality: bool,
    pub section: Section,
    /// The key in its section of the standard record.
    pub key: &'static str,
}

macro_rules! define_fields {
    ($($name:ident: $ty:ty = $kind:ident @ $section:ident $key:literal | $low:literal;)*) => {
        /// The columns of an interaction. `None` means "this event does not say".
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct Fields {
            $(pub $name: Option<$ty>,)*
        }

        /// Every field, in storage order.
        pub const FIELDS: &[FieldSpec] = &[$(FieldSpec {
            name: stringify!($name),
            kind: stringify!($kind),
            column_type: <kinds::$kind as Kind>::COLUMN,
            low_cardinality: $low,
            section: Section::$section,
            key: $key,
        }),*];

        impl Fields {
            /// Overlays `later` on `self`: every field `later` sets wins, except lists, which
            /// accumulate (see each kind's `merge`).
            pub fn merge(&mut self, later: &Fields) {
                $(<kinds::$kind as Kind>::merge(&mut self.$name, &later.$name);)*
            }

            /// The SELECT expressions that merge each field over an interaction's events, in
            /// storage order, each `AS` its column.
            pub fn merged_sql() -> Vec<String> {
                vec![$(format!("{} AS {}", <kinds::$kind as Kind>::merged_sql(stringify!($name)), stringify!($name))),*]
            }

            /// Fields as a store's own merge answered them, made what [`Fields::merge`] makes.
            pub fn normalize(self) -> Fields {
                Fields { $($name: <kinds::$kind as Kind>::normalize(self.$name),)* }
            }

            /// Sets the field at `key` of `section` from a report's value found `at`; hands the
            /// value back when the section has no such field.
            pub(super) fn set(
                &mut self,
                section: Section,
                key: &str,
                value: Value,
                at: At<'_>,
            ) -> Result<Option<Value>, BadReport> {
                match (section, key) {
                    $((Section::$section, $key) => {
                        if !value.is_null() {
                            self.$name = <kinds::$kind as Kind>::read(value).map_err(|refusal| {
                                match refusal {
                                    Refusal::WrongType(p) => BadReport::new(at.found_at(), p),
                                    Refusal::Invalid(p) => BadReport::new(at.field(section, key), p),
                                }
                            })?;
                        }
                        Ok(None)
                    })*
                    _ => Ok(Some(value)),
                }
            }

            /// Writes every field into `record`, the standard JSON shape, each in its section.
            pub(super) fn show(&self, record: &mut Value) {
                $(if let Some(shown) = <kinds::$kind as Kind>::show(self.$name.as_ref()) {
                    Section::$section.insert(record, $key, shown);
                })*
            }
        }
    };
}
super::interaction_fields!(define_fields);

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
    fn every_field_has_one_place_and_a_name_the_stores_can_use() {
        let mut places: Vec<(Section, &str)> = FIELDS.iter().map(|f| (f.section, f.key)).collect();
        places.sort_by_key(|(s, k)| (s.path(), *k));
        places.dedup();
        assert_eq!(places.len(), FIELDS.len(), "two fields share a place");
        for f in FIELDS {
            assert!(
                f.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{} is not a plain column name",
                f.name
            );
        }
        let serialized = serde_json::to_value(Fields::default()).unwrap_or_default();
        assert_eq!(
            serialized.as_object().map(|o| o.len()),
            Some(FIELDS.len()),
            "the struct and the list disagree"
        );
    }
}
