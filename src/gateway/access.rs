//! Who may call which tool on which MCP, and how often: each registration's
//! `spec.gatewayPolicy` (its CEL rules through `trust::policy`, its rate limits through
//! `trust::limits`), applied before a call leaves the gateway. A refusal is a JSON-RPC error that
//! names the registration and the rule; it is counted and audited. `tools/list` hides a tool no
//! MCP of the scope lets the caller call.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::catalog::{Catalog, Kind, Target};
use super::Gateway;
use crate::crd::GatewayPolicy;
use crate::trust::callers::Caller;
use crate::trust::policy::{Decision, Policy};

/// A registration's policy, compiled at first use and kept while the registration is unchanged
/// (the directory keeps an unchanged backend, this with it).
#[derive(Debug)]
pub struct PolicyCell {
    spec: GatewayPolicy,
    compiled: OnceLock<Result<Policy, String>>,
}

impl PartialEq for PolicyCell {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl PolicyCell {
    pub fn new(spec: GatewayPolicy) -> Self {
        Self {
            spec,
            compiled: OnceLock::new(),
        }
    }

    pub fn spec(&self) -> &GatewayPolicy {
        &self.spec
    }

    fn policy(&self) -> &Result<Policy, String> {
        self.compiled.get_or_init(|| Policy::compile(&self.spec))
    }
}

/// Why a call may not go anywhere.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Refused {
    /// A rule of every MCP offering the tool refused it (the first is named).
    Rule {
        registration: String,
        rule: String,
        detail: Option<String>,
    },
    /// Every MCP offering the tool is over a rate limit for this call (the last is named).
    Limited {
        registration: String,
        limit: String,
        retry_after: Duration,
    },
}

impl Refused {
    pub(super) fn message(&self, tool: &str) -> String {
        match self {
            Refused::Rule {
                registration,
                rule,
                detail: None,
            } => format!("{tool:?} is not allowed for this caller: rule {rule:?} of {registration} refused it"),
            Refused::Rule {
                registration,
                rule,
                detail: Some(d),
            } => format!("{tool:?} is refused: rule {rule:?} of {registration} could not be evaluated ({d})"),
            Refused::Limited {
                registration,
                limit,
                retry_after,
            } => format!(
                "{tool:?}: rate limit {limit:?} of {registration} reached; retry in {} s",
                retry_after.as_secs().max(1)
            ),
        }
    }
}

impl Gateway {
    /// What the rules of `mcp_id`'s registration say of this call (`None` arguments: a listing).
    fn decide(
        &self,
        mcp_id: &str,
        caller: &Caller,
        tool: &str,
        arguments: Option<&Value>,
    ) -> Option<Refused> {
        let backend = self.directory.get(mcp_id)?;
        let cell = backend.policy.as_ref()?;
        let refused = |rule: String, detail| Refused::Rule {
            registration: backend.name.clone(),
            rule,
            detail,
        };
        match cell.policy() {
            Err(e) => Some(refused("(invalid policy)".into(), Some(e.clone()))),
            Ok(policy) => match policy.decide(caller, tool, arguments) {
                Decision::Allow => None,
                Decision::Deny { rule } => Some(refused(rule, None)),
                Decision::Error { rule, message } => Some(refused(rule, Some(message))),
            },
        }
    }

    /// The entries of `catalog` the caller may see: tools some offering MCP lets it call.
    pub(super) fn visible(&self, caller: &Caller, kind: Kind, catalog: &Catalog) -> Vec<Value> {
        if kind != Kind::Tools {
            return catalog.items.clone();
        }
        catalog
            .items
            .iter()
            .filter(|item| {
                let Some(name) = item.get("name").and_then(Value::as_str) else {
                    return true;
                };
                catalog.routes.get(name).is_none_or(|targets| {
                    targets
                        .iter()
                        .any(|t| self.decide(&t.mcp_id, caller, name, None).is_none())
                })
            })
            .cloned()
            .collect()
    }

    /// The targets `caller` may call `tool` on with `arguments`; the first refusal when none.
    pub(super) fn permitted(
        &self,
        caller: &Caller,
        tool: &str,
        arguments: &Value,
        targets: &[Target],
    ) -> Result<Vec<Target>, Refused> {
        let mut first = None;
        let mut allowed = Vec::new();
        for target in targets {
            match self.decide(&target.mcp_id, caller, tool, Some(arguments)) {
                None => allowed.push(target.clone()),
                Some(refused) => {
                    first.get_or_insert(refused);
                }
            }
        }
        match (allowed.is_empty(), first) {
            (true, Some(refused)) => {
                self.refused_by_policy(caller, tool, &refused);
                Err(refused)
            }
            _ => Ok(allowed),
        }
    }

    /// Takes a call from `mcp_id`'s rate limits for `caller` on `tool`.
    pub(super) fn take_rate(&self, mcp_id: &str, caller: &str, tool: &str) -> Result<(), Refused> {
        let Some(backend) = self.directory.get(mcp_id) else {
            return Ok(());
        };
        let Some(cell) = &backend.policy else {
            return Ok(());
        };
        self.buckets
            .take(
                mcp_id,
                &cell.spec().rate_limits,
                caller,
                tool,
                Instant::now(),
            )
            .map_err(|(limit, retry_after)| Refused::Limited {
                registration: backend.name.clone(),
                limit,
                retry_after,
            })
    }

    /// Counts and audits a refusal.
    pub(super) fn refused_by_policy(&self, caller: &Caller, tool: &str, refused: &Refused) {
        let (registration, what) = match refused {
            Refused::Rule {
                registration, rule, ..
            } => (registration.as_str(), format!("rule:{rule}")),
            Refused::Limited {
                registration,
                limit,
                ..
            } => (registration.as_str(), format!("rate_limit:{limit}")),
        };
        self.metrics
            .policy_refusals
            .with_label_values(&[registration, &what])
            .inc();
        if let Some(audit) = &self.audit {
            audit(super::PolicyRefusal {
                caller: self.privacy.pseudonym(&caller.name),
                registration: registration.to_string(),
                tool: tool.to_string(),
                what,
            });
        }
    }
}
