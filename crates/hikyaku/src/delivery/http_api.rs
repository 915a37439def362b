//! The HTTP transports (protocols.md §10): Microsoft Graph `sendMail` with
//! the message as base64 MIME, and the Gmail API `messages.send` (simple
//! upload up to 5 MB, resumable above, at most 35 MiB).
//!
//! Both APIs deliver to the header addresses, not to an envelope. hikyaku
//! delivers exactly the envelope's recipients: envelope-only recipients are
//! added as a `Bcc:` field (which the providers leave out of the delivered
//! copies); a header recipient outside the envelope fails the job, so that
//! nobody the sender did not address receives it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use tokio::sync::Semaphore;

use super::attempt::{Attempt, Via};
use super::graph_upload;
use super::*;
use crate::proxy::ProxySettings;
use crate::store::accounts::Transport;

/// Largest Graph request: 4 MB of base64 (about 3 MB of message).
pub const GRAPH_MAX_REQUEST: usize = 4 * 1024 * 1024;
/// Largest Gmail simple upload; above it the resumable upload is used.
pub const GMAIL_SIMPLE_MAX: usize = 5 * 1024 * 1024;
/// Largest message the Gmail API takes.
pub const GMAIL_MAX: usize = 35 * 1024 * 1024;
/// Concurrent Graph requests per mailbox (Graph's limit: 4).
const PER_MAILBOX: usize = 4;
/// A whole request, upload included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest provider text kept in a job's reply.
const MESSAGE_MAX: usize = 400;

/// Clients (kept for connection reuse), waits the provider asked for, and
/// the per-mailbox request slots.
#[derive(Default)]
pub(super) struct HttpState {
    clients: Mutex<Vec<(u64, Option<ProxySettings>, reqwest::Client)>>,
    /// Account id → when its provider lets it send again (`Retry-After`).
    paused: Mutex<HashMap<i64, Instant>>,
    slots: Mutex<HashMap<i64, Arc<Semaphore>>>,
}

impl HttpState {
    fn client(
        &self,
        tls_id: u64,
        policy: &crate::tls::TlsPolicy,
        proxy: Option<ProxySettings>,
    ) -> Result<reqwest::Client, String> {
        let mut clients = self.clients.lock().map_err(|e| e.to_string())?;
        if let Some((_, _, c)) = clients
            .iter()
            .find(|(id, p, _)| *id == tls_id && *p == proxy)
        {
            return Ok(c.clone());
        }
        let c = crate::http::client_via(policy, proxy.as_ref(), REQUEST_TIMEOUT)
            .map_err(|e| e.to_string())?;
        clients.push((tls_id, proxy, c.clone()));
        Ok(c)
    }

    fn paused_for(&self, account: i64) -> Option<Duration> {
        let paused = self.paused.lock().ok()?;
        paused
            .get(&account)
            .and_then(|until| until.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    fn pause(&self, account: i64, wait: Duration) {
        if let Ok(mut paused) = self.paused.lock() {
            let until = Instant::now() + wait;
            let entry = paused.entry(account).or_insert(until);
            *entry = (*entry).max(until);
        }
    }

    fn slots(&self, account: i64) -> Arc<Semaphore> {
        match self.slots.lock() {
            Ok(mut s) => s
                .entry(account)
                .or_insert_with(|| Arc::new(Semaphore::new(PER_MAILBOX)))
                .clone(),
            Err(_) => Arc::new(Semaphore::new(PER_MAILBOX)),
        }
    }
}

/// Reasons of the HTTP transports (Fluent `reason-job-http-…`).
mod reasons {
    use crate::i18n::Reason;

    pub fn header_only(list: &str) -> Reason {
        Reason::new("job-http-header-only").arg("list", list)
    }
    pub fn too_large(api: &str, size: usize, max: usize) -> Reason {
        Reason::new("job-http-too-large")
            .arg("api", api)
            .arg("size", size)
            .arg("max", max)
    }
    pub fn throttled(api: &str, status: u16, secs: u64) -> Reason {
        Reason::new("job-http-throttled")
            .arg("api", api)
            .arg("status", status)
            .arg("secs", secs)
    }
    pub fn forbidden(api: &str, message: &str, grant: &str) -> Reason {
        Reason::new("job-http-forbidden")
            .arg("api", api)
            .arg("message", message)
            .arg("grant", grant)
    }
    pub fn refused(api: &str, message: &str) -> Reason {
        Reason::new("job-http-refused")
            .arg("api", api)
            .arg("message", message)
    }
    pub fn failed(api: &str, detail: &str) -> Reason {
        Reason::new("job-http-failed")
            .arg("api", api)
            .arg("detail", detail)
    }
    pub fn text_too_large(api: &str, size: usize) -> Reason {
        Reason::new("job-http-text-too-large")
            .arg("api", api)
            .arg("size", size)
    }
    pub fn unparsable(api: &str) -> Reason {
        Reason::new("job-http-unparsable").arg("api", api)
    }
    pub fn token_refused(api: &str, message: &str) -> Reason {
        Reason::new("job-http-token-refused")
            .arg("api", api)
            .arg("message", message)
    }
}

/// The addresses of the To, Cc and Bcc fields, in lower case.
pub fn header_recipients(message: &[u8]) -> Vec<String> {
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(message) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for list in [parsed.to(), parsed.cc(), parsed.bcc()]
        .into_iter()
        .flatten()
    {
        for addr in list.iter() {
            if let Some(a) = addr.address() {
                out.push(a.trim().to_ascii_lowercase());
            }
        }
    }
    out
}

/// The message to hand to an API that delivers to its header addresses, so
/// that exactly `envelope` receives it: envelope-only recipients are added
/// as a `Bcc:` field. `Err` lists the header recipients outside the
/// envelope (the message must not go out this way).
pub fn for_header_delivery(message: &[u8], envelope: &[String]) -> Result<Vec<u8>, Vec<String>> {
    let headers = header_recipients(message);
    let envelope_lc: Vec<String> = envelope
        .iter()
        .map(|r| r.trim().to_ascii_lowercase())
        .collect();
    let mut outside: Vec<String> = headers
        .iter()
        .filter(|h| !envelope_lc.contains(h))
        .cloned()
        .collect();
    outside.dedup();
    if !outside.is_empty() {
        return Err(outside);
    }
    let known: HashSet<&String> = headers.iter().collect();
    let mut missing: Vec<&str> = Vec::new();
    for (r, lc) in envelope.iter().zip(&envelope_lc) {
        if !known.contains(lc) && !missing.iter().any(|m| m.eq_ignore_ascii_case(r)) {
            missing.push(r.trim());
        }
    }
    if missing.is_empty() {
        return Ok(message.to_vec());
    }
    let mut out = Vec::with_capacity(message.len() + 64);
    out.extend_from_slice(b"Bcc: ");
    out.extend_from_slice(missing.join(",\r\n ").as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(message);
    Ok(out)
}

/// `Retry-After` in seconds (a number or an HTTP date).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(n) = v.parse::<u64>() {
        return Some(n);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    #[allow(clippy::disallowed_methods)] // compared with the provider's clock
    let now = std::time::SystemTime::now();
    Some(at.duration_since(now).map(|d| d.as_secs()).unwrap_or(0))
}

/// The provider's error code and message from a JSON error body (Graph:
/// `error.code`; Gmail: `error.errors[0].reason`), else the body's start.
fn provider_message(status: u16, body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            let code = e
                .get("code")
                .and_then(|c| c.as_str().map(str::to_owned))
                .or_else(|| {
                    e.pointer("/errors/0/reason")
                        .and_then(|r| r.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
            Some(
                format!("{code}: {message}")
                    .trim_matches([' ', ':'])
                    .to_owned(),
            )
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let mut text: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MESSAGE_MAX)
        .collect();
    if text.is_empty() {
        text = "(no message)".to_owned();
    }
    format!("HTTP {status} {text}")
}

/// An error with its sources (URLs and reasons only, never bodies).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// One HTTP exchange's result.
pub(super) enum Reply {
    Ok {
        status: u16,
        id: Option<String>,
    },
    Status {
        status: u16,
        retry_after: Option<u64>,
        message: String,
    },
}

fn api_name(t: Transport) -> &'static str {
    match t {
        Transport::Graph => "Microsoft Graph",
        _ => "Gmail API",
    }
}

pub(super) fn percent(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Delivery {
    /// One attempt over an HTTP transport, the token already fetched.
    pub(super) async fn attempt_http(
        &self,
        job: &Job,
        a: &Account,
        mut token: AccessToken,
        body: Bytes,
        envelope_from: &str,
        rewrite: bool,
    ) -> Attempt {
        let inner = &self.inner;
        let api = api_name(a.transport);
        let via = || Via {
            id: a.id,
            mailbox: token_mailbox(a, job),
        };
        if let Some(wait) = inner.http.paused_for(a.id) {
            let secs = wait.as_secs() + 1;
            return Attempt::RateLimited {
                wait_secs: i64::try_from(secs).unwrap_or(60),
                reply: reasons::throttled(api, 429, secs),
            };
        }
        let data = rewrite_from(&body, envelope_from, rewrite);
        let message = match for_header_delivery(&data, &job.rcpt_to) {
            Ok(m) => m,
            Err(outside) => {
                return Attempt::Permanent {
                    reply: reasons::header_only(&outside.join(", ")),
                    code: ReplyCode::new(550),
                    failed: Vec::new(),
                    account: Some(via()),
                };
            }
        };
        let max = a.max_message_size().unwrap_or(GMAIL_MAX);
        if message.len() > max {
            return Attempt::Permanent {
                reply: reasons::too_large(api, message.len(), max),
                code: ReplyCode::new(552),
                failed: Vec::new(),
                account: Some(via()),
            };
        }
        let policy = inner.tokens.tls_policy(a);
        let client = match crate::tls::client_config_with_id(&policy)
            .map_err(|e| e.to_string())
            .and_then(|(id, _)| {
                inner
                    .http
                    .client(id, &policy, inner.tokens.proxy_settings())
            }) {
            Ok(c) => c,
            Err(e) => {
                return Attempt::Temporary {
                    reply: replies::tls_setup(e),
                    code: None,
                };
            }
        };
        let slots = inner.http.slots(a.id);
        let Ok(_slot) = slots.acquire_owned().await else {
            return Attempt::Temporary {
                reply: reasons::failed(api, "closed"),
                code: None,
            };
        };
        // On PostgreSQL the mailbox's request cap holds for the whole cluster.
        let cap = u32::try_from(PER_MAILBOX).unwrap_or(4);
        let _cluster = match inner.limits.connection(a.id, cap, CONNECTION_WAIT).await {
            Ok(slot) => slot,
            Err(super::limits::Refused::Wait(_)) => {
                return Attempt::RateLimited {
                    wait_secs: 5,
                    reply: replies::busy(cap),
                };
            }
            Err(super::limits::Refused::Store(e)) => {
                return Attempt::Temporary {
                    reply: replies::store(e),
                    code: None,
                };
            }
        };
        let base = format!("https://{}", a.effective_graph_host());
        let large = a.transport == Transport::Graph && !graph_upload::fits_one_request(&message);
        let mut refreshed = false;
        loop {
            let sent = match a.transport {
                Transport::Graph if graph_upload::fits_one_request(&message) => {
                    graph_send(&client, &base, &token, &message).await
                }
                Transport::Graph => {
                    match graph_upload::send_large(&client, &base, &token, &message, &job.rcpt_to)
                        .await
                    {
                        Ok(Ok(r)) => Ok(r),
                        Ok(Err(e)) => {
                            let reason = match e {
                                graph_upload::SplitError::TextTooLarge(n) => {
                                    reasons::text_too_large(api, n)
                                }
                                graph_upload::SplitError::Unparsable => reasons::unparsable(api),
                            };
                            return Attempt::Permanent {
                                reply: reason,
                                code: ReplyCode::new(552),
                                failed: Vec::new(),
                                account: Some(via()),
                            };
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => gmail_send(&client, &base, &token, &message).await,
            };
            let reply = match sent {
                Ok(r) => r,
                Err(e) => {
                    let detail = inner
                        .tokens
                        .proxy_settings()
                        .as_ref()
                        .and_then(|p| crate::connection::proxy_failure(&e, p, &base))
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| chain(&e));
                    return Attempt::Temporary {
                        reply: reasons::failed(api, &detail),
                        code: None,
                    };
                }
            };
            return match reply {
                Reply::Ok { status, id } => {
                    let id = id.map_or_else(String::new, |id| format!(" id={id}"));
                    tracing::info!(job_id = %job.id, account = a.id, transport = a.transport.as_str(), status, "accepted over HTTP");
                    Attempt::Sent {
                        reply: format!("{status} {api} accepted{id}"),
                        refused: Vec::new(),
                        via: Via {
                            id: a.id,
                            mailbox: token.mailbox.clone(),
                        },
                        lease: None,
                        original: None,
                    }
                }
                Reply::Status {
                    status: 401,
                    message,
                    ..
                } if !refreshed => {
                    refreshed = true;
                    tracing::info!(job_id = %job.id, account = a.id, "the API refused the access token; refreshing once");
                    if let Err(te) = inner.tokens.refresh_refused(a.id, &token.token).await {
                        return self.token_failure(a, &te, Some(&message)).await;
                    }
                    match inner.tokens.access_token(a.id).await {
                        Ok(t) => {
                            token = t;
                            continue;
                        }
                        Err(te) => return self.token_failure(a, &te, Some(&message)).await,
                    }
                }
                Reply::Status {
                    status: 401,
                    message,
                    ..
                } => Attempt::Temporary {
                    reply: reasons::token_refused(api, &message),
                    code: None,
                },
                Reply::Status {
                    status: status @ (429 | 503 | 504),
                    retry_after,
                    ..
                } => {
                    // The wait is the mailbox's: every job of the account
                    // waits with it.
                    let secs = retry_after.unwrap_or(60).clamp(1, 24 * 3600);
                    inner.http.pause(a.id, Duration::from_secs(secs));
                    tracing::info!(job_id = %job.id, account = a.id, status, secs, "the API asked to wait");
                    Attempt::RateLimited {
                        // A second more: the queue counts whole seconds.
                        wait_secs: i64::try_from(secs + 1).unwrap_or(60),
                        reply: reasons::throttled(api, status, secs),
                    }
                }
                Reply::Status {
                    status: 403,
                    message,
                    ..
                } if message.contains("rateLimitExceeded")
                    || message.contains("userRateLimitExceeded") =>
                {
                    inner.http.pause(a.id, Duration::from_secs(60));
                    Attempt::RateLimited {
                        wait_secs: 61,
                        reply: reasons::throttled(api, 403, 60),
                    }
                }
                Reply::Status {
                    status: 403,
                    message,
                    ..
                } => {
                    let grant = match (a.transport, a.credential_kind.is_app_only()) {
                        (Transport::Graph, false) if large => {
                            "Mail.ReadWrite (delegated; messages over 3 MB go through a draft: consent to it, then authorize the account again)"
                        }
                        (Transport::Graph, false) => "Mail.Send (delegated)",
                        (Transport::Graph, true) if large => {
                            "Mail.Send and Mail.ReadWrite (application; messages over 3 MB go through a draft), and the mailbox in the app's RBAC for Applications scope"
                        }
                        (Transport::Graph, true) => {
                            "Mail.Send (application), and the mailbox in the app's RBAC for Applications scope"
                        }
                        (_, false) => "https://www.googleapis.com/auth/gmail.send",
                        (_, true) => {
                            "https://www.googleapis.com/auth/gmail.send (domain-wide delegation)"
                        }
                    };
                    Attempt::Waiting {
                        reason: replies::waiting(
                            match a.provider {
                                Provider::Microsoft => "Microsoft",
                                Provider::Google => "Google",
                            },
                            &a.name,
                            reasons::forbidden(api, &message, grant),
                        ),
                    }
                }
                Reply::Status {
                    status, message, ..
                } if status >= 500 || status == 408 => Attempt::Temporary {
                    reply: reasons::failed(api, &message),
                    code: None,
                },
                Reply::Status {
                    status, message, ..
                } => Attempt::Permanent {
                    reply: reasons::refused(api, &message),
                    code: ReplyCode::new(if status == 413 { 552 } else { 554 }),
                    failed: Vec::new(),
                    account: Some(Via {
                        id: a.id,
                        mailbox: token.mailbox.clone(),
                    }),
                },
            };
        }
    }
}

/// The mailbox a job goes out as, before a token names it.
fn token_mailbox(a: &Account, job: &Job) -> String {
    a.mailbox.clone().unwrap_or_else(|| job.mail_from.clone())
}

pub(super) async fn read_reply(
    resp: reqwest::Response,
    id_field: Option<&str>,
) -> Result<Reply, reqwest::Error> {
    let status = resp.status().as_u16();
    let retry = retry_after(resp.headers());
    let request_id = resp
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.bytes().await?;
    if (200..300).contains(&status) {
        let id = id_field
            .and_then(|f| {
                serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()?
                    .get(f)?
                    .as_str()
                    .map(str::to_owned)
            })
            .or(request_id);
        return Ok(Reply::Ok { status, id });
    }
    Ok(Reply::Status {
        status,
        retry_after: retry,
        message: provider_message(status, &body),
    })
}

async fn graph_send(
    client: &reqwest::Client,
    base: &str,
    token: &AccessToken,
    message: &[u8],
) -> Result<Reply, reqwest::Error> {
    let url = format!("{base}/v1.0/users/{}/sendMail", percent(&token.mailbox));
    let encoded = base64::engine::general_purpose::STANDARD.encode(message);
    let resp = client
        .post(url)
        .bearer_auth(&token.token)
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(encoded)
        .send()
        .await?;
    read_reply(resp, None).await
}

async fn gmail_send(
    client: &reqwest::Client,
    base: &str,
    token: &AccessToken,
    message: &[u8],
) -> Result<Reply, reqwest::Error> {
    let url = format!(
        "{base}/upload/gmail/v1/users/{}/messages/send",
        percent(&token.mailbox)
    );
    if message.len() <= GMAIL_SIMPLE_MAX {
        let resp = client
            .post(format!("{url}?uploadType=media"))
            .bearer_auth(&token.token)
            .header(reqwest::header::CONTENT_TYPE, "message/rfc822")
            .body(message.to_vec())
            .send()
            .await?;
        return read_reply(resp, Some("id")).await;
    }
    // Resumable: a session first, then the message in one PUT.
    let resp = client
        .post(format!("{url}?uploadType=resumable"))
        .bearer_auth(&token.token)
        .header("X-Upload-Content-Type", "message/rfc822")
        .header("X-Upload-Content-Length", message.len().to_string())
        .header(reqwest::header::CONTENT_LENGTH, "0")
        .send()
        .await?;
    if !resp.status().is_success() {
        return read_reply(resp, None).await;
    }
    let Some(location) = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        // The session must stay on the API's host: the token goes with it.
        .filter(|l| l.starts_with(&format!("{base}/")))
    else {
        return Ok(Reply::Status {
            status: 502,
            retry_after: None,
            message: "HTTP 502 the resumable upload session has no usable Location".to_owned(),
        });
    };
    let resp = client
        .put(location)
        .bearer_auth(&token.token)
        .header(reqwest::header::CONTENT_TYPE, "message/rfc822")
        .body(message.to_vec())
        .send()
        .await?;
    read_reply(resp, Some("id")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_only_recipients_become_bcc_and_header_only_ones_are_refused() {
        let m = b"From: a@x.example\r\nTo: B@y.example\r\nCc: c@y.example\r\nSubject: s\r\n\r\nbody\r\n";
        let out = for_header_delivery(
            m,
            &[
                "b@y.example".into(),
                "c@y.example".into(),
                "d@z.example".into(),
            ],
        )
        .unwrap();
        assert!(out.starts_with(b"Bcc: d@z.example\r\nFrom:"));
        let refused = for_header_delivery(m, &["b@y.example".into()]).unwrap_err();
        assert_eq!(refused, vec!["c@y.example".to_string()]);
        let same = for_header_delivery(m, &["b@y.example".into(), "c@y.example".into()]).unwrap();
        assert_eq!(same, m.to_vec());
    }

    #[test]
    fn provider_errors_are_read_from_both_shapes() {
        let graph = br#"{"error":{"code":"ErrorAccessDenied","message":"Access is denied."}}"#;
        assert_eq!(
            provider_message(403, graph),
            "HTTP 403 ErrorAccessDenied: Access is denied."
        );
        let gmail = br#"{"error":{"code":403,"message":"Insufficient Permission","errors":[{"reason":"insufficientPermissions"}]}}"#;
        assert_eq!(
            provider_message(403, gmail),
            "HTTP 403 insufficientPermissions: Insufficient Permission"
        );
    }
}
