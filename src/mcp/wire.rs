//! MCP over streamable HTTP, both generations, without I/O: the versions, headers and `_meta`
//! envelope of the 2026-07-28 revision, one JSON-RPC message parsed and written for a server of
//! either generation, JSON-RPC errors, and server-sent events read back from a server.

use serde_json::{json, Map, Value};

/// The revision without sessions.
pub const MODERN_VERSION: &str = "2026-07-28";
/// Revisions with `initialize` and sessions, oldest first.
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
pub const LATEST_HANDSHAKE: &str = "2025-11-25";
/// Every revision this release knows, oldest first.
pub const ALL_VERSIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    MODERN_VERSION,
];

/// `version` as one this release knows (a server's word never becomes a label unchecked).
pub fn known_version(version: &str) -> Option<&'static str> {
    ALL_VERSIONS.into_iter().find(|v| *v == version)
}

pub const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";
pub const SESSION_HEADER: &str = "mcp-session-id";
pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";

/// `_meta` keys of the 2026-07-28 envelope a request carries.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
const ENVELOPE_KEYS: [&str; 4] = [
    META_PROTOCOL_VERSION,
    META_CLIENT_CAPABILITIES,
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/logLevel",
];

/// JSON-RPC and MCP error codes.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The gateway could not get an answer from any MCP offering the tool.
    pub const UNAVAILABLE: i64 = -32001;
    /// A resource URI no MCP of the scope lists.
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// A registration's gateway policy refuses this caller the tool (the rule is named).
    pub const FORBIDDEN: i64 = -32003;
    /// A registration's rate limit is spent for this call (HTTP 429 with `Retry-After`).
    pub const RATE_LIMITED: i64 = -32004;
    /// The headers of a 2026-07-28 request disagree with its body.
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `None` for a notification.
    pub id: Option<Value>,
    pub method: String,
    pub params: Value,
}

/// Parses one message (batches were removed from MCP in 2025-06-18 and are refused).
pub fn parse(body: &[u8]) -> Result<Message, Value> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            Value::Null,
            code::PARSE_ERROR,
            &format!("the body is not JSON: {e}"),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(error(
            Value::Null,
            code::INVALID_REQUEST,
            "send one JSON-RPC message per request (batches are not part of MCP since 2025-06-18)",
        ));
    };
    let id = object.remove("id");
    let method = match object.remove("method") {
        Some(Value::String(m)) => m,
        _ => {
            return Err(error(
                id.unwrap_or(Value::Null),
                code::INVALID_REQUEST,
                "a JSON-RPC request needs a string `method` (responses to server requests are not relayed)",
            ))
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(error(
            id.unwrap_or(Value::Null),
            code::INVALID_REQUEST,
            "`jsonrpc` must be \"2.0\"",
        ));
    }
    let params = object.remove("params").unwrap_or(Value::Object(Map::new()));
    Ok(Message { id, method, params })
}

impl Message {
    /// The protocol version in the request's 2026-07-28 envelope, if it has one.
    pub fn envelope_version(&self) -> Option<&str> {
        self.params
            .get("_meta")?
            .get(META_PROTOCOL_VERSION)?
            .as_str()
    }

    /// What the `Mcp-Name` header must say for this method: a tool's or prompt's name, a
    /// resource's URI.
    pub fn target(&self) -> Option<&str> {
        let key = match self.method.as_str() {
            "tools/call" | "prompts/get" => "name",
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
            _ => return None,
        };
        self.params.get(key)?.as_str()
    }

    /// The request as JSON text, its params adjusted for a backend of `backend` generation.
    pub fn for_backend(&self, modern_backend: bool) -> Value {
        let mut params = self.params.clone();
        if let Value::Object(p) = &mut params {
            let meta = p
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                if modern_backend {
                    meta.insert(META_PROTOCOL_VERSION.into(), json!(MODERN_VERSION));
                    meta.entry(META_CLIENT_CAPABILITIES)
                        .or_insert_with(|| json!({}));
                } else {
                    for key in ENVELOPE_KEYS {
                        meta.remove(key);
                    }
                }
                if meta.is_empty() {
                    p.remove("_meta");
                }
            }
        }
        let mut out = Map::new();
        out.insert("jsonrpc".into(), json!("2.0"));
        if let Some(id) = &self.id {
            out.insert("id".into(), id.clone());
        }
        out.insert("method".into(), json!(self.method));
        if !params.as_object().is_some_and(Map::is_empty) {
            out.insert("params".into(), params);
        }
        Value::Object(out)
    }
}

/// Checks a 2026-07-28 request's headers against its body; the refusal names the mismatch.
pub fn check_headers(
    message: &Message,
    method: Option<&str>,
    name: Option<&str>,
) -> Result<(), String> {
    if let Some(method) = method {
        if method != message.method {
            return Err(format!(
                "the Mcp-Method header says {method:?} but the body's method is {:?}",
                message.method
            ));
        }
    }
    if let (Some(name), Some(target)) = (name, message.target()) {
        if name != target {
            return Err(format!(
                "the Mcp-Name header says {name:?} but the body names {target:?}"
            ));
        }
    }
    Ok(())
}

/// A JSON-RPC error response.
pub fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// A JSON-RPC error response with `data`.
pub fn error_with(id: Value, code: i64, message: &str, data: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
}

/// A JSON-RPC result response.
pub fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Reads server-sent events from chunks of a stream: each complete event's `data` (lines joined
/// with newlines). Bounded: an event larger than `limit` bytes is an error.
#[derive(Debug, Default)]
pub struct SseReader {
    buffer: Vec<u8>,
    /// How far the buffer was searched for an event's end (each byte is looked at once).
    scanned: usize,
}

impl SseReader {
    pub fn feed(&mut self, chunk: &[u8], limit: usize) -> Result<Vec<String>, String> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = find_event_end(&self.buffer, self.scanned.saturating_sub(3)) {
            let raw: Vec<u8> = self.buffer.drain(..end.0).collect();
            self.buffer.drain(..end.1);
            self.scanned = 0;
            let text = String::from_utf8_lossy(&raw);
            let mut data: Vec<&str> = Vec::new();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("data:") {
                    data.push(rest.strip_prefix(' ').unwrap_or(rest));
                }
            }
            if !data.is_empty() {
                events.push(data.join("\n"));
            }
        }
        self.scanned = self.buffer.len();
        if self.buffer.len() > limit {
            return Err(format!(
                "an event of the MCP's stream exceeds {limit} bytes"
            ));
        }
        Ok(events)
    }
}

/// Where the first event ends, searching from `from`: (its length, the separator's length).
fn find_event_end(buffer: &[u8], from: usize) -> Option<(usize, usize)> {
    for i in from..buffer.len() {
        for sep in [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"] {
            if buffer[i..].starts_with(sep) {
                return Some((i, sep.len()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_is_parsed_and_batches_or_garbage_are_refused_with_a_reason() {
        let m = parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ocr"}}"#)
            .unwrap();
        assert_eq!(
            (m.id.clone(), m.method.as_str(), m.target()),
            (Some(json!(7)), "tools/call", Some("ocr"))
        );
        let e = parse(b"[]").unwrap_err();
        assert_eq!(e["error"]["code"], code::INVALID_REQUEST);
        assert!(e["error"]["message"].as_str().unwrap().contains("batches"));
        assert_eq!(
            parse(b"{nope").unwrap_err()["error"]["code"],
            code::PARSE_ERROR
        );
        let e = parse(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).unwrap_err();
        assert_eq!(e["id"], 1);
    }

    #[test]
    fn the_envelope_is_added_for_modern_backends_and_removed_for_legacy_ones() {
        let legacy_client = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{}}}"#).unwrap();
        let out = legacy_client.for_backend(true);
        assert_eq!(
            out["params"]["_meta"][META_PROTOCOL_VERSION],
            MODERN_VERSION
        );
        assert_eq!(out["params"]["_meta"][META_CLIENT_CAPABILITIES], json!({}));
        let modern_client = parse(format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","_meta":{{"{META_PROTOCOL_VERSION}":"2026-07-28","{META_CLIENT_CAPABILITIES}":{{"x":{{}}}},"progressToken":3}}}}}}"#).as_bytes()).unwrap();
        let out = modern_client.for_backend(false);
        assert_eq!(
            out["params"]["_meta"],
            json!({"progressToken": 3}),
            "progress tokens stay"
        );
        let out = modern_client.for_backend(true);
        assert_eq!(
            out["params"]["_meta"][META_CLIENT_CAPABILITIES],
            json!({"x": {}}),
            "the client's capabilities pass"
        );
    }

    #[test]
    fn headers_must_agree_with_the_body() {
        let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ocr"}}"#)
            .unwrap();
        assert!(check_headers(&m, Some("tools/call"), Some("ocr")).is_ok());
        assert!(check_headers(&m, Some("tools/list"), None)
            .unwrap_err()
            .contains("Mcp-Method"));
        assert!(check_headers(&m, None, Some("other"))
            .unwrap_err()
            .contains("Mcp-Name"));
    }

    #[test]
    fn events_are_read_across_chunks_and_bounded() {
        let mut r = SseReader::default();
        assert!(r
            .feed(b"event: message\ndata: {\"a\":", 1000)
            .unwrap()
            .is_empty());
        assert_eq!(
            r.feed(b"1}\n\ndata: x\r\n\r\n", 1000).unwrap(),
            vec!["{\"a\":1}", "x"]
        );
        assert!(r.feed(b"data: y\r\n", 1000).unwrap().is_empty());
        assert_eq!(
            r.feed(b"\r\n", 1000).unwrap(),
            vec!["y"],
            "a separator split across chunks"
        );
        assert!(r.feed(&[b'a'; 50], 10).is_err());
    }
}
