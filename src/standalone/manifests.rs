//! MCPRegistration manifests from a directory, checked the way the API server would check them
//! (the CRD's schema: defaults, unknown fields, ranges, patterns) and then by the controller's own
//! spec validation. What fails is reported with file, field and reason, and skipped.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::crd::validate::{is_dns_label, validate_spec};
use crate::crd::MCPRegistration;

/// A registration read from a file; its namespace defaults to `default`.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: PathBuf,
    pub registration: MCPRegistration,
}

impl Manifest {
    /// `namespace/name`: the identity of a registration across files and restarts.
    pub fn key(&self) -> String {
        key_of(&self.registration)
    }
}

pub fn key_of(reg: &MCPRegistration) -> String {
    format!(
        "{}/{}",
        reg.namespace().unwrap_or_else(|| "default".into()),
        reg.name_any()
    )
}

/// Why a manifest (or one document of it) was skipped.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based document number within the file.
    pub document: usize,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.document)?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The CRD's OpenAPI schema, which every manifest is checked against: made once (generating it
/// was a sixth of a self-registration's time).
pub fn schema() -> &'static Value {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(crate::crd::openapi_schema)
}

/// Reads every `*.yaml` / `*.yml` file of `dir` (not recursively), in name order.
pub fn load_dir(dir: &Path) -> (Vec<Manifest>, Vec<Problem>) {
    let problem = |file: &Path, reason: String| Problem {
        file: file.to_path_buf(),
        document: 0,
        field: String::new(),
        reason,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return (
                Vec::new(),
                vec![problem(dir, format!("cannot read the directory: {e}"))],
            )
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    let schema = schema();
    let mut manifests: Vec<Manifest> = Vec::new();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(problem(&file, format!("cannot read: {e}")));
                continue;
            }
        };
        let (found, mut bad) = parse(&file, &text, schema);
        problems.append(&mut bad);
        for m in found {
            match seen.get(&m.key()) {
                Some(first) => problems.push(Problem {
                    file: m.file.clone(),
                    document: 0,
                    field: "metadata.name".into(),
                    reason: format!(
                        "{} is already registered by {}; names must be unique per namespace",
                        m.key(),
                        first.display()
                    ),
                }),
                None => {
                    seen.insert(m.key(), m.file.clone());
                    manifests.push(m);
                }
            }
        }
    }
    (manifests, problems)
}

/// The manifests of one file (several documents separated by `---` are fine).
pub fn parse(file: &Path, text: &str, schema: &Value) -> (Vec<Manifest>, Vec<Problem>) {
    let problem = |document: usize, field: &str, reason: String| Problem {
        file: file.to_path_buf(),
        document,
        field: field.to_string(),
        reason,
    };
    let documents: Vec<Value> = match serde_saphyr::from_str_multiple(text) {
        Ok(docs) => docs,
        Err(e) => {
            return (
                Vec::new(),
                vec![problem(1, "", format!("not valid YAML: {e}"))],
            )
        }
    };
    let mut manifests = Vec::new();
    let mut problems = Vec::new();
    for (index, mut doc) in documents.into_iter().enumerate() {
        let n = index + 1;
        if doc.is_null() {
            continue;
        }
        let expected = MCPRegistration::api_version(&());
        if doc.get("apiVersion").and_then(Value::as_str) != Some(expected.as_ref())
            || doc.get("kind").and_then(Value::as_str) != Some("MCPRegistration")
        {
            problems.push(problem(
                n,
                "kind",
                format!("not an MCPRegistration: expected apiVersion {expected} and kind MCPRegistration"),
            ));
            continue;
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !is_dns_label(&name) {
            problems.push(problem(
                n,
                "metadata.name",
                format!(
                    "{name:?} must be a lowercase RFC 1123 name (letters, digits, '-', at most 63)"
                ),
            ));
            continue;
        }
        match doc.pointer("/metadata/namespace").map(Value::as_str) {
            None => {
                if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("namespace".into(), Value::String("default".into()));
                }
            }
            // Namespaces name directories under the data directory: never `..` or a path.
            Some(Some(namespace)) if is_dns_label(namespace) => {}
            Some(other) => {
                problems.push(problem(
                    n,
                    "metadata.namespace",
                    format!(
                        "{} must be a lowercase RFC 1123 label (letters, digits, '-', at most 63)",
                        other.map_or_else(|| "it".to_string(), |ns| format!("{ns:?}"))
                    ),
                ));
                continue;
            }
        }
        if let Some(obj) = doc.as_object_mut() {
            obj.remove("status");
        }
        // The API server checks apiVersion, kind and metadata itself; the CRD's schema is about spec.
        let spec_schema = &schema["properties"]["spec"];
        let Some(spec) = doc.get_mut("spec") else {
            problems.push(problem(n, "spec", "Required value".into()));
            continue;
        };
        let mut unknown = Vec::new();
        structural_schema::prune(spec_schema, spec, "spec", &mut unknown);
        if !unknown.is_empty() {
            for field in unknown {
                // kubectl's words (the API server's strict field validation).
                let reason = format!("strict decoding error: unknown field \"{field}\"");
                problems.push(problem(n, &field, reason));
            }
            continue;
        }
        structural_schema::apply_defaults(spec_schema, spec);
        let mut causes = Vec::new();
        structural_schema::validate(spec_schema, spec, "spec", &mut causes);
        if !causes.is_empty() {
            for c in causes {
                problems.push(problem(n, &c.field, c.message));
            }
            continue;
        }
        let registration: MCPRegistration = match serde_path_to_error::deserialize(&doc) {
            Ok(r) => r,
            Err(e) => {
                problems.push(problem(n, &e.path().to_string(), e.inner().to_string()));
                continue;
            }
        };
        let semantic = validate_spec(&registration.spec);
        if !semantic.is_empty() {
            for p in semantic {
                problems.push(problem(n, p.field, p.message.clone()));
            }
            continue;
        }
        manifests.push(Manifest {
            file: file.to_path_buf(),
            registration,
        });
    }
    (manifests, problems)
}

/// What the directory looks like: file names with modification times and sizes. A change means
/// the manifests must be read again.
pub fn fingerprint(dir: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut prints: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.path(), meta.modified().ok(), meta.len()))
        })
        .collect();
    prints.sort();
    prints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Vec<Manifest>, Vec<Problem>) {
        parse(Path::new("regs/x.yaml"), text, schema())
    }

    const GOOD: &str = "apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata:\n  name: ocr\nspec:\n  version: 1.0.0\n  type: workflow\n  capabilities: [ocr]\n  endpoint:\n    url: http://127.0.0.1:9000\n";

    #[test]
    fn a_good_manifest_gets_defaults_and_the_default_namespace() {
        let (found, problems) = check(GOOD);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(found[0].key(), "default/ocr");
        assert_eq!(found[0].registration.spec.routing.weight, 100);
    }

    #[test]
    fn a_namespace_that_is_not_a_dns_label_is_refused() {
        for namespace in ["../../x", "a/b", "Default", "", "x".repeat(64).as_str()] {
            let text = GOOD.replace(
                "  name: ocr\n",
                &format!("  name: ocr\n  namespace: {namespace:?}\n"),
            );
            let (found, problems) = check(&text);
            assert!(found.is_empty(), "{namespace:?} was accepted");
            assert_eq!(problems[0].field, "metadata.namespace", "{problems:?}");
        }
        let (found, _) =
            check(&GOOD.replace("  name: ocr\n", "  name: ocr\n  namespace: team-a\n"));
        assert_eq!(found[0].key(), "team-a/ocr");
    }

    #[test]
    fn problems_name_the_file_the_field_and_the_reason() {
        let out_of_range = format!("{GOOD}  routing:\n    weight: 5000\n");
        let (found, problems) = check(&out_of_range);
        assert!(found.is_empty());
        assert_eq!(problems[0].field, "spec.routing.weight");
        assert!(problems[0].reason.contains("1000"), "{}", problems[0]);
        assert!(problems[0]
            .to_string()
            .starts_with("regs/x.yaml (document 1): spec.routing.weight"));

        let typo = GOOD.replace("capabilities", "capabilites");
        let (_, problems) = check(&typo);
        assert!(
            problems.iter().any(|p| p.field == "spec.capabilites"),
            "{problems:?}"
        );

        // The CRD's CEL rule, evaluated as the API server would.
        let slow = GOOD.replace(
            "version: 1.0.0",
            "version: 1.0.0\n  healthCheck:\n    intervalSeconds: 5\n    timeoutSeconds: 10",
        );
        let (_, problems) = check(&slow);
        assert!(
            problems.iter().any(|p| p.field == "spec.healthCheck"
                && p.reason
                    .contains("timeoutSeconds must not exceed intervalSeconds")),
            "{problems:?}"
        );

        let (_, problems) = check("kind: Deployment\napiVersion: apps/v1\n");
        assert_eq!(problems[0].field, "kind");
        let (_, problems) = check("{ not yaml");
        assert!(problems[0].reason.contains("YAML"), "{problems:?}");
    }

    #[test]
    fn several_documents_in_one_file_are_read_separately() {
        let two = format!(
            "{GOOD}---\n{}",
            GOOD.replace("name: ocr", "name: ocr-2")
                .replace("weight", "w")
        );
        let bad_second = format!("{GOOD}---\n{}", GOOD.replace("name: ocr", "name: Bad_Name"));
        assert_eq!(check(&two).0.len(), 2);
        let (found, problems) = check(&bad_second);
        assert_eq!((found.len(), problems[0].document), (1, 2));
    }
}
