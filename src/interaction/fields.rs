//! [`Fields`]: the columns of an interaction, generated from `interaction_fields!`, with the merge
//! of events and the table of field specifications the stores build their columns from.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::borrowed::Json;
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

        /// A field, as a report's key resolves to it once: setting it is then one jump, where
        /// matching the key against every field's place in turn was a fifth of reading a batch.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum FieldId {
            $($name,)*
        }

        impl FieldId {
            /// The field at `key` of `section`, if there is one.
            pub(super) fn of(section: Section, key: &str) -> Option<FieldId> {
                match (section, key) {
                    $((Section::$section, $key) => Some(FieldId::$name),)*
                    _ => None,
                }
            }
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
                match FieldId::of(section, key) {
                    Some(id) => self.set_by_id(id, value, at).map(|()| None),
                    None => Ok(Some(value)),
                }
            }

            /// Sets the field `id` from a report's value found `at` (`null` leaves it as it is).
            pub(super) fn set_by_id(
                &mut self,
                id: FieldId,
                value: Value,
                at: At<'_>,
            ) -> Result<(), BadReport> {
                if value.is_null() {
                    return Ok(());
                }
                match id {
                    $(FieldId::$name => {
                        self.$name = <kinds::$kind as Kind>::read(value)
                            .map_err(|refusal| id.refused(refusal, at))?;
                    })*
                }
                Ok(())
            }

            /// [`Fields::set_by_id`] from a value borrowed from the report's text: fields kept as
            /// JSON text are written from it directly, every other one reads it as a [`Value`].
            pub(super) fn set_json(
                &mut self,
                id: FieldId,
                json: Json<'_>,
                at: At<'_>,
            ) -> Result<(), BadReport> {
                match id {
                    $(FieldId::$name => {
                        if let Some(read) = <kinds::$kind as Kind>::read_json(&json) {
                            self.$name = Some(read);
                            return Ok(());
                        }
                    })*
                }
                self.set_by_id(id, json.into_value(), at)
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

impl FieldId {
    fn spec(self) -> &'static FieldSpec {
        // The variants are declared in the order of `FIELDS`.
        &FIELDS[self as usize]
    }

    /// The report's fault for a refused value: a wrong type named where it was found, a failed
    /// check at the field's place in the standard record.
    fn refused(self, refusal: Refusal, at: At<'_>) -> BadReport {
        match refusal {
            Refusal::WrongType(problem) => BadReport::new(at.found_at(), problem),
            Refusal::Invalid(problem) => {
                let spec = self.spec();
                BadReport::new(at.field(spec.section, spec.key), problem)
            }
        }
    }
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
    fn each_field_resolves_from_its_place_to_its_own_spec() {
        for (index, spec) in FIELDS.iter().enumerate() {
            let id = FieldId::of(spec.section, spec.key);
            assert_eq!(id.map(|id| id as usize), Some(index), "{}", spec.name);
            assert_eq!(id.map(FieldId::spec), Some(spec));
        }
        assert_eq!(
            FieldId::of(Section::Top, "user_id"),
            None,
            "a key of another section"
        );
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
