//! Property-based fuzzing of the ingest request parser: arbitrary bytes and arbitrary JSON never
//! panic, and every refusal names a problem. `FUZZ_CASES` raises the number of inputs
//! (default 4,000 per property in `make test`).

use mcp_coordinator::interaction::parse_report;
use mcp_coordinator::interaction::EventKind;
use proptest::prelude::*;
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(4000)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("interaction_id"),
            Just("mcp_id"),
            Just("request_data"),
            Just("result_data"),
            Just("processing_data"),
            Just("quality_score"),
            Just("user_id"),
            Just("error_code"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("interaction_id".to_string()),
                    Just("mcp_id".to_string()),
                    Just("request_data".to_string()),
                    Just("request_info".to_string()),
                    Just("result_data".to_string()),
                    Just("processing_data".to_string()),
                    Just("parameters".to_string()),
                    Just("quality_score".to_string()),
                    Just("success".to_string()),
                    Just("error_code".to_string()),
                    Just("timestamp".to_string()),
                    Just("resource_usage".to_string()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        Just(EventKind::Start),
        Just(EventKind::Progress),
        Just(EventKind::Complete),
        Just(EventKind::Error),
        Just(EventKind::Record),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_reports_never_panic(value in json_value(), kind in kind()) {
        match parse_report(value, kind, "data") {
            Ok(parsed) => {
                if let Some(q) = parsed.fields.quality_score {
                    prop_assert!((0.0..=1.0).contains(&q));
                }
            }
            Err(bad) => prop_assert!(!bad.problem.is_empty()),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), kind in kind()) {
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            let _ = parse_report(value, kind, "");
        }
    }
}

#[test]
fn deeply_nested_json_is_refused_not_a_stack_overflow() {
    let depth = 100_000;
    let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "serde_json's recursion limit refuses it"
    );
}
