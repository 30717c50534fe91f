use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::*;
use crate::interaction::Fields;
use crate::privacy::seal::{Owner, Sealer};
use crate::privacy::Pseudonymizer;

/// The ports as a test sees them: what was appended, what was announced, and an append that can
/// be made to fail (the spool full) or to refuse a record too large to store.
#[derive(Default)]
struct Ports {
    appended: Mutex<Vec<InteractionEvent>>,
    announced: Mutex<Vec<String>>,
    full: bool,
    too_large: Option<String>,
}

impl AcceptPorts for Ports {
    fn append<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), SpoolError>> {
        Box::pin(async move {
            if self.full {
                return Err(SpoolError::Full { used: 9, limit: 9 });
            }
            if let Some(index) = events
                .iter()
                .position(|e| Some(&e.interaction_id) == self.too_large.as_ref())
            {
                return Err(SpoolError::TooLarge {
                    index,
                    size: 2_000_000,
                    limit: 1_000_000,
                });
            }
            self.appended.lock().unwrap().extend_from_slice(events);
            Ok(())
        })
    }

    fn accepted(&self, event: &InteractionEvent) {
        self.announced
            .lock()
            .unwrap()
            .push(event.interaction_id.clone());
    }
}

fn protection() -> Protection {
    Protection {
        pseudonymizer: Pseudonymizer::new(vec![7; crate::privacy::MIN_KEY_BYTES]).unwrap(),
        sealer: Arc::new(Sealer::from_keys(
            "k1",
            BTreeMap::from([("k1".to_string(), [3u8; 32])]),
        )),
        sensitive_mcps: Arc::default(),
        sensitive_interactions: Default::default(),
    }
}

fn parsed(interaction_id: Option<&str>, mcp_id: Option<&str>, fields: Fields) -> ParsedReport {
    ParsedReport {
        interaction_id: interaction_id.map(str::to_string),
        mcp_id: mcp_id.map(str::to_string),
        kind: None,
        fields,
    }
}

fn report<'a>(kind: EventKind, path_id: Option<&'a str>, parsed: ParsedReport) -> Report<'a> {
    Report {
        key_mcp: "ocr_text_001",
        kind,
        path_id,
        parsed,
        at: "data",
    }
}

#[tokio::test]
async fn a_start_without_an_id_gets_one_and_is_announced_after_it_is_spooled() {
    let ports = Ports::default();
    let event = accept(
        &ports,
        &protection(),
        report(
            EventKind::Start,
            None,
            parsed(None, None, Fields::default()),
        ),
        1_700_000_000_000,
    )
    .await
    .unwrap();
    assert!(!event.interaction_id.is_empty());
    assert_eq!(event.mcp_id, "ocr_text_001");
    assert_eq!(event.received_ms, 1_700_000_000_000);
    assert_eq!(ports.appended.lock().unwrap().len(), 1);
    assert_eq!(*ports.announced.lock().unwrap(), [event.interaction_id]);
}

#[tokio::test]
async fn what_the_spool_did_not_take_is_neither_acknowledged_nor_learned() {
    let ports = Ports {
        full: true,
        ..Ports::default()
    };
    let refused = accept(
        &ports,
        &protection(),
        report(
            EventKind::Start,
            Some("i-1"),
            parsed(None, None, Fields::default()),
        ),
        1,
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, Refusal::Spool(SpoolError::Full { .. })));
    assert!(ports.announced.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_key_speaks_only_for_its_own_mcp_and_ids_must_agree() {
    let ports = Ports::default();
    let protection = protection();
    let other = report(
        EventKind::Complete,
        None,
        parsed(Some("i-1"), Some("gpt_adapter_001"), Fields::default()),
    );
    let refused = accept(&ports, &protection, other, 1).await.unwrap_err();
    assert!(
        matches!(&refused, Refusal::Forbidden(m) if m.contains("ocr_text_001") && m.contains("gpt_adapter_001")),
        "{refused}"
    );
    let disagreeing = report(
        EventKind::Complete,
        Some("i-url"),
        parsed(Some("i-body"), None, Fields::default()),
    );
    let refused = accept(&ports, &protection, disagreeing, 1)
        .await
        .unwrap_err();
    assert!(matches!(&refused, Refusal::Bad(b) if b.field == "data.interaction_id"));
    let anonymous_end = report(
        EventKind::Complete,
        None,
        parsed(None, None, Fields::default()),
    );
    let refused = accept(&ports, &protection, anonymous_end, 1)
        .await
        .unwrap_err();
    assert!(matches!(&refused, Refusal::Bad(b) if b.problem.contains("required")));
    assert!(
        ports.appended.lock().unwrap().is_empty(),
        "nothing refused is spooled"
    );
}

#[tokio::test]
async fn users_become_pseudonyms_and_sensitive_interactions_are_sealed_before_the_spool() {
    let ports = Ports::default();
    let protection = protection();
    let fields = Fields {
        user_id: Some("alice@example.com".into()),
        privacy_level: Some("sensitive".into()),
        parameters: Some(r#"{"document":"secret"}"#.into()),
        ..Fields::default()
    };
    // The start says it is sensitive; a later report of the same interaction is sealed too,
    // though it does not say so itself.
    let later = Fields {
        error_message: Some("could not read secret".into()),
        ..Fields::default()
    };
    for (kind, fields) in [(EventKind::Start, fields), (EventKind::Error, later)] {
        let report = report(kind, Some("i-s"), parsed(None, None, fields));
        accept(&ports, &protection, report, 1).await.unwrap();
    }
    let appended = ports.appended.lock().unwrap();
    let start = &appended[0].fields;
    assert_ne!(start.user_id.as_deref(), Some("alice@example.com"));
    let sealed = start.parameters.as_deref().unwrap();
    assert!(Sealer::is_sealed(sealed), "{sealed}");
    let owner = Owner {
        mcp_id: "ocr_text_001",
        interaction_id: "i-s",
        field: "parameters",
    };
    assert!(protection.sealer.unseal(sealed, owner).is_some());
    let message = appended[1].fields.error_message.as_deref().unwrap();
    assert!(Sealer::is_sealed(message), "{message}");
}

#[tokio::test]
async fn a_value_that_looks_sealed_is_refused_by_name() {
    let fields = Fields {
        error_message: Some(format!("{}forged", crate::privacy::seal::SEALED)),
        ..Fields::default()
    };
    let refused = accept(
        &Ports::default(),
        &protection(),
        report(EventKind::Error, Some("i-1"), parsed(None, None, fields)),
        1,
    )
    .await
    .unwrap_err();
    assert!(matches!(&refused, Refusal::Bad(b) if b.field == "data.result_data.error_message"));
}

#[tokio::test]
async fn a_batch_answers_each_record_and_spools_the_rest_without_one_too_large() {
    let ports = Ports {
        too_large: Some("big".into()),
        ..Ports::default()
    };
    let items: Vec<Record> = vec![
        Ok(parsed(Some("a"), None, Fields::default())),
        Err(BadReport::new("result_data.success", "must be a boolean")),
        Ok(parsed(Some("big"), None, Fields::default())),
        Ok(parsed(None, None, Fields::default())),
        Ok(parsed(
            Some("b"),
            Some("gpt_adapter_001"),
            Fields::default(),
        )),
        Ok(parsed(Some("c"), Some("ocr_text_001"), Fields::default())),
    ];
    let outcomes = accept_batch(&ports, &protection(), "ocr_text_001", items, 5)
        .await
        .unwrap();
    let accepted: Vec<_> = outcomes.iter().map(|o| o.accepted).collect();
    assert_eq!(accepted, [true, false, false, false, false, true]);
    assert_eq!(outcomes[1].field.as_deref(), Some("result_data.success"));
    assert!(outcomes[2]
        .error
        .as_deref()
        .unwrap()
        .contains("at most 1000000"));
    assert_eq!(outcomes[3].field.as_deref(), Some("interaction_id"));
    assert_eq!(outcomes[4].field.as_deref(), Some("mcp_id"));
    let spooled: Vec<_> = ports
        .appended
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.interaction_id.clone(), e.kind, e.received_ms))
        .collect();
    assert_eq!(
        spooled,
        [
            ("a".to_string(), EventKind::Record, 5),
            ("c".to_string(), EventKind::Record, 5)
        ]
    );
    assert_eq!(*ports.announced.lock().unwrap(), ["a", "c"]);
}

#[test]
fn the_router_counts_starts_in_flight_until_their_end_whatever_form_it_takes() {
    use crate::routing::table::{Candidate, RoutingTable};
    let router = crate::routing::router::Router::default();
    let candidate = Candidate {
        mcp_id: "m1".into(),
        name: "m1".into(),
        namespace: "default".into(),
        endpoint: "http://m1".into(),
        process_path: "/process".into(),
        priority: 1,
        weight: 100,
        max_concurrent_requests: 10,
    };
    router.install(&RoutingTable {
        capabilities: [("ocr".to_string(), vec![candidate])].into(),
    });
    let event =
        |id: &str, kind| InteractionEvent::new(id.into(), "m1".into(), kind, 1, Fields::default());
    for id in ["i-1", "i-2", "i-3"] {
        learn(&router, &event(id, EventKind::Start));
    }
    learn(&router, &event("i-1", EventKind::Progress));
    assert_eq!(router.in_flight("m1"), 3, "progress ends nothing");
    learn(&router, &event("i-1", EventKind::Complete));
    learn(&router, &event("i-2", EventKind::Error));
    assert_eq!(router.in_flight("m1"), 1);
    learn(&router, &event("i-3", EventKind::Record));
    assert_eq!(router.in_flight("m1"), 0);
}
