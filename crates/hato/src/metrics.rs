//! The metrics hook: the counters hato keeps, named in one place, and the one recorder per
//! process that holds them (the `metrics` facade with the Prometheus recorder).
//!
//! Code records through the functions here, never through ad-hoc `metrics::counter!` names, so
//! names and labels follow the Prometheus conventions (`hato_` prefix, `_total` counters, small
//! fixed label values) and stay listed together. [`Metrics::render`] gives the Prometheus text
//! format; the HTTPS service serves it at `/metrics` (issue 13).
//!
//! Must never: block, take a label value from client input (unbounded series), or fail a
//! session because recording failed.

use std::sync::OnceLock;

use metrics::counter;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// A handle on the process's counters.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Installs the process's recorder on first use; later calls (a second server in the same
    /// process, as in tests) share it.
    pub fn install() -> Metrics {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        let handle = HANDLE.get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if an embedding program installed its own recorder first: then the
            // counters go there and this handle renders nothing.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; hato's /metrics stays empty"
                );
            }
            handle
        });
        Metrics {
            handle: handle.clone(),
        }
    }

    /// Every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// A connection admitted on a listener (`service`: "smtp", "submission", "imap", ...).
pub fn connection_accepted(service: &'static str, implicit_tls: bool) {
    let tls = if implicit_tls { "implicit" } else { "none" };
    counter!("hato_connections_total", "service" => service, "tls" => tls).increment(1);
}

/// A connection refused by a connection limit (`reason`: "busy" or "per_address").
pub fn connection_refused(service: &'static str, reason: &'static str) {
    counter!("hato_connections_refused_total", "service" => service, "reason" => reason)
        .increment(1);
}

/// An AUTH, LOGIN or USER/PASS check ("ok", "failed", "throttled").
pub fn auth_attempt(result: &'static str) {
    counter!("hato_auth_attempts_total", "result" => result).increment(1);
}

/// A message accepted at the end of DATA/BDAT, with its number of recipients.
pub fn message_accepted(service: &'static str, recipients: usize) {
    counter!("hato_messages_accepted_total", "service" => service).increment(1);
    counter!("hato_recipients_accepted_total", "service" => service).increment(recipients as u64);
}

/// A message refused for a reason of the server's own (`reason`: "no_room").
pub fn message_refused(service: &'static str, reason: &'static str) {
    counter!("hato_messages_refused_total", "service" => service, "reason" => reason).increment(1);
}

/// An outbound recipient accepted by the next hop, over TLS or not.
pub fn delivered(tls: bool) {
    let tls = if tls { "yes" } else { "no" };
    counter!("hato_deliveries_total", "result" => "delivered", "tls" => tls).increment(1);
}

/// An outbound recipient kept queued for a later attempt.
pub fn deferred() {
    counter!("hato_deliveries_total", "result" => "deferred").increment(1);
}

/// An outbound recipient given up on (its sender gets a DSN, unless it asked for none).
pub fn bounced() {
    counter!("hato_deliveries_total", "result" => "bounced").increment(1);
}
