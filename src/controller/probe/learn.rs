//! What an `mcp` probe learns from the server's answers, without I/O: who it is and which
//! protocol it speaks, each tool's schema in short, whether a functional probe's answer is the
//! expected one, and which schema changes break callers.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::crd::{ProbeExpectation, ServerInfo, ToolSchema};
use crate::mcp::wire::{META_SERVER_INFO, MODERN_VERSION};

/// At most this many characters of a server's instructions, tool or property names are kept in
/// status, and this many properties per tool: a server cannot grow its registration's status
/// without bound.
const MAX_INSTRUCTIONS: usize = 1024;
const MAX_NAME: usize = 128;
const MAX_PROPERTIES: usize = 64;
const MAX_CAPABILITIES: usize = 16;

fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn text_at(value: &Value, key: &str, max: usize) -> Option<String> {
    value.get(key)?.as_str().map(|s| cut(s, max))
}

fn capabilities(result: &Value) -> Vec<String> {
    let mut names: Vec<String> = result["capabilities"]
        .as_object()
        .map(|c| {
            c.keys()
                .take(MAX_CAPABILITIES)
                .map(|k| cut(k, MAX_NAME))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn server_info(
    result: &Value,
    identity: &Value,
    protocol_version: String,
    session: bool,
) -> ServerInfo {
    let capabilities = capabilities(result);
    let mut legacy_features = Vec::new();
    if session {
        legacy_features.push("sessions".to_string());
    }
    if capabilities.iter().any(|c| c == "logging") {
        legacy_features.push("logging".to_string());
    }
    ServerInfo {
        name: text_at(identity, "name", MAX_NAME),
        version: text_at(identity, "version", MAX_NAME),
        protocol_version,
        instructions: text_at(result, "instructions", MAX_INSTRUCTIONS),
        capabilities,
        legacy_features,
    }
}

/// From a `server/discover` result: the identity travels in `_meta`.
pub fn from_discover(result: &Value) -> ServerInfo {
    let identity = &result["_meta"][META_SERVER_INFO];
    server_info(result, identity, MODERN_VERSION.into(), false)
}

/// From an `initialize` result (a handshake-era server relies on sessions).
pub fn from_initialize(result: &Value) -> ServerInfo {
    let version = text_at(result, "protocolVersion", MAX_NAME).unwrap_or_default();
    server_info(result, &result["serverInfo"], version, true)
}

/// One entry of `tools/list` in short, or `None` when it has no name.
pub fn tool_schema(tool: &Value) -> Option<ToolSchema> {
    let name = cut(tool.get("name")?.as_str()?, MAX_NAME);
    let schema = tool.get("inputSchema").cloned().unwrap_or(Value::Null);
    // serde_json keeps object keys sorted, so the text is canonical.
    let digest = Sha256::digest(schema.to_string().as_bytes());
    let digest: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let properties: BTreeMap<String, String> = schema["properties"]
        .as_object()
        .map(|p| {
            p.iter()
                .take(MAX_PROPERTIES)
                .map(|(k, v)| (cut(k, MAX_NAME), type_of(v)))
                .collect()
        })
        .unwrap_or_default();
    let mut required: Vec<String> = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .take(MAX_PROPERTIES)
                .map(|s| cut(s, MAX_NAME))
                .collect()
        })
        .unwrap_or_default();
    required.sort();
    Some(ToolSchema {
        name,
        digest,
        required,
        properties,
    })
}

/// About what a tool takes in status, in bytes.
pub fn size_of(tool: &ToolSchema) -> usize {
    let properties: usize = tool
        .properties
        .iter()
        .map(|(k, v)| k.len() + v.len() + 8)
        .sum();
    let required: usize = tool.required.iter().map(|r| r.len() + 4).sum();
    tool.name.len() + tool.digest.len() + properties + required + 48
}

/// A property's JSON Schema type as one word (`string`, `integer|null`, `any`).
fn type_of(property: &Value) -> String {
    match &property["type"] {
        Value::String(t) => cut(t, MAX_NAME),
        Value::Array(types) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            cut(&names.join("|"), MAX_NAME)
        }
        _ => "any".into(),
    }
}

/// The changes from `old` to `new` that break a caller who followed `old`: a tool removed, a
/// required property added, a property removed or given another type. Sorted by tool.
pub fn breaking_changes(old: &[ToolSchema], new: &[ToolSchema]) -> Vec<String> {
    let mut changes = Vec::new();
    for before in old {
        let Some(after) = new.iter().find(|t| t.name == before.name) else {
            changes.push(format!("{}: tool removed", before.name));
            continue;
        };
        if after.digest == before.digest {
            continue;
        }
        for required in &after.required {
            if !before.required.contains(required) {
                changes.push(format!(
                    "{}: required property {required} added",
                    after.name
                ));
            }
        }
        for (property, was) in &before.properties {
            match after.properties.get(property) {
                None => changes.push(format!("{}: property {property} removed", after.name)),
                Some(now) if now != was => changes.push(format!(
                    "{}: property {property} retyped from {was} to {now}",
                    after.name
                )),
                Some(_) => {}
            }
        }
    }
    changes.sort();
    changes
}

/// Whether a `tools/call` result is what `expect` asks for; the difference, quoted, when not.
pub fn judge_call(result: &Value, expect: &ProbeExpectation) -> Result<(), String> {
    let is_error = result["isError"].as_bool().unwrap_or(false);
    let mut text = String::new();
    for block in result["content"].as_array().into_iter().flatten() {
        if let Some(t) = block["text"].as_str() {
            text.push_str(t);
            text.push('\n');
        }
    }
    if let Some(structured) = result.get("structuredContent") {
        text.push_str(&structured.to_string());
    }
    let quoted = quote(&text);
    if is_error != expect.is_error {
        return Err(if is_error {
            format!("the tool answered an error: {quoted}")
        } else {
            format!("the tool was expected to answer an error but answered {quoted}")
        });
    }
    match expect
        .contains
        .iter()
        .find(|want| !text.contains(want.as_str()))
    {
        Some(missing) => Err(format!(
            "expected the answer to contain {missing:?}, got {quoted}"
        )),
        None => Ok(()),
    }
}

/// Text quoted in a condition: at most 200 characters, on one line.
fn quote(text: &str) -> String {
    let one_line = text.trim().replace(['\n', '\r'], " ");
    let mut quoted: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        quoted.push('…');
    }
    format!("{quoted:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_info_comes_from_meta_in_a_discover_and_from_server_info_in_an_initialize() {
        let modern = from_discover(&json!({
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}, "logging": {}},
            "instructions": "read images",
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "ocr", "version": "1.4.0"}},
        }));
        assert_eq!(
            (
                modern.name.as_deref(),
                modern.version.as_deref(),
                modern.protocol_version.as_str()
            ),
            (Some("ocr"), Some("1.4.0"), "2026-07-28")
        );
        assert_eq!(modern.capabilities, ["logging", "tools"]);
        assert_eq!(modern.legacy_features, ["logging"]);
        let legacy = from_initialize(&json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "old", "version": "0.9"},
            "instructions": "x".repeat(5000),
        }));
        assert_eq!(legacy.protocol_version, "2025-06-18");
        assert_eq!(legacy.legacy_features, ["sessions"]);
        assert_eq!(legacy.instructions.unwrap().len(), MAX_INSTRUCTIONS);
    }

    fn tool(schema: Value) -> ToolSchema {
        tool_schema(&json!({"name": "extract_text", "inputSchema": schema})).unwrap()
    }

    #[test]
    fn additions_that_callers_can_ignore_are_not_breaking_but_the_rest_is() {
        let v1 = tool(
            json!({"type": "object", "properties": {"image_url": {"type": "string"}, "dpi": {"type": "integer"}}, "required": ["image_url"]}),
        );
        let optional_added = tool(
            json!({"type": "object", "properties": {"image_url": {"type": "string"}, "dpi": {"type": "integer"}, "lang": {"type": "string"}}, "required": ["image_url"]}),
        );
        assert_ne!(v1.digest, optional_added.digest);
        assert!(breaking_changes(std::slice::from_ref(&v1), &[optional_added]).is_empty());
        let broken = tool(
            json!({"type": "object", "properties": {"image_url": {"type": "array"}, "lang": {"type": "string"}}, "required": ["image_url", "lang"]}),
        );
        assert_eq!(
            breaking_changes(std::slice::from_ref(&v1), &[broken]),
            [
                "extract_text: property dpi removed",
                "extract_text: property image_url retyped from string to array",
                "extract_text: required property lang added",
            ]
        );
        assert_eq!(breaking_changes(&[v1], &[]), ["extract_text: tool removed"]);
    }

    #[test]
    fn a_functional_answer_is_judged_by_its_text_and_its_error_flag() {
        let expect = ProbeExpectation {
            contains: vec!["hello".into()],
            is_error: false,
        };
        let good = json!({"content": [{"type": "text", "text": "hello world"}]});
        assert_eq!(judge_call(&good, &expect), Ok(()));
        let structured = json!({"content": [], "structuredContent": {"result": "hello"}});
        assert_eq!(judge_call(&structured, &expect), Ok(()));
        let wrong = json!({"content": [{"type": "text", "text": "goodbye"}]});
        assert_eq!(
            judge_call(&wrong, &expect).unwrap_err(),
            r#"expected the answer to contain "hello", got "goodbye""#
        );
        let error =
            json!({"isError": true, "content": [{"type": "text", "text": "model not loaded"}]});
        assert!(judge_call(&error, &expect)
            .unwrap_err()
            .contains("answered an error: \"model not loaded\""));
        let long = json!({"content": [{"type": "text", "text": "x".repeat(10_000)}]});
        assert!(judge_call(&long, &expect).unwrap_err().len() < 300);
    }
}
