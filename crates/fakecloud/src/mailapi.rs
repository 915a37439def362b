//! The HTTP sending APIs: Microsoft Graph `sendMail` (base64 MIME) and the
//! Gmail API `messages.send` upload (simple and resumable). Each checks the
//! bearer token, the mailbox and the scope, enforces the size limits, and
//! records the message with the recipients the provider would deliver to
//! (its To, Cc and Bcc). Faults queued with [`crate::FakeCloud::push_api_fault`]
//! answer the next requests instead.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

use crate::state::{Provider, Shared, random_token};

/// Graph's request limit for MIME sends.
pub(crate) const GRAPH_MAX: usize = 4 * 1024 * 1024;
/// Gmail's simple upload limit, and its message limit.
pub(crate) const GMAIL_SIMPLE_MAX: usize = 5 * 1024 * 1024;
pub(crate) const GMAIL_MAX: usize = 35 * 1024 * 1024;

/// Which API received a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailApi {
    Graph,
    Gmail,
}

/// A message one of the APIs accepted.
#[derive(Debug, Clone)]
pub struct ApiMessage {
    pub api: MailApi,
    pub mailbox: String,
    /// To, Cc and Bcc addresses in lower case: whom the provider delivers to.
    pub recipients: Vec<String>,
    /// The MIME message as received (decoded from base64 for Graph).
    pub data: Vec<u8>,
    pub received_at: Instant,
    pub id: String,
    /// Sent from a draft (Graph's large-message route) rather than at once.
    pub draft: bool,
    /// Attachments that came through upload sessions (draft route).
    pub upload_sessions: usize,
}

/// A reply the next API request gets instead of the normal one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFault {
    pub status: u16,
    pub retry_after: Option<u64>,
    /// The error code in the JSON body (Graph `error.code`, Gmail `reason`).
    pub code: String,
}

pub(crate) fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn gmail_error(status: StatusCode, reason: &str, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"error": {"code": status.as_u16(), "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}]}}),
        ),
    )
        .into_response()
}

pub(crate) fn fault_response(api: MailApi, f: ApiFault) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match api {
        MailApi::Graph => graph_error(status, &f.code, "Injected by fakecloud."),
        MailApi::Gmail => gmail_error(status, &f.code, "Injected by fakecloud."),
    };
    if let Some(secs) = f.retry_after
        && let Ok(v) = secs.to_string().parse()
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Checks the bearer token for `mailbox`; `Err` is the provider's refusal.
#[allow(clippy::result_large_err)] // a test double's refusal, used at once
fn check_token(
    shared: &Shared,
    api: MailApi,
    headers: &HeaderMap,
    mailbox: &str,
) -> Result<(), Response> {
    check_token_for(shared, api, headers, mailbox, false)
}

/// As [`check_token`]; `drafts`: the request writes to the mailbox (Graph
/// drafts), which a delegated token may only do with `Mail.ReadWrite`.
#[allow(clippy::result_large_err)]
pub(crate) fn check_token_for(
    shared: &Shared,
    api: MailApi,
    headers: &HeaderMap,
    mailbox: &str,
    drafts: bool,
) -> Result<(), Response> {
    #[allow(clippy::result_large_err)]
    let refuse = |status: StatusCode, code: &str, msg: &str| -> Result<(), Response> {
        Err(match api {
            MailApi::Graph => graph_error(status, code, msg),
            MailApi::Gmail => gmail_error(status, code, msg),
        })
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        );
    };
    let inner = shared.lock();
    let Some(at) = inner.access_tokens.get(token) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token validation failure.",
        );
    };
    let provider = match api {
        MailApi::Graph => Provider::Microsoft,
        MailApi::Gmail => Provider::Google,
    };
    if at.provider != provider || at.revoked || Instant::now() >= at.expires_at {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
        );
    }
    let scope_ok = at.scope.split_whitespace().any(|s| match api {
        MailApi::Graph => {
            (s.ends_with("/Mail.Send") && !drafts)
                || s.ends_with("/Mail.ReadWrite")
                || (at.app_client.is_some()
                    && s.ends_with("/.default")
                    && s != crate::apponly::MS_APP_SCOPE)
        }
        MailApi::Gmail => {
            s == "https://www.googleapis.com/auth/gmail.send"
                || s == crate::state::GOOGLE_MAIL_SCOPE
        }
    });
    let mailbox_ok = match &at.app_client {
        Some(client) => inner
            .app
            .grants
            .contains(&(client.clone(), mailbox.to_ascii_lowercase())),
        None => at.mailbox.eq_ignore_ascii_case(mailbox),
    };
    if !scope_ok || !mailbox_ok {
        return match api {
            MailApi::Graph => refuse(
                StatusCode::FORBIDDEN,
                "ErrorAccessDenied",
                "Access is denied. Check credentials and try again.",
            ),
            MailApi::Gmail => refuse(
                StatusCode::FORBIDDEN,
                "insufficientPermissions",
                "Request had insufficient authentication scopes.",
            ),
        };
    }
    Ok(())
}

/// The To, Cc and Bcc addresses of a message's header, in lower case.
pub(crate) fn header_recipients(data: &[u8]) -> Vec<String> {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..end])
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    let mut out = Vec::new();
    for line in head.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !["to", "cc", "bcc"].contains(&name.trim().to_ascii_lowercase().as_str()) {
            continue;
        }
        for part in value.split(',') {
            let addr = match (part.find('<'), part.find('>')) {
                (Some(a), Some(b)) if a < b => &part[a + 1..b],
                _ => part,
            };
            let addr = addr.trim().to_ascii_lowercase();
            if addr.contains('@') {
                out.push(addr);
            }
        }
    }
    out
}

/// The message without its Bcc fields: what To and Cc recipients see, as
/// Gmail and Exchange deliver it.
pub(crate) fn strip_bcc(data: &[u8]) -> Vec<u8> {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data.len(), |p| p + 2);
    let mut out = Vec::with_capacity(data.len());
    let mut skipping = false;
    for line in data[..end].split_inclusive(|b| *b == b'\n') {
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !folded {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&data[end..]);
    out
}

fn record(shared: &Shared, api: MailApi, mailbox: &str, data: Vec<u8>) -> String {
    let recipients = header_recipients(&data);
    record_as(shared, api, mailbox, data, recipients, None)
}

/// Records a delivered message: `recipients` receive it; the copy kept has
/// no Bcc field.
pub(crate) fn record_as(
    shared: &Shared,
    api: MailApi,
    mailbox: &str,
    data: Vec<u8>,
    recipients: Vec<String>,
    upload_sessions: Option<usize>,
) -> String {
    let id = format!("{:x}", rand::random::<u64>());
    // One copy per address, however often the header names it.
    let mut seen = std::collections::HashSet::new();
    let recipients: Vec<String> = recipients
        .into_iter()
        .filter(|r| seen.insert(r.clone()))
        .collect();
    let msg = ApiMessage {
        api,
        mailbox: mailbox.to_ascii_lowercase(),
        recipients,
        data: strip_bcc(&data),
        received_at: Instant::now(),
        id: id.clone(),
        draft: upload_sessions.is_some(),
        upload_sessions: upload_sessions.unwrap_or(0),
    };
    shared.lock().api_inbox.push(msg);
    id
}

pub(crate) fn next_fault(shared: &Shared) -> Option<ApiFault> {
    shared.lock().api_faults.pop_front()
}

/// `POST /v1.0/users/{mailbox}/sendMail` with a base64 MIME body.
pub(crate) async fn graph_send_mail(
    State(shared): State<Arc<Shared>>,
    Path(mailbox): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_token(&shared, MailApi::Graph, &headers, &mailbox) {
        return r;
    }
    if let Some(f) = next_fault(&shared) {
        return fault_response(MailApi::Graph, f);
    }
    let data = match graph_mime(&headers, &body) {
        Ok(data) => data,
        Err(r) => return r,
    };
    if header_recipients(&data).is_empty() {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "At least one recipient is not valid.",
        );
    }
    let id = record(&shared, MailApi::Graph, &mailbox, data);
    let delay = shared.lock().api_reply_delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = id.parse() {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(crate) struct UploadQuery {
    #[serde(rename = "uploadType")]
    upload_type: String,
    upload_id: Option<String>,
}

/// `POST /upload/gmail/v1/users/{mailbox}/messages/send?uploadType=media|resumable`.
pub(crate) async fn gmail_upload(
    State(shared): State<Arc<Shared>>,
    Path(mailbox): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_token(&shared, MailApi::Gmail, &headers, &mailbox) {
        return r;
    }
    if let Some(f) = next_fault(&shared) {
        return fault_response(MailApi::Gmail, f);
    }
    match q.upload_type.as_str() {
        "media" => {
            if body.len() > GMAIL_SIMPLE_MAX {
                return gmail_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "uploadTooLarge",
                    "Media larger than 5 MB needs the resumable upload.",
                );
            }
            gmail_accept(&shared, &mailbox, body.to_vec())
        }
        "resumable" => {
            let length = headers
                .get("x-upload-content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if length > GMAIL_MAX {
                return gmail_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "uploadTooLarge",
                    "Maximum upload size is 35 MB.",
                );
            }
            let upload_id = random_token(24);
            shared
                .lock()
                .api_uploads
                .insert(upload_id.clone(), mailbox.clone());
            let location = format!(
                "{}/upload/gmail/v1/users/{mailbox}/messages/send?uploadType=resumable&upload_id={upload_id}",
                shared.base_url
            );
            let mut resp = StatusCode::OK.into_response();
            if let Ok(v) = location.parse() {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        _ => gmail_error(StatusCode::BAD_REQUEST, "badRequest", "Unknown uploadType."),
    }
}

/// `PUT` of a resumable upload session's bytes.
pub(crate) async fn gmail_upload_put(
    State(shared): State<Arc<Shared>>,
    Path(mailbox): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_token(&shared, MailApi::Gmail, &headers, &mailbox) {
        return r;
    }
    let known = q
        .upload_id
        .and_then(|id| shared.lock().api_uploads.remove(&id))
        .is_some_and(|m| m == mailbox);
    if !known {
        return gmail_error(StatusCode::NOT_FOUND, "notFound", "No such upload session.");
    }
    if body.len() > GMAIL_MAX {
        return gmail_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "uploadTooLarge",
            "Maximum upload size is 35 MB.",
        );
    }
    gmail_accept(&shared, &mailbox, body.to_vec())
}

fn gmail_accept(shared: &Shared, mailbox: &str, data: Vec<u8>) -> Response {
    if header_recipients(&data).is_empty() {
        return gmail_error(
            StatusCode::BAD_REQUEST,
            "invalidArgument",
            "Recipient address required",
        );
    }
    let id = record(shared, MailApi::Gmail, mailbox, data);
    axum::Json(json!({"id": id, "threadId": id, "labelIds": ["SENT"]})).into_response()
}

/// Graph's answer to a request over its 4 MB limit.
pub(crate) fn graph_too_large() -> Response {
    graph_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "ErrorRequestEntityTooLarge",
        "The request is larger than 4 MB.",
    )
}

/// The message of a Graph request that carries it as base64 MIME
/// (`sendMail` and a draft's creation), or Graph's refusal.
#[allow(clippy::result_large_err)] // a test double's refusal, used at once
pub(crate) fn graph_mime(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, Response> {
    if body.len() > GRAPH_MAX {
        return Err(graph_too_large());
    }
    let is_text = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !is_text {
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "Content-Type must be text/plain for MIME.",
        ));
    }
    let cleaned: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .map_err(|_| {
            graph_error(
                StatusCode::BAD_REQUEST,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            )
        })
}
