//! The HTTP API as an OpenAPI 3.1 document, made from the code: the endpoints from [`ENDPOINTS`]
//! (which also answer a 405's `Allow`), the report's schema from the interaction record's field
//! list. Served at `GET /openapi.json`; a test calls every endpoint it lists.

use serde_json::{json, Map, Value};

use crate::interaction::{Section, FIELDS};

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Anyone,
    /// The MCP's own API key.
    McpKey,
    /// A reader or admin token, or for one MCP's data its own key.
    Reader,
    Admin,
    Registrar,
    /// An MCP's key, or a registrar token (the seed's one endpoint).
    McpKeyOrRegistrar,
}

/// What an endpoint's request body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Report,
    Batch,
    Envelope,
    Registration,
    Empty,
    /// An OTLP `ExportTraceServiceRequest`, protobuf or JSON.
    Traces,
}

/// One endpoint of the ingest API.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub method: &'static str,
    /// OpenAPI path template (`{mcp_id}`, `{interaction_id}`).
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    pub body: Body,
    /// The status of a success.
    pub ok: u16,
}

const fn endpoint(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    body: Body,
    ok: u16,
) -> Endpoint {
    Endpoint {
        method,
        path,
        summary,
        auth,
        body,
        ok,
    }
}

/// Every endpoint, in the order the documentation lists them.
pub const ENDPOINTS: &[Endpoint] = &[
    endpoint("POST", "/api/interactions", "The seed's envelope: report_interaction_start, _progress, _complete, _error (or, with a registrar token, register_mcp and unregister_mcp)", Auth::McpKeyOrRegistrar, Body::Envelope, 202),
    endpoint("POST", "/api/register", "The seed's register_mcp or unregister_mcp", Auth::Registrar, Body::Registration, 200),
    endpoint("POST", "/v1/interactions", "Start an interaction (an ID is assigned when none is given)", Auth::McpKey, Body::Report, 202),
    endpoint("POST", "/v1/interactions/{interaction_id}/progress", "Report progress", Auth::McpKey, Body::Report, 202),
    endpoint("POST", "/v1/interactions/{interaction_id}/complete", "Report completion", Auth::McpKey, Body::Report, 202),
    endpoint("POST", "/v1/interactions/{interaction_id}/error", "Report failure", Auth::McpKey, Body::Report, 202),
    endpoint("POST", "/v1/interactions:batch", "Whole records, or reports naming their kind, as a JSON array or NDJSON (signed by default)", Auth::McpKey, Body::Batch, 200),
    endpoint("POST", "/v1/traces", "OTLP/HTTP traces of an MCP server (protobuf or JSON, gzip or not): tools/call server spans become interactions, other methods are counted; partial_success counts the spans refused", Auth::McpKey, Body::Traces, 200),
    endpoint("POST", "/v1/heartbeat", "The MCP is alive", Auth::McpKey, Body::Empty, 200),
    endpoint("GET", "/v1/heartbeats", "Each MCP's latest heartbeat", Auth::Reader, Body::None, 200),
    endpoint("GET", "/v1/mcps/{mcp_id}/interactions", "History, newest first (limit, since, until, cursor, user_id)", Auth::Reader, Body::None, 200),
    endpoint("GET", "/v1/mcps/{mcp_id}/metrics", "An MCP's metrics over a range (range, group_by)", Auth::Reader, Body::None, 200),
    endpoint("GET", "/v1/mcps/{mcp_id}/metrics/series", "A time series of an MCP's metrics (range, step, group_by)", Auth::Reader, Body::None, 200),
    endpoint("GET", "/v1/metrics", "Every MCP's metrics over a range (range, group_by)", Auth::Reader, Body::None, 200),
    endpoint("GET", "/v1/versions", "The mcp_versions each MCP's interactions reported (range)", Auth::Reader, Body::None, 200),
    endpoint("GET", "/v1/route", "The MCP to call for a capability, with fallbacks (capability, request_type)", Auth::Reader, Body::None, 200),
    endpoint("GET", "/v1/registrations", "Every registration with its status (standalone mode)", Auth::Reader, Body::None, 200),
    endpoint("GET", "/v1/protocols", "The fleet's MCP protocol versions", Auth::Reader, Body::None, 200),
    endpoint("GET", "/v1/gateway/ejections", "The MCPs this replica's gateway keeps out of rotation", Auth::Reader, Body::None, 200),
    endpoint("GET", "/v1/audit", "The audit log of reads (limit)", Auth::Admin, Body::None, 200),
    endpoint("GET", "/v1/store", "The store is reachable and writable (one audit record written and read back)", Auth::Reader, Body::None, 200),
    endpoint("GET", "/openapi.json", "This document", Auth::Anyone, Body::None, 200),
    endpoint("GET", "/metrics", "Prometheus metrics", Auth::Anyone, Body::None, 200),
    endpoint("GET", "/healthz", "Liveness", Auth::Anyone, Body::None, 200),
    endpoint("GET", "/readyz", "Readiness", Auth::Anyone, Body::None, 200),
];

/// Whether a request path (split at `/`) is an endpoint's template.
fn matches(template: &str, path: &[&str]) -> bool {
    let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    parts.len() == path.len()
        && parts
            .iter()
            .zip(path)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}')) || t == p)
}

/// The endpoint's template a request path (split at `/`) matches, for span names.
pub fn template(path: &[&str]) -> Option<&'static str> {
    ENDPOINTS
        .iter()
        .find(|e| matches(e.path, path))
        .map(|e| e.path)
}

/// The methods a known path takes (a 405's `Allow`); `None` for a path that is no endpoint.
pub fn allowed_methods(path: &[&str]) -> Option<String> {
    let methods: Vec<&str> = ENDPOINTS
        .iter()
        .filter(|e| matches(e.path, path))
        .map(|e| e.method)
        .collect();
    (!methods.is_empty()).then(|| methods.join(", "))
}

/// A field's JSON Schema, from its kind.
fn field_schema(kind: &str) -> Value {
    match kind {
        "Count" => json!({"type": "integer", "minimum": 0}),
        "Amount" => json!({"type": "number", "minimum": 0}),
        "Unit" => json!({"type": "number", "minimum": 0, "maximum": 1}),
        "Flag" => json!({"type": "boolean"}),
        "Time" => {
            json!({"type": ["string", "integer"], "description": "RFC 3339, or epoch milliseconds"})
        }
        "Code" => json!({"type": ["string", "integer"]}),
        "Object" => json!({"type": "object"}),
        "List" => json!({"type": "array", "items": {"type": "string"}}),
        "Privacy" => json!({"type": "string", "enum": ["public", "internal", "sensitive"]}),
        _ => json!({"type": "string"}),
    }
}

/// The schema of one report in the seed's standard record: every field in its section, the
/// flat fields of the seed's data protocol at the top too.
pub fn report_schema() -> Value {
    let mut sections: Map<String, Value> = Map::new();
    let object = || json!({"type": "object", "additionalProperties": false, "properties": {}});
    let mut top = object();
    top["properties"]["interaction_id"] = json!({"type": "string", "maxLength": 256});
    top["properties"]["mcp_id"] = json!({"type": "string", "maxLength": 256});
    for spec in FIELDS {
        let schema = field_schema(spec.kind);
        if spec.section == Section::Top {
            top["properties"][spec.key] = schema;
            continue;
        }
        let section = sections
            .entry(spec.section.path().to_string())
            .or_insert_with(object);
        section["properties"][spec.key] = schema.clone();
        // The data protocol's flat form: processing and result fields at the top too.
        if matches!(spec.section, Section::ProcessingData | Section::ResultData) {
            top["properties"][spec.key] = schema;
        }
    }
    let mut take = |path: &str| sections.remove(path).unwrap_or_else(object);
    let mut parameters = take("request_data.parameters");
    parameters["additionalProperties"] = json!(true);
    let mut request = take("request_data");
    request["properties"]["parameters"] = parameters;
    let resources = take("processing_data.resource_usage");
    let mut processing = take("processing_data");
    processing["properties"]["resource_usage"] = resources.clone();
    top["properties"]["request_data"] = request.clone();
    top["properties"]["request_info"] = request;
    top["properties"]["processing_data"] = processing;
    top["properties"]["resource_usage"] = resources;
    top["properties"]["result_data"] = take("result_data");
    top["properties"]["metadata"] = take("metadata");
    top
}

fn request_body(body: Body) -> Option<Value> {
    let report = json!({"$ref": "#/components/schemas/Report"});
    let schema = match body {
        Body::None => return None,
        Body::Report => report,
        Body::Batch => {
            json!({"type": "array", "maxItems": 1000, "items": {"allOf": [report, {"properties": {"kind": {"type": "string", "enum": ["start", "progress", "complete", "error", "record"]}}}]}})
        }
        Body::Envelope => json!({"type": "object", "required": ["action", "data"], "properties": {
            "action": {"type": "string", "enum": ["report_interaction_start", "report_interaction_progress", "report_interaction_complete", "report_interaction_error", "register_mcp", "unregister_mcp"]},
            "api_key": {"type": "string"}, "data": report}}),
        Body::Registration => json!({"type": "object", "required": ["action"], "properties": {
            "action": {"type": "string", "enum": ["register_mcp", "unregister_mcp"]},
            "mcp_info": {"type": "object"}, "rotate_key": {"type": "boolean"}, "name": {"type": "string"}}}),
        Body::Empty => json!({"type": "object"}),
        Body::Traces => {
            let schema = json!({"description": "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"});
            return Some(json!({"required": true, "content": {
                "application/x-protobuf": {"schema": schema},
                "application/json": {"schema": schema},
            }}));
        }
    };
    Some(
        json!({"required": body != Body::Empty, "content": {"application/json": {"schema": schema}}}),
    )
}

/// The whole document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for e in ENDPOINTS {
        let mut operation = json!({
            "summary": e.summary,
            "responses": {
                e.ok.to_string(): {"description": "done", "content": {"application/json": {}}},
                "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if e.auth != Auth::Anyone {
            operation["security"] = json!([{"bearer": []}]);
            operation["description"] = json!(match e.auth {
                Auth::McpKey => "Authorization: Bearer <the MCP's API key>",
                Auth::Reader => "Authorization: Bearer <reader or admin token, or the MCP's own key for its data>",
                Auth::Admin => "Authorization: Bearer <admin token>",
                Auth::Registrar => "Authorization: Bearer <registrar token>",
                Auth::McpKeyOrRegistrar => "Authorization: Bearer <the MCP's API key, or a registrar token>; the key may be in the envelope's api_key",
                Auth::Anyone => "",
            });
        }
        if let Some(body) = request_body(e.body) {
            operation["requestBody"] = body;
        }
        let parameters: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|p| p.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !parameters.is_empty() {
            operation["parameters"] = json!(parameters);
        }
        let entry = paths.entry(e.path.to_string()).or_insert_with(|| json!({}));
        entry[e.method.to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "mcp-coordinator ingest API", "version": crate::COORDINATOR_VERSION},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Report": report_schema(),
                "Error": {"type": "object", "required": ["success", "error"], "properties": {
                    "success": {"const": false},
                    "error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_matched_by_template_and_the_report_schema_has_every_field() {
        assert_eq!(
            allowed_methods(&["v1", "interactions", "int_1", "complete"]).as_deref(),
            Some("POST")
        );
        assert_eq!(
            allowed_methods(&["v1", "mcps", "x", "metrics", "series"]).as_deref(),
            Some("GET")
        );
        assert_eq!(allowed_methods(&["v1", "nothing"]), None);
        let report = report_schema();
        for spec in FIELDS {
            let mut at = &report;
            for part in spec.section.path().split('.').filter(|p| !p.is_empty()) {
                at = &at["properties"][part];
            }
            assert!(
                at["properties"][spec.key].is_object(),
                "{} missing",
                spec.name
            );
        }
        let doc = document();
        assert_eq!(
            doc["paths"]["/v1/interactions/{interaction_id}/error"]["post"]["parameters"][0]
                ["name"],
            "interaction_id"
        );
    }
}
