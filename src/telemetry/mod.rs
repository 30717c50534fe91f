//! Prometheus series, each declared and registered in one step, and the text exposition of a
//! registry. Names follow Prometheus conventions (`_total` counters, base units in seconds).

pub mod spans;

use prometheus::core::Collector;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Latency buckets from a millisecond to ten seconds.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Makes series and registers them in its registry.
#[derive(Clone)]
pub struct Series {
    pub registry: Registry,
}

impl Default for Series {
    /// A registry that already holds the process's own series (`process_cpu_seconds_total`,
    /// `process_resident_memory_bytes`, open file descriptors, start time) and
    /// `mcp_coordinator_build_info`, so every endpoint says what runs and what it costs.
    fn default() -> Self {
        let registry = Registry::new();
        if let Err(e) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::debug!(error = %e, "process metrics are not available here");
        }
        let build_info = IntGaugeVec::new(
            Opts::new(
                "mcp_coordinator_build_info",
                "Always 1; the labels say which build runs.",
            ),
            &["version"],
        )
        .and_then(|info| {
            info.with_label_values(&[crate::COORDINATOR_VERSION]).set(1);
            registry.register(Box::new(info))
        });
        if let Err(e) = build_info {
            tracing::debug!(error = %e, "cannot register mcp_coordinator_build_info");
        }
        Self { registry }
    }
}

type Made<T> = Result<T, prometheus::Error>;

impl Series {
    fn register<T: Collector + Clone + 'static>(&self, made: Made<T>) -> Made<T> {
        let series = made?;
        self.registry.register(Box::new(series.clone()))?;
        Ok(series)
    }

    pub fn counter(&self, name: &str, help: &str) -> Made<IntCounter> {
        self.register(IntCounter::new(name, help))
    }

    pub fn counters(&self, name: &str, help: &str, labels: &[&str]) -> Made<IntCounterVec> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels))
    }

    pub fn gauge(&self, name: &str, help: &str) -> Made<IntGauge> {
        self.register(IntGauge::new(name, help))
    }

    pub fn float_gauge(&self, name: &str, help: &str) -> Made<Gauge> {
        self.register(Gauge::new(name, help))
    }

    pub fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> Made<IntGaugeVec> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Made<Histogram> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(Histogram::with_opts(opts))
    }

    pub fn histograms(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> Made<HistogramVec> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(HistogramVec::new(opts, labels))
    }

    /// The text exposition format of every series.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

/// The text exposition format of every series in `registry`.
pub fn render(registry: &Registry) -> String {
    render_all(&[registry])
}

/// The text exposition format of the series of several registries, as one exposition: a family
/// that more than one registry holds (the process's own series and `mcp_coordinator_build_info`,
/// which every registry made by [`Series::default`] carries) is written once, from the first.
/// Two families of one name in one exposition is invalid, and Prometheus refuses the scrape.
pub fn render_all(registries: &[&Registry]) -> String {
    let mut seen = std::collections::HashSet::new();
    let families: Vec<_> = registries
        .iter()
        .flat_map(|r| r.gather())
        .filter(|family| seen.insert(family.name().to_string()))
        .collect();
    let mut out = String::new();
    // Encoding into a String cannot fail for well-formed metric families.
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
        tracing::warn!(error = %e, "could not encode metrics");
    }
    out
}
