//! The compact binary form of values and fields, from which `event.rs` writes an event's record:
//! how the spool keeps it, and what its ID is a digest of. Writing and reading it is copying
//! bytes; the JSON it replaced cost the ingest server a third of its time per event (escaping and
//! number formatting on the way in, parsing on the way out).
//!
//! An event's layout, integers little-endian; text is `[length u32][UTF-8]`:
//!
//! ```text
//! [FORMAT u8] [kind u8] [received_ms i64] [event_id] [interaction_id] [mcp_id]
//! [field count u16] then each field in storage order: [0] absent, or [1] and its value
//! (text; i64 and f64 in 8 bytes; bool in 1)
//! ```
//!
//! Fields are only ever appended to `interaction_fields!`, so a record written before a field
//! existed reads with that field absent. A record with more fields than this build knows was
//! written by a newer version and is refused rather than read short.

use super::fields::Fields;

/// The first byte of a compact record (JSON records, written by earlier versions, start with `{`).
pub const FORMAT: u8 = 1;

/// Why bytes could not be read as an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Undecodable(pub(super) String);

pub(super) trait Compact: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn take(input: &mut &[u8]) -> Option<Self>;
}

pub(super) fn take_bytes<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

pub(super) fn take_array<const N: usize>(input: &mut &[u8]) -> Option<[u8; N]> {
    take_bytes(input, N)?.try_into().ok()
}

impl Compact for String {
    fn put(&self, out: &mut Vec<u8>) {
        // Texts are bounded far below 4 GiB (request bodies are), so the length fits.
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        out.extend_from_slice(self.as_bytes());
    }
    fn take(input: &mut &[u8]) -> Option<Self> {
        let len = u32::from_le_bytes(take_array(input)?) as usize;
        let bytes = take_bytes(input, len)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl Compact for i64 {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn take(input: &mut &[u8]) -> Option<Self> {
        take_array(input).map(i64::from_le_bytes)
    }
}

impl Compact for f64 {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn take(input: &mut &[u8]) -> Option<Self> {
        take_array(input).map(f64::from_le_bytes)
    }
}

impl Compact for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn take(input: &mut &[u8]) -> Option<Self> {
        match take_array::<1>(input)? {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
}

impl<T: Compact> Compact for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                value.put(out);
            }
        }
    }
    fn take(input: &mut &[u8]) -> Option<Self> {
        match take_array::<1>(input)? {
            [0] => Some(None),
            [1] => T::take(input).map(Some),
            _ => None,
        }
    }
}

macro_rules! define_compact_fields {
    ($($name:ident: $ty:ty = $kind:ident @ $section:ident $key:literal | $low:literal;)*) => {
        /// Fields this build knows.
        pub(super) const FIELD_COUNT: u16 = [$(stringify!($name)),*].len() as u16;

        /// Writes the field count and every field.
        pub(super) fn put_fields(fields: &Fields, out: &mut Vec<u8>) {
            out.extend_from_slice(&FIELD_COUNT.to_le_bytes());
            $(fields.$name.put(out);)*
        }

        /// Reads what [`put_fields`] wrote, or a build with fewer fields did.
        pub(super) fn take_fields(input: &mut &[u8]) -> Result<Fields, Undecodable> {
            let count = u16::from_le_bytes(
                take_array(input).ok_or_else(|| Undecodable("the field count is cut short".into()))?,
            );
            if count > FIELD_COUNT {
                return Err(Undecodable(format!(
                    "the record has {count} fields and this version knows {FIELD_COUNT}: it was written by a newer version"
                )));
            }
            let mut fields = Fields::default();
            let mut left = count;
            $(
                if left > 0 {
                    fields.$name = <Option<$ty> as Compact>::take(input).ok_or_else(|| {
                        Undecodable(format!("field {} is damaged", stringify!($name)))
                    })?;
                    left -= 1;
                }
            )*
            let _ = left;
            Ok(fields)
        }
    };
}
super::interaction_fields!(define_compact_fields);

#[cfg(test)]
mod tests {
    use super::*;

    fn some_fields() -> Fields {
        Fields {
            session_id: Some("s".into()),
            timestamp_ms: Some(-5),
            user_id: Some("ü\"\n".into()),
            input_size: Some(i64::MAX),
            processing_time: Some(5.333),
            success: Some(false),
            quality_score: Some(0.0),
            error_message: Some(String::new()),
            ..Default::default()
        }
    }

    #[test]
    fn fields_read_back_as_written_and_damage_is_refused() {
        let mut bytes = Vec::new();
        put_fields(&some_fields(), &mut bytes);
        let mut input = &bytes[..];
        assert_eq!(take_fields(&mut input), Ok(some_fields()));
        assert!(input.is_empty());
        for cut in [0, 1, 5, bytes.len() - 1] {
            assert!(
                take_fields(&mut &bytes[..cut]).is_err(),
                "cut at {cut} was read"
            );
        }
        let mut newer = (FIELD_COUNT + 1).to_le_bytes().to_vec();
        newer.extend_from_slice(&bytes[2..]);
        assert!(take_fields(&mut &newer[..])
            .unwrap_err()
            .0
            .contains("newer version"));
    }

    #[test]
    fn fields_from_before_a_field_existed_read_with_the_field_absent() {
        let fields = some_fields();
        assert_eq!(fields.progress_message, None, "the last field");
        let mut bytes = Vec::new();
        put_fields(&fields, &mut bytes);
        // As a build without the last field wrote them: a count one lower, no byte for it.
        let mut older = (FIELD_COUNT - 1).to_le_bytes().to_vec();
        older.extend_from_slice(&bytes[2..bytes.len() - 1]);
        assert_eq!(take_fields(&mut &older[..]), Ok(fields));
    }
}
