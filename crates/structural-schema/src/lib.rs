//! OpenAPI v3 structural schemas as the API server uses them for custom resources: pruning of
//! unknown fields, defaulting, validation, and the structural-schema rules a CRD must meet.
//! Error texts follow the real API server's, so tests read like a real cluster's answers.

use std::collections::HashMap;
use std::sync::Mutex;

use regex::Regex;
use serde_json::{Map, Value};

/// One validation failure, shaped like a `StatusCause`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    fn invalid(field: &str, value: &Value, detail: String) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: format!("Invalid value: {}: {detail}", render(value)),
        }
    }
}

fn render(value: &Value) -> String {
    match value {
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        Value::Null => "\"null\"".into(),
        other => other.to_string(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Removes fields the schema does not know; returns their paths.
pub fn prune(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if schema
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true)
            {
                return;
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let keep_unknown = preserves_unknown(schema);
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    match props.get(&key) {
                        Some(sub) => {
                            if let Some(v) = map.get_mut(&key) {
                                prune(sub, v, &join(path, &key), pruned);
                            }
                        }
                        None if keep_unknown => {}
                        None => {
                            map.remove(&key);
                            pruned.push(join(path, &key));
                        }
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (key, v) in map.iter_mut() {
                    prune(additional, v, &join(path, key), pruned);
                }
            } else if !preserves_unknown(schema)
                && schema.get("type").and_then(Value::as_str) == Some("object")
            {
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    map.remove(&key);
                    pruned.push(join(path, &key));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Fills in `default`s of absent properties, recursively, as the API server does on read and write.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in props {
                    if !map.contains_key(key) {
                        if let Some(default) = sub.get("default") {
                            map.insert(key.clone(), default.clone());
                        }
                    }
                    if let Some(v) = map.get_mut(key) {
                        apply_defaults(sub, v);
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for v in map.values_mut() {
                    apply_defaults(additional, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn regex_cache() -> &'static Mutex<HashMap<String, Option<Regex>>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<String, Option<Regex>>>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn pattern_matches(pattern: &str, s: &str) -> bool {
    let mut cache = regex_cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let re = cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok());
    re.as_ref().map(|r| r.is_match(s)).unwrap_or(true)
}

/// Validates `value` at `path` against `schema`, collecting every failure.
pub fn validate(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            causes.push(Cause::invalid(
                path,
                value,
                format!("{path} in body must be of type {t}: \"null\""),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if int_or_string {
        if !matches!(type_name(value), "integer" | "string") {
            // As the API server words it: the value shown is the type it found.
            causes.push(Cause::invalid(
                path,
                &Value::String(type_name(value).into()),
                format!(
                    "{path} in body must be of type int-or-string: \"{}\"",
                    type_name(value)
                ),
            ));
            return;
        }
    } else if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let ok = actual == expected || (expected == "number" && actual == "integer");
        if !ok {
            // As the API server words it: the value shown is the type it found.
            causes.push(Cause::invalid(
                path,
                &Value::String(actual.into()),
                format!("{path} in body must be of type {expected}: \"{actual}\""),
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            let supported: Vec<String> = options.iter().map(Value::to_string).collect();
            causes.push(Cause {
                reason: "FieldValueNotSupported",
                field: path.to_string(),
                message: format!(
                    "Unsupported value: {}: supported values: {}",
                    value,
                    supported.join(", ")
                ),
            });
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            let exclusive = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
            if n < min || (exclusive && n == min) {
                let op = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                causes.push(Cause::invalid(
                    path,
                    value,
                    format!("{path} in body should be {op} {}", num(min)),
                ));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            let exclusive = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
            if n > max || (exclusive && n == max) {
                let op = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                causes.push(Cause::invalid(
                    path,
                    value,
                    format!("{path} in body should be {op} {}", num(max)),
                ));
            }
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                causes.push(Cause::invalid(
                    path,
                    value,
                    format!("{path} in body should be at least {min} chars long"),
                ));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                causes.push(Cause {
                    reason: "FieldValueTooLong",
                    field: path.to_string(),
                    message: format!("Too long: may not be more than {max} bytes"),
                });
            }
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            if !pattern_matches(pattern, s) && !int_or_string {
                causes.push(Cause::invalid(
                    path,
                    value,
                    format!("{path} in body should match '{pattern}'"),
                ));
            }
        }
    }
    if let Some(items) = value.as_array() {
        let len = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if len < min {
                causes.push(Cause::invalid(
                    path,
                    value,
                    format!("{path} in body should have at least {min} items"),
                ));
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if len > max {
                causes.push(Cause {
                    reason: "FieldValueTooMany",
                    field: path.to_string(),
                    message: format!("Too many: {len}: must have at most {max} items"),
                });
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(item_schema, item, &format!("{path}[{i}]"), causes);
            }
        }
    }
    if let Some(map) = value.as_object() {
        validate_object(schema, map, path, causes);
    }
    check_rules(schema, value, path, causes);
    for (keyword, exactly_one) in [("oneOf", true), ("anyOf", false)] {
        if let Some(branches) = schema.get(keyword).and_then(Value::as_array) {
            let passing = branches
                .iter()
                .filter(|b| {
                    let mut c = Vec::new();
                    validate(b, value, path, &mut c);
                    c.is_empty()
                })
                .count();
            let ok = if exactly_one {
                passing == 1
            } else {
                passing >= 1
            };
            if !ok {
                let detail = if exactly_one {
                    format!("{path} in body must validate one and only one schema (oneOf). Found {passing} valid alternatives")
                } else {
                    format!("{path} in body must validate at least one schema (anyOf)")
                };
                causes.push(Cause::invalid(path, value, detail));
            }
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for b in all {
            validate(b, value, path, causes);
        }
    }
    if let Some(not) = schema.get("not") {
        let mut c = Vec::new();
        validate(not, value, path, &mut c);
        if c.is_empty() {
            causes.push(Cause::invalid(
                path,
                value,
                format!("{path} in body must not validate the schema (not)"),
            ));
        }
    }
}

/// The CEL rules of `x-kubernetes-validations`, with `self` bound to `value`, as the API server
/// evaluates them: a rule that is false fails with its `message` (or "failed rule: <rule>"); one
/// that cannot be compiled or evaluated fails with the reason, as a CRD with a broken rule would be
/// refused outright.
fn check_rules(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    else {
        return;
    };
    for rule in rules {
        let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
        let failure = match evaluate(text, value) {
            Ok(true) => continue,
            Ok(false) => rule
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| format!("failed rule: {text}"), str::to_string),
            Err(why) => format!("compilation or evaluation of rule {text:?} failed: {why}"),
        };
        causes.push(Cause::invalid(path, value, failure));
    }
}

/// One CEL rule over `value`: true, false, or why it could not say.
fn evaluate(rule: &str, value: &Value) -> Result<bool, String> {
    let program = cel::Program::compile(rule).map_err(|e| e.to_string())?;
    let mut context = cel::Context::default();
    context
        .add_variable("self", value)
        .map_err(|e| e.to_string())?;
    match program.execute(&context).map_err(|e| e.to_string())? {
        cel::Value::Bool(holds) => Ok(holds),
        other => Err(format!("the rule answers {other:?}, not a bool")),
    }
}

fn num(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                causes.push(Cause {
                    reason: "FieldValueRequired",
                    field: join(path, key),
                    message: "Required value".into(),
                });
            }
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (key, sub) in props {
            if let Some(v) = map.get(key) {
                validate(sub, v, &join(path, key), causes);
            }
        }
    } else if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        for (key, v) in map {
            validate(additional, v, &join(path, key), causes);
        }
    }
}

/// Violations of the structural-schema rules the API server enforces on CRDs (empty when structural):
/// every node has a type (unless it preserves unknown fields or is int-or-string), `properties`
/// and `additionalProperties` never appear together, and the value-validation keywords `oneOf`,
/// `anyOf`, `allOf`, `not` do not carry `type`, `default`, `description` or other structure.
pub fn structural_violations(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check_structural(schema, "", true, &mut out);
    out
}

fn check_structural(schema: &Value, path: &str, is_root: bool, out: &mut Vec<String>) {
    let Some(node) = schema.as_object() else {
        out.push(format!("{path}: schema node is not an object"));
        return;
    };
    let has_type = node.get("type").and_then(Value::as_str).is_some();
    let exempt = node
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
        || node
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
    if !has_type && !exempt {
        out.push(format!(
            "{}.type: Required value: must not be empty for specified object fields",
            display(path)
        ));
    }
    if is_root && node.get("type").and_then(Value::as_str) != Some("object") {
        out.push("type: Invalid value: the root type must be object".to_string());
    }
    if node.contains_key("properties") && node.contains_key("additionalProperties") {
        out.push(format!(
            "{}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
            display(path)
        ));
    }
    for forbidden in [
        "$ref",
        "definitions",
        "dependencies",
        "patternProperties",
        "additionalItems",
    ] {
        if node.contains_key(forbidden) {
            out.push(format!(
                "{}.{forbidden}: Forbidden: {forbidden} is not supported",
                display(path)
            ));
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            check_structural(sub, &format!("{path}.properties[{k}]"), false, out);
        }
    }
    if let Some(items) = node.get("items") {
        if items.is_array() {
            out.push(format!(
                "{}.items: Forbidden: items must be a schema object and not an array",
                display(path)
            ));
        } else {
            check_structural(items, &format!("{path}.items"), false, out);
        }
    }
    if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
        check_structural(
            additional,
            &format!("{path}.additionalProperties"),
            false,
            out,
        );
    }
    for keyword in ["oneOf", "anyOf", "allOf"] {
        if let Some(branches) = node.get(keyword).and_then(Value::as_array) {
            for (i, b) in branches.iter().enumerate() {
                check_value_validation(b, &format!("{path}.{keyword}[{i}]"), out);
            }
        }
    }
    if let Some(not) = node.get("not") {
        check_value_validation(not, &format!("{path}.not"), out);
    }
}

fn check_value_validation(schema: &Value, path: &str, out: &mut Vec<String>) {
    let Some(node) = schema.as_object() else {
        return;
    };
    for forbidden in [
        "type",
        "default",
        "description",
        "nullable",
        "additionalProperties",
        "x-kubernetes-preserve-unknown-fields",
    ] {
        if node.contains_key(forbidden) {
            out.push(format!(
                "{}.{forbidden}: Forbidden: must be empty to be structural",
                display(path)
            ));
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            check_value_validation(sub, &format!("{path}.properties[{k}]"), out);
        }
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "<root>"
    } else {
        path.trim_start_matches('.')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["weight"],
                    "properties": {
                        "weight": {"type": "integer", "minimum": 0, "maximum": 1000},
                        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }
            }
        })
    }

    #[test]
    fn prune_default_validate_in_api_server_order() {
        let mut obj = json!({"spec": {"weight": 5000, "extra": 1, "free": {"anything": [1]}}});
        let mut pruned = Vec::new();
        prune(&schema(), &mut obj, "", &mut pruned);
        assert_eq!(pruned, vec!["spec.extra"]);
        apply_defaults(&schema(), &mut obj);
        assert_eq!(obj["spec"]["mode"], "a");
        assert_eq!(obj["spec"]["free"]["anything"], json!([1]));
        let mut causes = Vec::new();
        validate(&schema(), &obj, "", &mut causes);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.weight");
        assert_eq!(
            causes[0].message,
            "Invalid value: 5000: spec.weight in body should be less than or equal to 1000"
        );
    }

    #[test]
    fn missing_required_and_wrong_type_are_reported() {
        let mut causes = Vec::new();
        validate(&schema(), &json!({"spec": {"mode": 3}}), "", &mut causes);
        let fields: Vec<_> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["spec.weight", "spec.mode"]);
        // The API server shows the type it found, not the value.
        assert_eq!(
            causes[1].message,
            "Invalid value: \"integer\": spec.mode in body must be of type string: \"integer\""
        );
    }

    #[test]
    fn structural_rules() {
        assert!(structural_violations(&schema()).is_empty());
        let bad = json!({"type": "object", "properties": {"a": {"properties": {}}, "b": {"type": "object", "properties": {}, "additionalProperties": false}}});
        let v = structural_violations(&bad);
        assert!(v.iter().any(|m| m.contains("properties[a].type")), "{v:?}");
        assert!(v.iter().any(|m| m.contains("mutual exclusive")), "{v:?}");
    }

    #[test]
    fn cel_rules_fail_with_their_message_and_pass_when_they_hold() {
        let schema = json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "x-kubernetes-validations": [
                {"rule": "self.a <= self.b", "message": "a must not exceed b"},
                {"rule": "has(self.a) == has(self.b)"}
            ]
        });
        let mut causes = Vec::new();
        validate(&schema, &json!({"a": 1, "b": 2}), "spec", &mut causes);
        assert!(causes.is_empty(), "{causes:?}");
        validate(&schema, &json!({"a": 3, "b": 2}), "spec", &mut causes);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec");
        assert_eq!(
            causes[0].message,
            "Invalid value: \"object\": a must not exceed b"
        );
        causes.clear();
        validate(&schema, &json!({"b": 2}), "spec", &mut causes);
        assert!(
            causes.iter().any(|c| c
                .message
                .contains("failed rule: has(self.a) == has(self.b)")),
            "{causes:?}"
        );
    }
}
