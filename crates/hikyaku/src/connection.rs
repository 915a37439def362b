//! "Server Connection Status": one HTTPS GET against a provider endpoint (the
//! tenant's OpenID configuration, Google's discovery document) that tells the
//! administrator whether the device can reach the provider and, if not, which
//! layer failed — DNS, TCP, proxy, TLS (with the certificate reason), timeout or
//! HTTP — and how far this device's clock is from the provider's (protocols.md
//! §5: TLS validity and token expiry depend on the wall clock).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::i18n::Reason;
use crate::proxy::ProxySettings;
use crate::tls::{TlsPolicy, tls_reason};

/// How long one check may take in total.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// Clock difference tolerated before we warn (protocols.md §5: ±5 minutes).
pub const MAX_SKEW_SECS: i64 = 300;

/// Only this much of an error body is read, to look for a provider error code.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The status shown on the Remote UI, kept with the account in the store.
pub use crate::store::accounts::ConnectionStatus;

/// Which layer a failed check failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Dns,
    Connect,
    Tls,
    Timeout,
    Http,
    /// The provider said the tenant (or similar resource) does not exist.
    NotFound,
    Proxy,
}

/// Result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReport {
    pub status: ConnectionStatus,
    pub kind: Option<FailureKind>,
    /// Why the check failed.
    pub reason: Option<Reason>,
    /// Shown even on success, e.g. "certificate verification is off" or clock skew.
    pub warning: Option<Reason>,
    /// Server `Date` minus our clock, corrected by half the round trip.
    pub clock_skew_secs: Option<i64>,
    pub http_status: Option<u16>,
    #[serde(with = "rfc3339")]
    pub checked_at: OffsetDateTime,
}

impl ConnectionReport {
    /// The state before any check ran.
    pub fn not_checked(now: OffsetDateTime) -> Self {
        Self {
            status: ConnectionStatus::NotChecked,
            kind: None,
            reason: None,
            warning: None,
            clock_skew_secs: None,
            http_status: None,
            checked_at: now,
        }
    }
}

impl ConnectionReport {
    /// The report as it may be shown for a host that is not a plausible
    /// endpoint of the provider (an administrator may type any host into
    /// the endpoint field, so the check must not become a probe of the
    /// internal network): the certificate's problem without the names or
    /// dates it carries, one reason for "no HTTPS server answered" whatever
    /// the port did, one for "answered, but not as an endpoint" without its
    /// HTTP status. (Its clock difference stays: a device clock that is off
    /// is worth knowing, and the host did answer.) DNS, proxy and trust
    /// failures stay as they are: the administrator needs them to correct
    /// the setting.
    pub fn limited(mut self, url: &str) -> Self {
        let target = host_port(url);
        if let Some(reason) = self.reason.take() {
            let (kind, reason) = match reason.code.as_str() {
                "dns"
                | "tenant-not-found"
                | "proxy-auth"
                | "proxy-failed"
                | "text"
                | "tls-unknown-issuer"
                | "tls-expired"
                | "tls-not-yet-valid"
                | "tls-wrong-name-bare"
                | "tls-revoked"
                | "tls-bad-signature"
                | "tls-malformed"
                | "tls-critical-extension"
                | "tls-purpose"
                | "tls-no-certificate"
                | "tls-no-cn" => (self.kind, reason),
                code if code.starts_with("via-proxy-") => (self.kind, reason),
                "tls-wrong-name" => (
                    Some(FailureKind::Tls),
                    Reason::new("tls-name-unlisted").arg("target", &target),
                ),
                "tls-cn-mismatch" => (
                    Some(FailureKind::Tls),
                    Reason::new("tls-cn-mismatch-unlisted").arg("target", &target),
                ),
                "tls-expired-at" => (Some(FailureKind::Tls), Reason::new("tls-expired")),
                "tls-not-yet-valid-at" => {
                    (Some(FailureKind::Tls), Reason::new("tls-not-yet-valid"))
                }
                code if code.starts_with("http-") => (
                    Some(FailureKind::Http),
                    Reason::new("check-not-provider").arg("target", &target),
                ),
                _ => (
                    Some(FailureKind::Connect),
                    Reason::new("check-no-https-server").arg("target", &target),
                ),
            };
            self.kind = kind;
            self.reason = Some(reason);
        }
        self.http_status = None;
        self
    }

    /// For a Google account: an unknown issuer is fixed by an
    /// Administrator's CA only (a NetworkAdmin's CA does not anchor Google's
    /// connections), and the advice says so.
    pub fn with_google_trust_advice(mut self) -> Self {
        if let Some(r) = self
            .reason
            .as_mut()
            .filter(|r| r.code == "tls-unknown-issuer")
        {
            r.code = "tls-unknown-issuer-google".into();
        }
        self
    }
}

/// `time` is built without its serde feature; keep the wire format explicit.
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }
}

/// A warning when the clock is off by more than ±5 minutes.
pub fn skew_warning(skew_secs: i64) -> Option<Reason> {
    if skew_secs.abs() <= MAX_SKEW_SECS {
        return None;
    }
    let code = if skew_secs > 0 {
        "skew-behind"
    } else {
        "skew-ahead"
    };
    Some(Reason::new(code).arg("secs", skew_secs.abs()))
}

/// Check `url` with the outbound TLS policy and proxy; see [`check_with_timeout`].
pub async fn check(
    url: &str,
    policy: &TlsPolicy,
    proxy: Option<&ProxySettings>,
    now: impl Fn() -> OffsetDateTime,
) -> ConnectionReport {
    check_with_timeout(url, policy, proxy, CHECK_TIMEOUT, now).await
}

/// GET `url` and classify the outcome. `now` is the wall clock (injectable for
/// tests); the round trip is measured with the monotonic clock.
// Instant::now only measures this request's round trip (monotonic, never shown).
#[allow(clippy::disallowed_methods)]
pub async fn check_with_timeout(
    url: &str,
    policy: &TlsPolicy,
    proxy: Option<&ProxySettings>,
    timeout: Duration,
    now: impl Fn() -> OffsetDateTime,
) -> ConnectionReport {
    let sent_at = now();
    let mut report = ConnectionReport::not_checked(sent_at);
    let mut warnings = Vec::new();
    if !policy.verify {
        warnings.push(Reason::new("verify-off"));
    }

    let client = match crate::http::client_via(policy, proxy, timeout) {
        Ok(c) => c,
        Err(e) => {
            report.status = ConnectionStatus::Failed;
            report.kind = Some(FailureKind::Tls);
            report.reason = Some(Reason::text(e));
            report.warning = Reason::list(warnings);
            return report;
        }
    };

    let started = Instant::now();
    let result = client.get(url).send().await;
    let rtt = started.elapsed();

    match result {
        Err(err) => {
            let via = proxy.filter(|p| !bypassed(p, url));
            let (kind, reason) = match via.and_then(|p| proxy_failure(&err, p, url)) {
                Some(reason) => (FailureKind::Proxy, reason),
                None => classify(&err, url, timeout),
            };
            tracing::info!(url, kind = ?kind, %reason, "connection check failed");
            report.status = ConnectionStatus::Failed;
            report.kind = Some(kind);
            report.reason = Some(reason);
        }
        Ok(mut response) => {
            let status = response.status();
            report.http_status = Some(status.as_u16());
            report.clock_skew_secs = response
                .headers()
                .get(http::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| skew_from_date(v, sent_at, rtt));
            if status.is_success() {
                report.status = ConnectionStatus::Successful;
            } else {
                let body = read_limited(&mut response).await;
                let (kind, reason) = classify_status(status, &body);
                report.status = ConnectionStatus::Failed;
                report.kind = Some(kind);
                report.reason = Some(reason);
            }
        }
    }
    if let Some(w) = report.clock_skew_secs.and_then(skew_warning) {
        warnings.push(w);
    }
    report.warning = Reason::list(warnings);
    report
}

/// Server `Date` minus our estimate of the wall clock at the moment the server
/// produced it (send time + half the round trip). `Date` has second resolution
/// and is truncated, so its true value is on average half a second later.
fn skew_from_date(date: &str, sent_at: OffsetDateTime, rtt: Duration) -> Option<i64> {
    let server = OffsetDateTime::from(httpdate::parse_http_date(date).ok()?);
    let ours = sent_at + rtt / 2;
    let diff = (server - ours) + time::Duration::milliseconds(500);
    Some(diff.as_seconds_f64().round() as i64)
}

async fn read_limited(response: &mut reqwest::Response) -> String {
    let mut body = Vec::new();
    // A body read failure only loses detail for the reason text; ignore it.
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

fn classify_status(status: reqwest::StatusCode, body: &str) -> (FailureKind, Reason) {
    let code = status.as_u16();
    let text = status.canonical_reason().unwrap_or("");
    // Microsoft answers an unknown tenant ID/domain with 400 + AADSTS90002.
    if body.contains("AADSTS90002") {
        return (
            FailureKind::NotFound,
            Reason::new("tenant-not-found").arg("code", code),
        );
    }
    if code == 407 {
        return (FailureKind::Proxy, Reason::new("proxy-auth"));
    }
    let reason = match code {
        404 => Reason::new("http-404"),
        400..=499 => Reason::new("http-4xx"),
        500..=599 => Reason::new("http-5xx"),
        _ => Reason::new("http-other"),
    };
    let status = format!("{code} {text}");
    (FailureKind::Http, reason.arg("status", status.trim_end()))
}

/// The next error in the chain. `io::Error::source()` skips the error it wraps
/// (it returns the wrapped error's source), and hyper/tokio-rustls nest
/// `io::Error`s around the rustls error, so step into the wrapped error instead.
fn next_in_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    if let Some(inner) = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return Some(inner);
    }
    err.source()
}

/// Find a rustls error anywhere in the chain.
fn find_rustls<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        cur = next_in_chain(e);
    }
    None
}

fn find_io_kind(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        // Wrappers often say `Other`; the specific kind is further in.
        if let Some(io) = e
            .downcast_ref::<std::io::Error>()
            .filter(|io| io.kind() != std::io::ErrorKind::Other)
        {
            return Some(io.kind());
        }
        cur = next_in_chain(e);
    }
    None
}

fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.contains(&s) {
            parts.push(s);
        }
        cur = next_in_chain(e);
    }
    parts.join(": ")
}

fn host_port(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => url.to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

/// Whether `url`'s host is on the proxy's no-proxy list.
fn bypassed(proxy: &ProxySettings, url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| proxy.bypasses(h)))
        .unwrap_or(false)
}

/// Describes a failure of the proxy itself (unreachable, refused the tunnel,
/// wants credentials, closed), or `None` when the error happened beyond it.
/// reqwest reports these only as text ("tunnel error: …") from hyper-util, so
/// the chain's text is what there is to go by.
pub fn proxy_failure(
    err: &(dyn std::error::Error + 'static),
    proxy: &ProxySettings,
    url: &str,
) -> Option<Reason> {
    use std::io::ErrorKind as K;
    let text = chain_text(err).to_ascii_lowercase();
    if !text.contains("tunnel error") && !text.contains("proxy") {
        return None;
    }
    let address = proxy.address();
    let target = host_port(url);
    let reason = if text.contains("proxy authorization required") {
        let code = if proxy.username.is_some() {
            "via-proxy-credentials-refused"
        } else {
            "via-proxy-credentials-missing"
        };
        Reason::new(code).arg("proxy", &address)
    } else if text.contains("failed to create underlying connection") {
        match find_io_kind(err) {
            Some(K::ConnectionRefused) => Reason::new("via-proxy-refused").arg("proxy", &address),
            Some(K::TimedOut) => Reason::new("via-proxy-timeout").arg("proxy", &address),
            _ if text.contains("dns") || text.contains("resolve") || text.contains("lookup") => {
                Reason::new("via-proxy-dns").arg("host", &proxy.host)
            }
            _ => Reason::new("via-proxy-connect")
                .arg("proxy", &address)
                .arg("detail", &text),
        }
    } else if text.contains("unsuccessful") {
        Reason::new("via-proxy-forbidden")
            .arg("proxy", &address)
            .arg("target", &target)
    } else if text.contains("unexpected end of file") || text.contains("io error") {
        Reason::new("via-proxy-closed")
            .arg("proxy", &address)
            .arg("target", &target)
    } else {
        Reason::new("via-proxy-other")
            .arg("proxy", &address)
            .arg("target", &target)
            .arg("detail", &text)
    };
    Some(reason)
}

fn classify(err: &reqwest::Error, url: &str, timeout: Duration) -> (FailureKind, Reason) {
    use std::io::ErrorKind as K;
    let target = host_port(url);
    if let Some(tls) = find_rustls(err) {
        return (FailureKind::Tls, tls_reason(tls));
    }
    if err.is_timeout() {
        return (
            FailureKind::Timeout,
            Reason::new("no-answer")
                .arg("target", &target)
                .arg("secs", timeout.as_secs()),
        );
    }
    if err.is_dns() {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| url.to_owned());
        return (FailureKind::Dns, Reason::new("dns").arg("host", host));
    }
    let text = chain_text(err);
    let lower = text.to_ascii_lowercase();
    if lower.contains("proxy") || lower.contains("tunnel") {
        return (
            FailureKind::Proxy,
            Reason::new("proxy-failed").arg("detail", &text),
        );
    }
    match find_io_kind(err) {
        Some(K::ConnectionRefused) => (
            FailureKind::Connect,
            Reason::new("refused").arg("target", &target),
        ),
        Some(K::HostUnreachable | K::NetworkUnreachable) => (
            FailureKind::Connect,
            Reason::new("unreachable").arg("target", &target),
        ),
        Some(K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof) => (
            FailureKind::Connect,
            Reason::new("closed").arg("target", &target),
        ),
        Some(K::TimedOut) => (
            FailureKind::Timeout,
            Reason::new("connect-timeout").arg("target", &target),
        ),
        _ if err.is_connect() => (
            FailureKind::Connect,
            Reason::new("connect-failed")
                .arg("target", &target)
                .arg("detail", &text),
        ),
        _ if err.is_builder() => (
            FailureKind::Http,
            Reason::new("url-unusable")
                .arg("url", url)
                .arg("detail", &text),
        ),
        _ => (
            FailureKind::Http,
            Reason::new("request-failed")
                .arg("target", &target)
                .arg("detail", &text),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests compare against the real clock
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::tls::testutil::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    async fn serve(ca: &TestCa, cn: &str, response: String) -> String {
        let leaf = ca.leaf(&["localhost"], cn, None);
        let addr = https_server(server_config_for(&leaf), response).await;
        format!(
            "https://localhost:{}/common/v2.0/.well-known/openid-configuration",
            addr.port()
        )
    }

    fn trusting(ca: &TestCa) -> TlsPolicy {
        TlsPolicy {
            extra_cas: vec![ca.der()],
            ..TlsPolicy::default()
        }
    }

    fn ok() -> String {
        http_response("200 OK", "", "{}")
    }

    #[tokio::test]
    async fn trusted_with_extra_ca_only() {
        let ca = TestCa::new("Test CA");
        let url = serve(&ca, "localhost", ok()).await;
        let r = check(&url, &trusting(&ca), None, now).await;
        assert_eq!(r.status, ConnectionStatus::Successful, "{r:?}");
        assert_eq!(r.http_status, Some(200));
        assert_eq!(r.warning, None);

        let r = check(&url, &TlsPolicy::default(), None, now).await;
        assert_eq!(r.status, ConnectionStatus::Failed);
        assert_eq!(r.kind, Some(FailureKind::Tls));
        assert!(r.reason.unwrap().to_string().contains("unknown issuer"));
    }

    #[tokio::test]
    async fn cn_check() {
        let ca = TestCa::new("Test CA");
        let url = serve(&ca, "other.example", ok()).await;
        let r = check(&url, &trusting(&ca), None, now).await;
        assert_eq!(r.status, ConnectionStatus::Successful, "{r:?}");
        let strict = TlsPolicy {
            verify_cn: true,
            ..trusting(&ca)
        };
        let r = check(&url, &strict, None, now).await;
        assert_eq!(r.status, ConnectionStatus::Failed);
        assert_eq!(r.kind, Some(FailureKind::Tls));
        let reason = r.reason.unwrap().to_string();
        assert!(
            reason.contains("certificate subject CN 'other.example' does not match host 'localhost' (Add CN to Verification Items is on)"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn verify_off_succeeds_with_warning() {
        let ca = TestCa::new("Unknown CA");
        let url = serve(&ca, "other.example", ok()).await;
        let policy = TlsPolicy {
            verify: false,
            ..TlsPolicy::default()
        };
        let r = check(&url, &policy, None, now).await;
        assert_eq!(r.status, ConnectionStatus::Successful, "{r:?}");
        assert!(
            r.warning
                .unwrap()
                .to_string()
                .contains("certificate verification is off")
        );
    }

    #[tokio::test]
    async fn expired_leaf_fails_tls() {
        let ca = TestCa::new("Test CA");
        let n = now();
        let leaf = ca.leaf(
            &["localhost"],
            "localhost",
            Some((n - time::Duration::days(10), n - time::Duration::days(1))),
        );
        let addr = https_server(server_config_for(&leaf), ok()).await;
        let r = check(
            &format!("https://localhost:{}/", addr.port()),
            &trusting(&ca),
            None,
            now,
        )
        .await;
        assert_eq!(r.kind, Some(FailureKind::Tls));
        assert!(r.reason.unwrap().to_string().contains("expired"));
    }

    #[tokio::test]
    async fn connection_refused() {
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let r = check(
            &format!("https://127.0.0.1:{port}/"),
            &TlsPolicy::default(),
            None,
            now,
        )
        .await;
        assert_eq!(r.status, ConnectionStatus::Failed);
        assert_eq!(r.kind, Some(FailureKind::Connect), "{r:?}");
        assert!(r.reason.unwrap().to_string().contains("refused"));
    }

    #[tokio::test]
    async fn dns_failure() {
        let r = check(
            "https://login.hikyaku-test.invalid/x",
            &TlsPolicy::default(),
            None,
            now,
        )
        .await;
        assert_eq!(r.kind, Some(FailureKind::Dns), "{r:?}");
        assert!(
            r.reason
                .unwrap()
                .to_string()
                .contains("login.hikyaku-test.invalid")
        );
    }

    #[tokio::test]
    async fn timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accept and hold the connection without ever answering the handshake.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let r = check_with_timeout(
            &format!("https://127.0.0.1:{}/", addr.port()),
            &TlsPolicy::default(),
            None,
            Duration::from_millis(500),
            now,
        )
        .await;
        assert_eq!(r.kind, Some(FailureKind::Timeout), "{r:?}");
    }

    #[tokio::test]
    async fn plain_http_port_is_a_tls_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"220 smtp.example ESMTP ready\r\n").await;
            }
        });
        let r = check(
            &format!("https://127.0.0.1:{}/", addr.port()),
            &TlsPolicy::default(),
            None,
            now,
        )
        .await;
        assert_eq!(r.kind, Some(FailureKind::Tls), "{r:?}");
    }

    #[tokio::test]
    async fn http_errors() {
        let ca = TestCa::new("Test CA");
        let url = serve(&ca, "localhost", http_response("404 Not Found", "", "nope")).await;
        let r = check(&url, &trusting(&ca), None, now).await;
        assert_eq!(r.kind, Some(FailureKind::Http));
        assert_eq!(r.http_status, Some(404));
        assert!(r.reason.unwrap().to_string().contains("404"));

        let body = r#"{"error":"invalid_tenant","error_description":"AADSTS90002: Tenant 'nope' not found."}"#;
        let url = serve(&ca, "localhost", http_response("400 Bad Request", "", body)).await;
        let r = check(&url, &trusting(&ca), None, now).await;
        assert_eq!(r.kind, Some(FailureKind::NotFound));
        assert_eq!(r.http_status, Some(400));
        assert!(r.reason.unwrap().to_string().contains("tenant not found"));
    }

    #[tokio::test]
    async fn clock_skew_from_date_header() {
        let ca = TestCa::new("Test CA");
        let ahead = std::time::SystemTime::now() + Duration::from_secs(600);
        let header = format!("Date: {}\r\n", httpdate::fmt_http_date(ahead));
        let url = serve(&ca, "localhost", http_response("200 OK", &header, "{}")).await;
        let r = check(&url, &trusting(&ca), None, now).await;
        assert_eq!(r.status, ConnectionStatus::Successful);
        let skew = r.clock_skew_secs.unwrap();
        assert!((598..=602).contains(&skew), "{skew}");
        assert!(r.warning.unwrap().to_string().contains("behind the server"));

        // In sync: no warning.
        let header = format!(
            "Date: {}\r\n",
            httpdate::fmt_http_date(std::time::SystemTime::now())
        );
        let url = serve(&ca, "localhost", http_response("200 OK", &header, "{}")).await;
        let r = check(&url, &trusting(&ca), None, now).await;
        assert!(r.clock_skew_secs.unwrap().abs() <= 2);
        assert_eq!(r.warning, None);
    }

    /// A proxy that answers every CONNECT with `reply` (empty: closes at once).
    async fn fake_proxy(reply: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        port
    }

    fn proxy_at(port: u16, username: Option<&str>) -> ProxySettings {
        ProxySettings {
            host: "127.0.0.1".into(),
            port,
            username: username.map(str::to_owned),
            password: username.map(|_| "pw".to_owned()),
            no_proxy: vec!["127.0.0.2".into()],
        }
    }

    #[tokio::test]
    async fn proxy_failures_are_named_as_such() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let p407 =
            fake_proxy("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                .await;
        let p403 = fake_proxy("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").await;
        let closes = fake_proxy("").await;
        for (proxy, needle) in [
            (proxy_at(dead, None), "refused the connection"),
            (proxy_at(p407, None), "asked for credentials (HTTP 407)"),
            (
                proxy_at(p407, Some("alice")),
                "refused the credentials (HTTP 407)",
            ),
            (
                proxy_at(p403, None),
                "refused to open a connection to login.example:443",
            ),
            (proxy_at(closes, None), "closed the connection"),
        ] {
            let r = check(
                "https://login.example/x",
                &TlsPolicy::default(),
                Some(&proxy),
                now,
            )
            .await;
            assert_eq!(r.kind, Some(FailureKind::Proxy), "{needle}: {r:?}");
            let reason = r.reason.unwrap().to_string();
            assert!(
                reason.contains(needle) && reason.contains(&proxy.address()),
                "{needle}: {reason}"
            );
            assert!(!reason.contains("pw"), "{reason}");
        }
        // A host on the no-proxy list is reached directly: its failure is its own.
        let r = check(
            &format!("https://127.0.0.2:{dead}/"),
            &TlsPolicy::default(),
            Some(&proxy_at(p407, None)),
            now,
        )
        .await;
        assert_eq!(r.kind, Some(FailureKind::Connect), "{r:?}");
    }

    /// A host that is no provider's endpoint: its certificate's names, its
    /// clock and what its ports do are not told.
    #[tokio::test]
    async fn an_unknown_host_is_not_described_beyond_what_the_setting_needs() {
        let ca = TestCa::new("Internal CA");
        let leaf = ca.leaf(
            &["intranet.corp.example", "db.corp.example"],
            "intranet.corp.example",
            None,
        );
        let addr = https_server(server_config_for(&leaf), ok()).await;
        let url = format!(
            "https://localhost:{}/common/v2.0/.well-known/openid-configuration",
            addr.port()
        );
        let full = check(&url, &trusting(&ca), None, now).await;
        assert!(
            full.reason
                .clone()
                .unwrap()
                .to_string()
                .contains("intranet.corp.example")
        );
        let limited = full.limited(&url);
        let text = limited.reason.clone().unwrap().to_string();
        assert_eq!(limited.kind, Some(FailureKind::Tls));
        assert!(
            text.contains("not valid for") && text.contains("localhost"),
            "{text}"
        );
        assert!(!text.contains("corp.example"), "{text}");

        // The CN of Add CN is not echoed either.
        let url = serve(&ca, "secret-cn.corp.example", ok()).await;
        let strict = TlsPolicy {
            verify_cn: true,
            ..trusting(&ca)
        };
        let r = check(&url, &strict, None, now).await.limited(&url);
        let text = r.reason.unwrap().to_string();
        assert!(!text.contains("secret-cn"), "{text}");

        // A closed port, a plain-text port and an HTTP error read alike
        // apart from "answered": the port's behaviour is not told.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_port = plain.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = plain.accept().await {
                let _ = s.write_all(b"220 internal ESMTP\r\n").await;
            }
        });
        let mut texts = Vec::new();
        for port in [closed, plain_port] {
            let url = format!("https://127.0.0.1:{port}/x");
            let r = check(&url, &TlsPolicy::default(), None, now)
                .await
                .limited(&url);
            assert_eq!(r.kind, Some(FailureKind::Connect), "{r:?}");
            let text = r.reason.unwrap().to_string();
            assert!(
                !text.contains("ESMTP") && !text.contains("refused"),
                "{text}"
            );
            texts.push(text.replace(&port.to_string(), "PORT"));
        }
        assert_eq!(texts[0], texts[1]);
        let header = format!(
            "Date: {}\r\n",
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600))
        );
        let url = serve(
            &ca,
            "localhost",
            http_response("500 Internal Server Error", &header, "db down"),
        )
        .await;
        let r = check(&url, &trusting(&ca), None, now).await.limited(&url);
        assert_eq!(r.http_status, None);
        let text = r.reason.unwrap().to_string();
        assert!(!text.contains("500") && !text.contains("db down"), "{text}");
    }

    #[test]
    fn google_unknown_issuer_names_the_administrator() {
        let mut r = ConnectionReport::not_checked(OffsetDateTime::UNIX_EPOCH);
        r.reason = Some(Reason::new("tls-unknown-issuer"));
        let text = r.with_google_trust_advice().reason.unwrap().to_string();
        assert!(text.contains("Administrator"), "{text}");
        assert!(text.contains("NetworkAdmin"), "{text}");
    }

    #[test]
    fn skew_warning_threshold() {
        assert_eq!(skew_warning(0), None);
        assert_eq!(skew_warning(300), None);
        assert_eq!(skew_warning(-300), None);
        assert!(skew_warning(301).unwrap().to_string().contains("behind"));
        assert!(skew_warning(-900).unwrap().to_string().contains("ahead of"));
    }

    #[test]
    fn serde_names() {
        assert_eq!(
            serde_json::to_string(&ConnectionStatus::NotChecked).unwrap(),
            "\"not_checked\""
        );
        assert_eq!(
            serde_json::to_string(&FailureKind::NotFound).unwrap(),
            "\"not_found\""
        );
        let r = ConnectionReport::not_checked(OffsetDateTime::UNIX_EPOCH);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("1970-01-01T00:00:00Z"), "{json}");
        assert_eq!(serde_json::from_str::<ConnectionReport>(&json).unwrap(), r);
    }
}
