//! The write step's decisions, pure: whose report it is, which interaction it belongs to, what
//! privacy does to its fields, and what the router learns from it.

use std::sync::Arc;

use super::Report;
use crate::interaction::{
    new_interaction_id, BadReport, EventKind, Fields, InteractionEvent, ParsedReport,
};
use crate::pipeline::SpoolError;
use crate::privacy::seal::{Owner, Sealer, SEALED};
use crate::privacy::sensitive::SensitiveInteractions;
use crate::privacy::{Pseudonymizer, SensitiveMcps};
use crate::routing::router::{Outcome, Router};

/// Why a report was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The report itself is wrong; the field is named.
    #[error("{0}")]
    Bad(BadReport),
    /// The key's MCP may not report for the MCP the report names.
    #[error("{0}")]
    Forbidden(String),
    /// A sensitive field could not be sealed, so it is not kept at all.
    #[error("{0}")]
    Sealing(String),
    /// The spool did not take it: nothing was acknowledged.
    #[error(transparent)]
    Spool(SpoolError),
}

/// The privacy rules applied before a report exists anywhere but in the request's memory.
pub struct Protection {
    /// Turns `request_data.user_id` into a keyed pseudonym.
    pub pseudonymizer: Pseudonymizer,
    /// Seals the free-form fields of sensitive interactions.
    pub sealer: Arc<Sealer>,
    /// MCPs whose every interaction is sensitive.
    pub sensitive_mcps: Arc<SensitiveMcps>,
    /// Interactions a report marked sensitive; their later reports are sealed too.
    pub sensitive_interactions: SensitiveInteractions,
}

/// The event a single report becomes, protected.
pub(super) fn event_of(
    protection: &Protection,
    report: Report<'_>,
    now_ms: i64,
) -> Result<InteractionEvent, Refusal> {
    let Report {
        key_mcp,
        kind,
        path_id,
        parsed,
        at,
    } = report;
    refuse_sealed_lookalikes(&parsed.fields, at)?;
    let field = |f: &str| {
        if at.is_empty() {
            f.to_string()
        } else {
            format!("{at}.{f}")
        }
    };
    if let Some(mcp) = &parsed.mcp_id {
        if mcp != key_mcp {
            return Err(Refusal::Forbidden(format!(
                "this API key belongs to {key_mcp} and cannot report for {mcp}"
            )));
        }
    }
    let interaction_id = match (path_id, parsed.interaction_id) {
        (Some(p), Some(b)) if p != b => {
            return Err(Refusal::Bad(BadReport::new(
                field("interaction_id"),
                format!("{b:?} differs from the id in the URL ({p:?})"),
            )))
        }
        (Some(p), _) => p.to_string(),
        (None, Some(b)) => b,
        (None, None) if kind == EventKind::Start => new_interaction_id(now_ms),
        (None, None) => {
            return Err(Refusal::Bad(BadReport::new(
                field("interaction_id"),
                "required for this report",
            )))
        }
    };
    let mut fields = parsed.fields;
    protect(protection, key_mcp, &interaction_id, &mut fields, now_ms)?;
    Ok(InteractionEvent::new(
        interaction_id,
        key_mcp.to_string(),
        kind,
        now_ms,
        fields,
    ))
}

/// The event one record of a batch becomes, protected.
pub(super) fn record(
    protection: &Protection,
    key_mcp: &str,
    mut parsed: ParsedReport,
    received_ms: i64,
) -> Result<InteractionEvent, BadReport> {
    refuse_sealed_lookalikes(&parsed.fields, "")?;
    let id = parsed
        .interaction_id
        .ok_or_else(|| BadReport::new("interaction_id", "required in a batch record"))?;
    protect(protection, key_mcp, &id, &mut parsed.fields, received_ms)
        .map_err(|e| BadReport::new("", e.to_string()))?;
    match &parsed.mcp_id {
        Some(m) if m != key_mcp => Err(BadReport::new(
            "mcp_id",
            format!("this API key belongs to {key_mcp} and cannot report for {m}"),
        )),
        _ => Ok(InteractionEvent::new(
            id,
            key_mcp.to_string(),
            parsed.kind.unwrap_or(EventKind::Record),
            received_ms,
            parsed.fields,
        )),
    }
}

/// A client value that looks sealed would be taken for one (and opened as someone else's).
fn refuse_sealed_lookalikes(fields: &Fields, at: &str) -> Result<(), BadReport> {
    let looks_sealed = |v: &Option<String>| v.as_deref().is_some_and(Sealer::is_sealed);
    if looks_sealed(&fields.error_message) {
        let field = if at.is_empty() {
            "result_data.error_message".to_string()
        } else {
            format!("{at}.result_data.error_message")
        };
        return Err(BadReport::new(
            field,
            format!("must not start with {SEALED:?}, which marks values the coordinator sealed"),
        ));
    }
    Ok(())
}

/// Privacy rules: user IDs become pseudonyms, and the free-form fields of sensitive interactions
/// are sealed, bound to their MCP, interaction and field.
fn protect(
    protection: &Protection,
    mcp_id: &str,
    interaction_id: &str,
    fields: &mut Fields,
    now_ms: i64,
) -> Result<(), Refusal> {
    // Which coordinator took the report is this one's to say, whatever the report claims.
    fields.coordinator_version = Some(crate::COORDINATOR_VERSION.to_string());
    if let Some(user) = fields.user_id.take() {
        fields.user_id = Some(protection.pseudonymizer.pseudonym(&user));
    }
    let marked = fields.privacy_level.as_deref() == Some("sensitive");
    if marked {
        protection
            .sensitive_interactions
            .mark(mcp_id, interaction_id, now_ms);
    }
    let sensitive = marked
        || protection.sensitive_mcps.contains(mcp_id)
        || protection
            .sensitive_interactions
            .contains(mcp_id, interaction_id);
    if sensitive {
        for (field, value) in [
            ("parameters", &mut fields.parameters),
            ("error_message", &mut fields.error_message),
            ("details", &mut fields.progress_details),
        ] {
            let Some(plain) = value.as_deref() else {
                continue;
            };
            let owner = Owner {
                mcp_id,
                interaction_id,
                field,
            };
            let sealed = protection
                .sealer
                .seal(plain, owner)
                .map_err(|e| Refusal::Sealing(e.to_string()))?;
            *value = Some(sealed);
        }
    }
    Ok(())
}

/// Feeds the router what a report says about its MCP: starts count as in flight, ends as outcomes.
pub fn learn(router: &Router, event: &InteractionEvent) {
    let fields = &event.fields;
    let now = router.now();
    let request_type = fields.request_type.as_deref();
    // The caller's mistake, refused as it should be, is no failure of the MCP's.
    let caller_fault = fields
        .error_code
        .as_deref()
        .is_some_and(crate::routing::weights::is_caller_fault);
    let success = match event.kind {
        EventKind::Start => {
            return router.started(&event.mcp_id, &event.interaction_id, request_type, now)
        }
        EventKind::Progress => return,
        EventKind::Complete => fields.success.unwrap_or(true) || caller_fault,
        EventKind::Error => caller_fault,
        EventKind::Record => fields.success.unwrap_or(fields.error_code.is_none()) || caller_fault,
    };
    let outcome = Outcome {
        success,
        processing_time: fields.processing_time,
    };
    router.finished(
        &event.mcp_id,
        &event.interaction_id,
        request_type,
        outcome,
        now,
    );
}
