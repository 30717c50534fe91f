//! What the generated CRD must look like to a current API server beyond what the Rust types say:
//! integer formats Kubernetes knows (`int32`, `int64`) with the bounds the Rust types imply, in
//! place of schemars' `uint16`/`uint32`/`uint64`, which Kubernetes 1.34 and later warn about on
//! every apply.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{json, Value};

/// A JSON object of any shape (a functional probe's arguments): kept whole by the API server.
pub fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// `crd` with every schema's integer formats and bounds made conventional.
pub fn apply(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    integer_formats(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

/// Rewrites every `format` of an integer node, everywhere below `node`.
fn integer_formats(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("integer") {
                let bounds = map
                    .get("format")
                    .and_then(Value::as_str)
                    .and_then(conventional);
                if let Some((format, min, max)) = bounds {
                    map.insert("format".into(), json!(format));
                    let tighter_min = map
                        .get("minimum")
                        .and_then(Value::as_f64)
                        .map_or(min as f64, |m| m.max(min as f64));
                    map.insert("minimum".into(), json!(tighter_min as i64));
                    let tighter_max = match (map.get("maximum").and_then(Value::as_f64), max) {
                        (Some(m), Some(limit)) => Some(m.min(limit as f64) as i64),
                        (Some(m), None) => Some(m as i64),
                        (None, limit) => limit,
                    };
                    if let Some(m) = tighter_max {
                        map.insert("maximum".into(), json!(m));
                    }
                }
            }
            map.values_mut().for_each(integer_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(integer_formats),
        _ => {}
    }
}

/// The Kubernetes format, minimum and maximum (if any) for a schemars integer format.
fn conventional(format: &str) -> Option<(&'static str, i64, Option<i64>)> {
    Some(match format {
        "uint8" => ("int32", 0, Some(u8::MAX.into())),
        "uint16" => ("int32", 0, Some(u16::MAX.into())),
        "uint32" => ("int64", 0, Some(u32::MAX.into())),
        "uint64" | "uint" => ("int64", 0, None),
        "int8" => ("int32", i8::MIN.into(), Some(i8::MAX.into())),
        "int16" => ("int32", i16::MIN.into(), Some(i16::MAX.into())),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_integer_has_a_format_kubernetes_knows_and_explicit_bounds() {
        let crd = serde_json::to_value(crate::crd::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut integers = Vec::new();
        collect_integers(schema, "", &mut integers);
        assert!(integers.len() >= 18, "{integers:?}");
        for (path, node) in integers {
            let format = node["format"].as_str().unwrap_or_default();
            assert!(
                ["int32", "int64"].contains(&format),
                "{path}: format {format:?}"
            );
            // k8s-openapi holds bounds as f64: whole numbers are what matters. Signed 64-bit
            // fields (timestamps in milliseconds) are the ones without bounds.
            let whole = |v: &Value| v.as_f64().is_some_and(|n| n.fract() == 0.0);
            if !node["minimum"].is_null() || format == "int32" {
                assert!(
                    whole(&node["minimum"]),
                    "{path}: minimum {}",
                    node["minimum"]
                );
            }
            if !node["maximum"].is_null() {
                assert!(
                    whole(&node["maximum"]),
                    "{path}: maximum {}",
                    node["maximum"]
                );
            }
        }
    }

    fn collect_integers<'a>(node: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
        match node {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("integer") {
                    out.push((path.to_string(), node));
                }
                for (key, child) in map {
                    collect_integers(child, &format!("{path}.{key}"), out);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    collect_integers(item, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn bounds_the_types_imply_are_kept_when_the_schema_is_tighter() {
        let mut schema =
            json!({"type": "integer", "format": "uint16", "minimum": 1.0, "maximum": 100.0});
        integer_formats(&mut schema);
        assert_eq!(
            schema,
            json!({"type": "integer", "format": "int32", "minimum": 1, "maximum": 100})
        );
        let mut wide = json!({"type": "integer", "format": "uint32"});
        integer_formats(&mut wide);
        assert_eq!(
            wide,
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295u32})
        );
    }
}
