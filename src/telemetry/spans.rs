//! The coordinator's own spans, exported over OTLP/HTTP when the standard `OTEL_*` variables
//! ask for it (an endpoint in `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`). Off by default: the
//! global tracer is then the API's no-op one and [`enabled`] is false, so call sites skip even
//! building their attributes. The SDK's batch processor holds a bounded queue (2,048 spans unless
//! `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise) and drops what does not fit: a request never waits
//! for an export. Encoding and batching are the `opentelemetry` crates'; the exporter's HTTP
//! requests go out on the process's Tokio runtime through the crate's own reqwest client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_otlp::WithHttpConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;

pub use opentelemetry::trace::{
    FutureExt as WithContext, Span, SpanKind, Status, TraceContextExt, Tracer,
};
pub use opentelemetry::{Context as SpanContext, KeyValue as Attribute};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported; call sites skip their work when not.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The tracer every span of the coordinator comes from.
pub fn tracer() -> global::BoxedTracer {
    global::tracer("mcp-coordinator")
}

/// Why span export could not be set up as the environment asks.
#[derive(Debug, thiserror::Error)]
pub enum SpansError {
    #[error("{var}={value:?}: only http/protobuf is supported for the coordinator's spans; unset it or set http/protobuf")]
    Protocol { var: &'static str, value: String },
    #[error("the OTLP span exporter cannot be built from the OTEL_EXPORTER_OTLP_* variables: {0}")]
    Exporter(String),
}

/// Exports spans until dropped or [`SpanExport::shutdown`].
pub struct SpanExport {
    provider: SdkTracerProvider,
}

impl SpanExport {
    /// Sends what is queued (within the exporter's timeout) and stops exporting.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "spans still queued at shutdown were not all exported");
        }
    }
}

/// What the environment says about exporting spans: `None` when it does not ask for it.
pub fn wanted(env: impl Fn(&str) -> Option<String>) -> Result<bool, SpansError> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    if set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none")) {
        return Ok(false);
    }
    if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(false);
    }
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(value) = set(var) {
            if value.trim() != "http/protobuf" {
                return Err(SpansError::Protocol { var, value });
            }
            break;
        }
    }
    Ok(true)
}

/// Starts exporting spans of `component` (the `service.name` unless `OTEL_SERVICE_NAME` names
/// another) when the environment asks for it. Call from within the Tokio runtime.
pub fn init(component: &str) -> Result<Option<SpanExport>, SpansError> {
    if !wanted(|name| std::env::var(name).ok())? {
        return Ok(None);
    }
    let timeout = [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse::<u64>().ok())
    .map_or(Duration::from_secs(10), Duration::from_millis);
    let client = client::OnRuntime::new(timeout).map_err(SpansError::Exporter)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .build()
        .map_err(|e| SpansError::Exporter(e.to_string()))?;
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(format!("mcp-coordinator-{component}"));
    }
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_resource(resource.build())
        .build();
    global::set_tracer_provider(provider.clone());
    global::set_text_map_propagator(TraceContextPropagator::new());
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(SpanExport { provider }))
}

/// The trace context `traceparent`/`tracestate` carry (from HTTP headers or an MCP request's
/// `params._meta`), or the current one when they carry none.
pub fn extract(get: impl Fn(&str) -> Option<String>) -> Context {
    let carrier: HashMap<String, String> = ["traceparent", "tracestate"]
        .iter()
        .filter_map(|k| Some((k.to_string(), get(k)?)))
        .collect();
    if carrier.is_empty() {
        return Context::current();
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// `traceparent` (and `tracestate`) for `cx`, to carry to the next hop.
pub fn inject(cx: &Context) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier
}

/// A span around one operation of the coordinator (a reconcile, a probe, a store insert), child
/// of the current context; nothing when spans are not exported.
pub struct Op(Option<Context>);

impl Op {
    /// Starts it; `describe` (the name and attributes) runs only when spans are exported.
    pub fn start(kind: SpanKind, describe: impl FnOnce() -> (String, Vec<KeyValue>)) -> Self {
        if !enabled() {
            return Self(None);
        }
        let (name, attributes) = describe();
        let tracer = tracer();
        let parent = Context::current();
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        Self(Some(parent.with_span(span)))
    }

    /// Runs `work` with this span current, so the spans it starts are its children.
    pub async fn within<F: std::future::Future>(&self, work: F) -> F::Output {
        match &self.0 {
            Some(cx) => work.with_context(cx.clone()).await,
            None => work.await,
        }
    }

    /// Adds an attribute (built only when spans are exported).
    pub fn set(&self, attribute: impl FnOnce() -> KeyValue) {
        if let Some(cx) = &self.0 {
            cx.span().set_attribute(attribute());
        }
    }

    /// Ends it; a failure as its `error.type` (low cardinality) and its message.
    pub fn end(self, failure: Option<(&str, String)>) {
        if let Some(cx) = &self.0 {
            let span = cx.span();
            if let Some((error_type, message)) = failure {
                span.set_attribute(KeyValue::new("error.type", error_type.to_string()));
                span.set_status(Status::error(message));
            }
            span.end();
        }
    }
}

mod client {
    //! The exporter's HTTP client: the crate's reqwest client, its requests run on the Tokio
    //! runtime (the batch processor exports from a thread of its own, outside it).

    use bytes::Bytes;
    use opentelemetry_http::{HttpClient, HttpError, Request, Response};

    /// The most of an answer read back (a collector answers a few bytes).
    const MAX_ANSWER_BYTES: usize = 64 * 1024;

    #[derive(Debug)]
    pub struct OnRuntime {
        client: reqwest::Client,
        runtime: tokio::runtime::Handle,
    }

    impl OnRuntime {
        pub fn new(timeout: std::time::Duration) -> Result<Self, String> {
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|_| "span export must start inside the Tokio runtime".to_string())?;
            // The process's TLS crypto, as every client of the binary uses it (an `https`
            // endpoint needs it).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
            Ok(Self { client, runtime })
        }
    }

    #[async_trait::async_trait]
    impl HttpClient for OnRuntime {
        async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
            let client = self.client.clone();
            let sent = self.runtime.spawn(async move {
                let (parts, body) = request.into_parts();
                let mut response = client
                    .request(parts.method, parts.uri.to_string())
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let mut answer = Vec::new();
                while let Some(chunk) = response.chunk().await? {
                    if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                        break;
                    }
                    answer.extend_from_slice(&chunk);
                }
                Ok::<_, reqwest::Error>((status, answer))
            });
            let (status, answer) = sent.await??;
            let mut response = Response::new(Bytes::from(answer));
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn export_is_off_unless_an_endpoint_asks_for_it() {
        assert!(!wanted(env(&[])).unwrap());
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert!(wanted(env(&[endpoint])).unwrap());
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c/v1/traces"
        )]))
        .unwrap());
        assert!(!wanted(env(&[endpoint, ("OTEL_SDK_DISABLED", "true")])).unwrap());
        assert!(!wanted(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])).unwrap());
        assert!(wanted(env(&[
            endpoint,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        ]))
        .unwrap());
        let refused =
            wanted(env(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap_err();
        assert!(
            refused.to_string().contains("only http/protobuf"),
            "{refused}"
        );
    }

    #[test]
    fn trace_context_goes_in_and_out_as_traceparent() {
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let cx = extract(|k| (k == "traceparent").then(|| parent.to_string()));
        let carried = inject(&cx);
        assert_eq!(carried.get("traceparent").map(String::as_str), Some(parent));
        // Nothing carried: the current context, which has no span.
        assert!(inject(&extract(|_| None)).is_empty());
    }
}
