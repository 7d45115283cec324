//! Tracing for the `plexus` binary and for hosts that want the same setup.
//!
//! Installs a `tracing` subscriber with a filter (from `RUST_LOG`, else the given
//! default), a human-readable layer on stderr, and an OpenTelemetry layer. Every
//! actor gets an `actor` span and every handled message a `handle` span (at debug
//! level, so they cost nothing unless enabled). The OpenTelemetry provider has no
//! exporter yet, so spans go nowhere until one is configured.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps the OpenTelemetry provider alive; flushes it when dropped.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset.
/// Returns `None` if a subscriber was installed already (the host's wins).
pub fn init(default_filter: &str) -> Option<TelemetryGuard> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer("plexus");
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .ok()?;
    Some(TelemetryGuard { provider })
}
