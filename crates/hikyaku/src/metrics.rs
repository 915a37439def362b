//! Prometheus metrics: the process-wide recorder and one function per event,
//! so that each place that counts something (intake, delivery, tokens, the
//! store) does it in one line. A leaf: it names no other module of the crate.
//! The gauges read from the store at scrape time (jobs by state, expiries)
//! are set by the `/metrics` handler (`web::prometheus`).
//!
//! The `metrics` facade with `metrics-exporter-prometheus` is used rather
//! than `prometheus-client`: a call site is one macro line with no registry
//! handed around, and the exporter renders inside our own axum router (one
//! port, the same access rules), its own listener switched off.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds from acceptance to the upstream's `250`: a message normally goes
/// out within seconds; deferrals push it to minutes or hours.
const LATENCY_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];

/// Seconds of one store commit (an fsync or two).
const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

pub const DELIVERY_LATENCY: &str = "hikyaku_delivery_latency_seconds";
pub const STORE_COMMIT: &str = "hikyaku_store_commit_seconds";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Account ids → names, for the `account` label (filled from the store).
static ACCOUNT_NAMES: OnceLock<RwLock<HashMap<i64, String>>> = OnceLock::new();

/// Installs the process-wide recorder once; `None` when another recorder
/// was installed first (then nothing is counted and `/metrics` says so).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DELIVERY_LATENCY.into()), LATENCY_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(STORE_COMMIT.into()), COMMIT_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// The text exposition of every metric, or `None` without a recorder.
pub fn render() -> Option<String> {
    let handle = install()?;
    // Histograms are drained into their buckets here: without the
    // exporter's own listener nothing else would do it.
    handle.run_upkeep();
    Some(handle.render())
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "hikyaku_intake_messages_total",
        "Messages the intake accepted (outcome=accepted) or refused (outcome=refused, with the reason)"
    );
    describe_counter!(
        "hikyaku_intake_connections_total",
        "SMTP connections the intake took"
    );
    describe_counter!(
        "hikyaku_intake_auth_failures_total",
        "Failed SMTP AUTH attempts"
    );
    describe_counter!(
        "hikyaku_deliveries_total",
        "Delivery attempts by account and outcome (sent, deferred, failed)"
    );
    describe_counter!(
        "hikyaku_upstream_replies_total",
        "Upstream SMTP replies by class (2xx, 4xx, 5xx; none: no reply, e.g. a network error)"
    );
    describe_counter!(
        "hikyaku_token_refreshes_total",
        "Token refreshes by account and outcome (ok, error)"
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "From the message's acceptance to the upstream's 250"
    );
    describe_histogram!(STORE_COMMIT, Unit::Seconds, "One commit of the store");
    describe_gauge!("hikyaku_jobs", "Jobs in the store by state");
    describe_gauge!(
        "hikyaku_queue_oldest_seconds",
        "Age of the oldest queued or deferred job (0 when none waits)"
    );
    describe_gauge!(
        "hikyaku_token_expiry_seconds",
        "Seconds until the account's access token expires (negative: expired)"
    );
    describe_gauge!(
        "hikyaku_credential_expiry_seconds",
        "Seconds until the account's app-only client secret or certificate expires"
    );
    describe_gauge!(
        "hikyaku_token_status",
        "1 for the account's current token status (not_registered, authorizing, active, error), 0 for the others"
    );
    describe_gauge!("hikyaku_store_bytes", "Size of the store on disk");
}

/// Remembers the accounts' names for the `account` label.
pub fn set_account_names(names: impl IntoIterator<Item = (i64, String)>) {
    let map = ACCOUNT_NAMES.get_or_init(Default::default);
    if let Ok(mut m) = map.write() {
        m.clear();
        m.extend(names);
    }
}

/// The `account` label of an account id: its name, else the id; `default`
/// for a job bound to no account.
pub fn account_label(id: Option<i64>) -> String {
    let Some(id) = id else {
        return "default".into();
    };
    ACCOUNT_NAMES
        .get()
        .and_then(|m| m.read().ok().and_then(|m| m.get(&id).cloned()))
        .unwrap_or_else(|| id.to_string())
}

/// The class of an SMTP reply code (`2xx`…), `none` without a reply.
pub fn reply_class(code: Option<u16>) -> &'static str {
    match code.map(|c| c / 100) {
        Some(2) => "2xx",
        Some(3) => "3xx",
        Some(4) => "4xx",
        Some(5) => "5xx",
        _ => "none",
    }
}

/// The intake took a connection.
pub fn intake_connection() {
    metrics::counter!("hikyaku_intake_connections_total").increment(1);
}

/// A failed SMTP AUTH attempt.
pub fn intake_auth_failure() {
    metrics::counter!("hikyaku_intake_auth_failures_total").increment(1);
}

/// A message accepted (stored) at intake.
pub fn intake_accepted() {
    metrics::counter!("hikyaku_intake_messages_total", "outcome" => "accepted").increment(1);
}

/// A message refused at intake, with a short stable reason (e.g. `size`,
/// `unroutable`, `store`).
pub fn intake_refused(reason: &'static str) {
    metrics::counter!("hikyaku_intake_messages_total", "outcome" => "refused", "reason" => reason)
        .increment(1);
}

/// One delivery attempt's outcome (`sent`, `deferred`, `failed`) through an
/// account.
pub fn delivery(account: Option<i64>, outcome: &'static str) {
    metrics::counter!("hikyaku_deliveries_total", "account" => account_label(account), "outcome" => outcome)
        .increment(1);
}

/// The upstream answered an attempt with `code` (`None`: no reply came).
pub fn upstream_reply(code: Option<u16>) {
    metrics::counter!("hikyaku_upstream_replies_total", "class" => reply_class(code)).increment(1);
}

/// A message reached the upstream `secs` seconds after it was accepted.
pub fn delivered_after(secs: i64) {
    metrics::histogram!(DELIVERY_LATENCY).record(secs.max(0) as f64);
}

/// A token refresh of an account ended.
pub fn token_refresh(account: i64, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("hikyaku_token_refreshes_total", "account" => account_label(Some(account)), "outcome" => outcome)
        .increment(1);
}

/// A store commit took `took`.
pub fn store_commit(took: Duration) {
    metrics::histogram!(STORE_COMMIT).record(took.as_secs_f64());
}

/// Sets a gauge with labels (scrape-time values).
pub fn set_gauge(name: &'static str, labels: &[(&'static str, String)], value: f64) {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, v.clone()))
        .collect();
    metrics::gauge!(name, labels).set(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_classes() {
        assert_eq!(reply_class(Some(250)), "2xx");
        assert_eq!(reply_class(Some(451)), "4xx");
        assert_eq!(reply_class(Some(550)), "5xx");
        assert_eq!(reply_class(None), "none");
    }

    #[test]
    fn unknown_accounts_are_labelled_by_id() {
        set_account_names([(1, "microsoft".to_string())]);
        assert_eq!(account_label(Some(1)), "microsoft");
        assert_eq!(account_label(Some(77)), "77");
        assert_eq!(account_label(None), "default");
    }
}
