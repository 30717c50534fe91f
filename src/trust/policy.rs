//! A registration's gateway policy compiled and applied, pure: its CEL rules decide whether a
//! caller may call a tool (with these arguments) on that MCP. Compiled once per policy: the
//! gateway keeps a registration's compiled policy while its spec is unchanged.
//!
//! Cost is bounded by what goes in: at most 16 rules of at most 2,048 characters (the CRD's
//! bounds), CEL has no loops beyond its macros over the inputs, and arguments over
//! [`MAX_ARGUMENT_BYTES`] are not evaluated (the call is refused: the rules cannot be applied).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::crd::{GatewayPolicy, RateLimit};
use crate::trust::callers::Caller;

/// The most argument text the rules are evaluated on.
pub const MAX_ARGUMENT_BYTES: usize = 64 * 1024;

/// CEL's standard environment, built once: building it (its functions and their overloads) for
/// every evaluation was most of what a policy cost a call in the gateway bench.
fn env() -> Arc<cel::Env> {
    static ENV: std::sync::OnceLock<Arc<cel::Env>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib())).clone()
}

/// What the rules say of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A rule was false.
    Deny {
        rule: String,
    },
    /// A rule could not be evaluated (an absent argument, a type error): refused, since it could
    /// not be shown to allow the call.
    Error {
        rule: String,
        message: String,
    },
}

/// A policy with its rules compiled.
pub struct Policy {
    pub spec: GatewayPolicy,
    rules: Vec<(String, Arc<cel::Program>)>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("spec", &self.spec).finish()
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Policy {
    /// Compiles every rule; the first that does not parse is named (the controller refuses such
    /// a registration, so this is only met by one it has not seen yet).
    pub fn compile(spec: &GatewayPolicy) -> Result<Self, String> {
        let rules = spec
            .rules
            .iter()
            .map(|r| {
                env()
                    .compile(&r.expression)
                    .map(|p| (r.name.clone(), Arc::new(p)))
                    .map_err(|e| format!("rule {:?} is not a CEL expression: {e}", r.name))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            spec: spec.clone(),
            rules,
        })
    }

    pub fn rate_limits(&self) -> &[RateLimit] {
        &self.spec.rate_limits
    }

    /// Whether `caller` may call `tool` with `arguments`. Without arguments (a listing), a rule
    /// that cannot be evaluated does not hide the tool: the call itself decides.
    pub fn decide(&self, caller: &Caller, tool: &str, arguments: Option<&Value>) -> Decision {
        if self.rules.is_empty() {
            return Decision::Allow;
        }
        let listing = arguments.is_none();
        let arguments = arguments.cloned().unwrap_or_else(|| json!({}));
        if serde_json::to_vec(&arguments).map_or(0, |b| b.len()) > MAX_ARGUMENT_BYTES {
            return Decision::Error {
                rule: self.rules[0].0.clone(),
                message: format!(
                    "the arguments are over {MAX_ARGUMENT_BYTES} bytes; the rules are not evaluated on them"
                ),
            };
        }
        let mut context = cel::Context::with_env(env());
        let variables = [
            (
                "caller",
                json!({"name": caller.name, "groups": caller.grant.groups}),
            ),
            ("tool", json!({"name": tool, "arguments": arguments})),
        ];
        for (name, value) in variables {
            match cel::to_value(value) {
                Ok(v) => context.add_variable_from_value(name, v),
                Err(e) => {
                    return Decision::Error {
                        rule: self.rules[0].0.clone(),
                        message: format!("{name} cannot be given to the rules: {e}"),
                    }
                }
            }
        }
        for (name, program) in &self.rules {
            match program.execute(&context) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(cel::Value::Bool(false)) => return Decision::Deny { rule: name.clone() },
                Ok(other) if !listing => {
                    return Decision::Error {
                        rule: name.clone(),
                        message: format!("the rule gave {other:?}, not true or false"),
                    }
                }
                Err(e) if !listing => {
                    return Decision::Error {
                        rule: name.clone(),
                        message: e.to_string(),
                    }
                }
                _ => {}
            }
        }
        Decision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PolicyRule;
    use crate::trust::callers::Grant;

    fn policy(rules: &[(&str, &str)]) -> Policy {
        Policy::compile(&GatewayPolicy {
            rules: rules
                .iter()
                .map(|(n, e)| PolicyRule {
                    name: n.to_string(),
                    expression: e.to_string(),
                })
                .collect(),
            rate_limits: vec![],
        })
        .unwrap()
    }

    fn caller(groups: &[&str]) -> Caller {
        Caller {
            name: "app".into(),
            grant: Grant {
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ..Grant::default()
            },
        }
    }

    #[test]
    fn rules_decide_by_caller_tool_and_arguments() {
        let p = policy(&[
            (
                "admins-delete",
                r#""ocr-admins" in caller.groups || tool.name != "delete_index""#,
            ),
            (
                "small-pages",
                r#"tool.name != "extract_text" || tool.arguments.pages <= 10"#,
            ),
        ]);
        assert_eq!(
            p.decide(&caller(&[]), "delete_index", Some(&json!({}))),
            Decision::Deny {
                rule: "admins-delete".into()
            }
        );
        assert_eq!(
            p.decide(&caller(&["ocr-admins"]), "delete_index", Some(&json!({}))),
            Decision::Allow
        );
        assert_eq!(
            p.decide(&caller(&[]), "extract_text", Some(&json!({"pages": 3}))),
            Decision::Allow
        );
        assert_eq!(
            p.decide(&caller(&[]), "extract_text", Some(&json!({"pages": 30}))),
            Decision::Deny {
                rule: "small-pages".into()
            }
        );
        // An argument the rule needs is missing: refused, naming the rule.
        assert!(matches!(
            p.decide(&caller(&[]), "extract_text", Some(&json!({}))),
            Decision::Error { rule, .. } if rule == "small-pages"
        ));
        // Listing: what depends on arguments stays visible; what the caller may never call is hidden.
        assert_eq!(
            p.decide(&caller(&[]), "extract_text", None),
            Decision::Allow
        );
        assert_eq!(
            p.decide(&caller(&[]), "delete_index", None),
            Decision::Deny {
                rule: "admins-delete".into()
            }
        );
    }

    #[test]
    fn oversized_arguments_and_unparsable_rules_are_refused() {
        let p = policy(&[("any", "true")]);
        let big = json!({"blob": "x".repeat(MAX_ARGUMENT_BYTES)});
        assert!(matches!(
            p.decide(&caller(&[]), "t", Some(&big)),
            Decision::Error { .. }
        ));
        let bad = Policy::compile(&GatewayPolicy {
            rules: vec![PolicyRule {
                name: "broken".into(),
                expression: "tool.name ==".into(),
            }],
            rate_limits: vec![],
        });
        assert!(bad.unwrap_err().contains("broken"));
    }
}
