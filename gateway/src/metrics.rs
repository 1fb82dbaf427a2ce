//! Prometheus metrics served on `/metrics`. Other components (the scheduler's
//! job counter) register their collectors into the same registry at start-up.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::registry::Registry;

use crate::GatewayState;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub ingest_commits: Counter,
    pub ingest_failures: Counter,
    pub ingest_rows: Counter,
}

impl Metrics {
    /// `register_more` adds other components' metrics before the registry is frozen.
    pub fn new(register_more: impl FnOnce(&mut Registry)) -> Arc<Self> {
        let mut registry = Registry::with_prefix("lakehouse");
        let ingest_commits = Counter::default();
        let ingest_failures = Counter::default();
        let ingest_rows = Counter::default();
        registry.register(
            "gateway_ingest_commits",
            "Ingests committed as a new table version",
            ingest_commits.clone(),
        );
        registry.register(
            "gateway_ingest_failures",
            "Ingests refused or failed; nothing was committed",
            ingest_failures.clone(),
        );
        registry.register(
            "gateway_ingest_rows",
            "Rows committed by ingests",
            ingest_rows.clone(),
        );
        register_more(&mut registry);
        Arc::new(Self {
            registry,
            ingest_commits,
            ingest_failures,
            ingest_rows,
        })
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

pub(crate) async fn render(State(state): State<GatewayState>) -> Response {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// Metrics whose values live elsewhere (the scheduler's job totals, an
/// executor's running tasks), read at scrape time.
pub struct MetricFn {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Only ever rises.
    Counter,
    /// Rises and falls.
    Gauge,
}

impl std::fmt::Debug for MetricFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricFn")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl MetricFn {
    pub fn counter(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self::new(name, help, Kind::Counter, Box::new(read))
    }

    pub fn gauge(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self::new(name, help, Kind::Gauge, Box::new(read))
    }

    fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        read: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        Self {
            name,
            help,
            kind,
            read,
        }
    }
}

impl prometheus_client::collector::Collector for MetricFn {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let value = (self.read)();
        match self.kind {
            Kind::Counter => {
                let counter = prometheus_client::metrics::counter::ConstCounter::new(value);
                let metric =
                    encoder.encode_descriptor(self.name, self.help, None, counter.metric_type())?;
                counter.encode(metric)
            }
            Kind::Gauge => {
                let gauge = prometheus_client::metrics::gauge::ConstGauge::new(
                    i64::try_from(value).unwrap_or(i64::MAX),
                );
                let metric =
                    encoder.encode_descriptor(self.name, self.help, None, gauge.metric_type())?;
                gauge.encode(metric)
            }
        }
    }
}
