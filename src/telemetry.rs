//! Tracing for the `plexus` binary and for hosts that want the same setup.
//!
//! Installs a `tracing` subscriber: a human-readable layer on stderr with its own
//! filter (from `RUST_LOG`, else the given default) and, when an exporter is
//! configured, an OpenTelemetry layer with another ([`SPAN_FILTER_DEFAULT`]). Every
//! actor gets an `actor` span and every handled message a `handle` span (at debug
//! level, so they cost nothing unless enabled); durable actors open a
//! `durable.apply` span whose parent is the trace context their input carried, so
//! one request across several nodes is one trace.
//!
//! Spans leave the process through an OTLP/HTTP (protobuf) exporter when an endpoint
//! is configured: [`TelemetryConfig::otlp_endpoint`] (the node's `[telemetry]
//! otlp_endpoint` or `--otlp-endpoint`), else the standard
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` variables.
//! Without one there is no OpenTelemetry layer at all.
//!
//! Export is batched on the SDK's own thread, off the async workers. Its bounds: at
//! most 2048 spans queued (`OTEL_BSP_MAX_QUEUE_SIZE`); when the queue is full new
//! spans are dropped and counted by the SDK, never blocking an actor. Each export
//! waits at most [`EXPORT_TIMEOUT`]; a collector that is down loses those batches
//! (tracing is best-effort; it never holds back the runtime).

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use plexus_actors::envelope::TraceContext;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Which spans are exported, unless `PLEXUS_OTEL_FILTER` says otherwise (same
/// syntax as `RUST_LOG`). Per-message `handle` spans are debug level, so they stay
/// local by default; a durable actor's `durable.apply` and the API's `api.send` are
/// info level.
pub const SPAN_FILTER_DEFAULT: &str = "warn,plexus=info";
/// The longest one export (one batch POST) may take.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest collector response read back; the rest is not read.
const RESPONSE_BYTES_MAX: u64 = 64 * 1024;

/// How to set up tracing.
#[derive(Clone, Debug, Default)]
pub struct TelemetryConfig {
    /// The filter when `RUST_LOG` is unset (e.g. `warn`, `plexus=debug`).
    pub filter: String,
    /// Where to send spans: an OTLP/HTTP base URL (`http://host:4318`, to which
    /// `/v1/traces` is added) or a full traces URL. `None`: the OTel environment
    /// variables decide; if they are unset too, nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// `service.instance.id` on every span: the node's id, so a collector tells the
    /// nodes of one trace apart.
    pub instance: Option<String>,
}

/// Why tracing could not be set up as configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The OTLP endpoint is not an http(s) URL.
    #[error("invalid OTLP endpoint `{endpoint}`: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The exporter could not be built (e.g. an invalid OTEL_* variable).
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// Keeps the OpenTelemetry provider alive; flushes queued spans when dropped.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl TelemetryGuard {
    /// Whether spans are exported to a collector.
    pub fn exporting(&self) -> bool {
        self.exporting
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber with no explicit exporter (the OTel environment
/// variables may still configure one). `default_filter` applies when `RUST_LOG` is
/// unset. Returns `None` if a subscriber was installed already (the host's wins) or
/// the environment names an invalid exporter (then tracing stays local).
pub fn init(default_filter: &str) -> Option<TelemetryGuard> {
    init_with(&TelemetryConfig {
        filter: default_filter.to_string(),
        ..TelemetryConfig::default()
    })
    .ok()
    .flatten()
}

/// Installs the global subscriber as `config` says. `Ok(None)`: a subscriber was
/// installed already (the host's wins).
pub fn init_with(config: &TelemetryConfig) -> Result<Option<TelemetryGuard>, TelemetryError> {
    let (provider, exporting) = provider(config)?;
    // Each layer filters for itself: the log's verbosity does not decide which spans
    // a collector sees. Without an exporter there is no OpenTelemetry layer at all.
    let log_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(log_filter);
    let otel = exporting.then(|| {
        let spans = EnvFilter::try_from_env("PLEXUS_OTEL_FILTER")
            .unwrap_or_else(|_| EnvFilter::new(SPAN_FILTER_DEFAULT));
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("plexus"))
            .with_filter(spans)
    });
    if tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .is_err()
    {
        return Ok(None);
    }
    Ok(Some(TelemetryGuard {
        provider,
        exporting,
    }))
}

/// Makes `parent` (a context that came with a message or a request, usually from
/// another node) the parent of `span`, so the span joins that trace.
pub fn adopt(span: &tracing::Span, parent: &TraceContext) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The context to pass on from inside `span`: the span's own when it is exported
/// and belongs to `carried`'s trace (so the next hop's span is its child), else
/// `carried` unchanged (no exporter: contexts pass through untouched).
pub fn pass_on(span: &tracing::Span, carried: Option<TraceContext>) -> Option<TraceContext> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let carried = carried?;
    if span.is_disabled() {
        return Some(carried);
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    if !own.is_valid() || own.trace_id().to_bytes() != carried.trace_id {
        return Some(carried);
    }
    Some(TraceContext {
        trace_id: carried.trace_id,
        span_id: own.span_id().to_bytes(),
        flags: own.trace_flags().to_u8(),
    })
}

/// `endpoint` checked, and completed with `/v1/traces` when it is a base URL.
pub fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let bad = |reason: &str| TelemetryError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let uri: ureq::http::Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(match uri.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_string(),
    })
}

fn provider(config: &TelemetryConfig) -> Result<(SdkTracerProvider, bool), TelemetryError> {
    let mut resource = Resource::builder().with_service_name("plexus");
    if let Some(instance) = &config.instance {
        resource = resource.with_attribute(KeyValue::new("service.instance.id", instance.clone()));
    }
    let builder = SdkTracerProvider::builder().with_resource(resource.build());
    let from_env = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    if config.otlp_endpoint.is_none() && !from_env {
        return Ok((builder.build(), false));
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Ureq::new())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(endpoint) = &config.otlp_endpoint {
        exporter = exporter.with_endpoint(traces_url(endpoint)?);
    }
    let exporter = exporter
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    Ok((builder.with_batch_exporter(exporter).build(), true))
}

/// The OTLP exporter's HTTP client: ureq (already the CLI's client), blocking. The
/// SDK's batch processor runs exports on its own thread, so blocking there holds
/// back no async worker.
#[derive(Debug)]
struct Ureq {
    agent: ureq::Agent,
}

impl Ureq {
    fn new() -> Ureq {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(EXPORT_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ureq { agent }
    }
}

#[async_trait::async_trait]
impl HttpClient for Ureq {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, body.to_vec());
        let response = self.agent.run(request)?;
        let (parts, mut body) = response.into_parts();
        let bytes = body
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_vec()
            .unwrap_or_default();
        Ok(Response::from_parts(parts, Bytes::from(bytes)))
    }
}

/// The W3C `traceparent` text of a trace context.
pub fn traceparent(t: &TraceContext) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "00-{}-{}-{:02x}",
        hex(&t.trace_id),
        hex(&t.span_id),
        t.flags
    )
}

/// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn parse_traceparent(text: &str) -> Result<TraceContext, String> {
    let parts: Vec<&str> = text.trim().split('-').collect();
    let bad = || format!("`{text}` is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)");
    if parts.len() != 4
        || parts[0] != "00"
        || parts[1].len() != 32
        || parts[2].len() != 16
        || parts[3].len() != 2
    {
        return Err(bad());
    }
    let bytes = |h: &str| -> Result<Vec<u8>, String> {
        (0..h.len())
            .step_by(2)
            .map(|i| {
                h.get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
                    .ok_or_else(bad)
            })
            .collect()
    };
    let mut trace_id = [0u8; 16];
    trace_id.copy_from_slice(&bytes(parts[1])?);
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(&bytes(parts[2])?);
    if trace_id == [0; 16] || span_id == [0; 8] {
        return Err(bad());
    }
    Ok(TraceContext {
        trace_id,
        span_id,
        flags: bytes(parts[3])?[0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_completed() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://collector/").unwrap(),
            "https://collector/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/custom/traces").unwrap(),
            "http://c:4318/custom/traces"
        );
        for bad in ["", "collector:4318", "ftp://c/", "not a url", "http://"] {
            assert!(
                matches!(traces_url(bad), Err(TelemetryError::Endpoint { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn traceparents_round_trip_and_bad_ones_are_refused() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = parse_traceparent(text).unwrap();
        assert_eq!(t.flags, 1);
        assert_eq!(traceparent(&t), text);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e47é6-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_err(), "{bad}");
        }
    }
}
