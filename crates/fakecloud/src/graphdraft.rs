//! Graph's route for messages over the 4 MB request limit: a draft from
//! MIME (`POST /v1.0/users/{m}/messages`), explicit recipients (`PATCH`),
//! attachments (`POST …/attachments` under 3 MB, upload sessions above, in
//! byte ranges that are multiples of 320 KiB), then `POST …/send`. Each
//! request checks the token, mailbox and scope (a delegated token needs
//! `Mail.ReadWrite` for drafts) and the sizes; the sent message is
//! reassembled (attachments added as MIME parts, as Exchange rebuilds it)
//! and recorded with the draft's recipients.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::mailapi::{
    GRAPH_MAX, MailApi, check_token_for, fault_response, graph_error, graph_mime, graph_too_large,
    header_recipients, next_fault, record_as,
};
use crate::state::{Shared, random_token};

/// Largest attachment `POST …/attachments` takes; above it, an upload session.
pub(crate) const SIMPLE_ATTACHMENT_MAX: usize = 3_000_000;
/// Upload session ranges are multiples of this (except the last).
pub(crate) const CHUNK_UNIT: usize = 320 * 1024;
/// Largest attachment Graph takes through an upload session.
const ATTACHMENT_MAX: usize = 150 * 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub(crate) struct Attachment {
    name: String,
    content_type: String,
    content_id: Option<String>,
    inline: bool,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
pub(crate) struct Draft {
    mailbox: String,
    mime: Vec<u8>,
    /// Set by `PATCH`: (to, cc, bcc).
    recipients: Option<(Vec<String>, Vec<String>, Vec<String>)>,
    attachments: Vec<Attachment>,
    upload_sessions: usize,
}

#[derive(Debug)]
pub(crate) struct Upload {
    draft: String,
    size: usize,
    att: Attachment,
}

/// Drafts and upload sessions by id.
#[derive(Debug, Default)]
pub(crate) struct DraftState {
    drafts: HashMap<String, Draft>,
    uploads: HashMap<String, Upload>,
}

/// Drafts that were created and neither sent nor deleted.
pub(crate) fn open_drafts(shared: &Shared) -> usize {
    shared.lock().graph_drafts.drafts.len()
}

#[allow(clippy::result_large_err)] // a test double's refusal, used at once
fn check(shared: &Shared, headers: &HeaderMap, mailbox: &str) -> Result<(), Response> {
    check_token_for(shared, MailApi::Graph, headers, mailbox, true)?;
    if let Some(f) = next_fault(shared) {
        return Err(fault_response(MailApi::Graph, f));
    }
    Ok(())
}

fn not_found() -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

/// `POST /v1.0/users/{mailbox}/messages`: a draft from base64 MIME.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Path(mailbox): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&shared, &headers, &mailbox) {
        return r;
    }
    let mime = match graph_mime(&headers, &body) {
        Ok(mime) => mime,
        Err(r) => return r,
    };
    let id = format!("AAMk{}", random_token(40));
    shared.lock().graph_drafts.drafts.insert(
        id.clone(),
        Draft {
            mailbox: mailbox.to_ascii_lowercase(),
            mime,
            ..Draft::default()
        },
    );
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "isDraft": true})),
    )
        .into_response()
}

fn addresses(v: &Value, field: &str) -> Option<Vec<String>> {
    let list = v.get(field)?.as_array()?;
    list.iter()
        .map(|r| {
            r.pointer("/emailAddress/address")
                .and_then(Value::as_str)
                .map(|a| a.trim().to_ascii_lowercase())
        })
        .collect()
}

/// `PATCH /v1.0/users/{mailbox}/messages/{id}`: the recipients.
pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    Path((mailbox, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&shared, &headers, &mailbox) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest", "Invalid JSON.");
    };
    let (Some(to), Some(cc), Some(bcc)) = (
        addresses(&v, "toRecipients"),
        addresses(&v, "ccRecipients"),
        addresses(&v, "bccRecipients"),
    ) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "toRecipients, ccRecipients and bccRecipients must list emailAddress.address.",
        );
    };
    let mut inner = shared.lock();
    let Some(d) = inner.graph_drafts.drafts.get_mut(&id) else {
        return not_found();
    };
    if !d.mailbox.eq_ignore_ascii_case(&mailbox) {
        return not_found();
    }
    d.recipients = Some((to, cc, bcc));
    Json(json!({"id": id})).into_response()
}

/// `DELETE /v1.0/users/{mailbox}/messages/{id}`.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((mailbox, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_token_for(&shared, MailApi::Graph, &headers, &mailbox, true) {
        return r;
    }
    let mut inner = shared.lock();
    match inner.graph_drafts.drafts.get(&id) {
        Some(d) if d.mailbox.eq_ignore_ascii_case(&mailbox) => {
            inner.graph_drafts.drafts.remove(&id);
            inner.graph_drafts.uploads.retain(|_, u| u.draft != id);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => not_found(),
    }
}

fn attachment_meta(v: &Value) -> Option<Attachment> {
    Some(Attachment {
        name: v.get("name")?.as_str()?.to_owned(),
        content_type: v
            .get("contentType")
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream")
            .to_owned(),
        content_id: v
            .get("contentId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        inline: v.get("isInline").and_then(Value::as_bool).unwrap_or(false),
        bytes: Vec::new(),
    })
}

/// `POST /v1.0/users/{mailbox}/messages/{id}/attachments`: a file
/// attachment under 3 MB, as base64 `contentBytes`.
pub(crate) async fn add_attachment(
    State(shared): State<Arc<Shared>>,
    Path((mailbox, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&shared, &headers, &mailbox) {
        return r;
    }
    if body.len() > GRAPH_MAX {
        return graph_too_large();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest", "Invalid JSON.");
    };
    let bytes = v
        .get("contentBytes")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    let (Some(mut att), Some(bytes)) = (attachment_meta(&v), bytes) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "A fileAttachment needs name and base64 contentBytes.",
        );
    };
    if v.get("@odata.type").and_then(Value::as_str) != Some("#microsoft.graph.fileAttachment") {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "@odata.type must be #microsoft.graph.fileAttachment.",
        );
    }
    if bytes.len() > SIMPLE_ATTACHMENT_MAX {
        return graph_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ErrorAttachmentSizeLimitExceeded",
            "Attachments of 3 MB or more need an upload session.",
        );
    }
    att.bytes = bytes;
    let mut inner = shared.lock();
    match inner.graph_drafts.drafts.get_mut(&id) {
        Some(d) if d.mailbox.eq_ignore_ascii_case(&mailbox) => {
            d.attachments.push(att);
            (StatusCode::CREATED, Json(json!({"id": random_token(20)}))).into_response()
        }
        _ => not_found(),
    }
}

/// `POST …/messages/{id}/attachments/createUploadSession`.
pub(crate) async fn create_upload_session(
    State(shared): State<Arc<Shared>>,
    Path((mailbox, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&shared, &headers, &mailbox) {
        return r;
    }
    let v = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let item = v.get("AttachmentItem").unwrap_or(&Value::Null);
    let size = item
        .get("size")
        .and_then(Value::as_u64)
        .and_then(|s| usize::try_from(s).ok());
    let (Some(att), Some(size), Some("file")) = (
        attachment_meta(item),
        size,
        item.get("attachmentType").and_then(Value::as_str),
    ) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "AttachmentItem needs attachmentType file, name and size.",
        );
    };
    if size == 0 || size > ATTACHMENT_MAX {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorAttachmentSizeLimitExceeded",
            "The attachment must be 1 byte to 150 MB.",
        );
    }
    let mut inner = shared.lock();
    match inner.graph_drafts.drafts.get(&id) {
        Some(d) if d.mailbox.eq_ignore_ascii_case(&mailbox) => {}
        _ => return not_found(),
    }
    let token = random_token(32);
    inner.graph_drafts.uploads.insert(
        token.clone(),
        Upload {
            draft: id,
            size,
            att,
        },
    );
    let url = format!("{}/graph-upload/{token}", shared.base_url);
    (
        StatusCode::CREATED,
        Json(json!({"uploadUrl": url, "nextExpectedRanges": ["0-"],
            "expirationDateTime": "2100-01-01T00:00:00Z"})),
    )
        .into_response()
}

fn bad_range(msg: &str) -> Response {
    graph_error(StatusCode::BAD_REQUEST, "InvalidRange", msg)
}

/// `PUT {uploadUrl}` with `Content-Range: bytes a-b/total`. Pre-authorised
/// by the URL: a bearer token here is refused, as Graph asks clients not to
/// send one.
pub(crate) async fn upload_chunk(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Do not send an Authorization header to the upload URL.",
        );
    }
    let range = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| {
            let (span, total) = v.split_once('/')?;
            let (a, b) = span.split_once('-')?;
            Some((
                a.parse::<usize>().ok()?,
                b.parse::<usize>().ok()?,
                total.parse::<usize>().ok()?,
            ))
        });
    let Some((start, end, total)) = range else {
        return bad_range("Content-Range must be bytes start-end/total.");
    };
    let mut inner = shared.lock();
    let Some(up) = inner.graph_drafts.uploads.get_mut(&token) else {
        return not_found();
    };
    let len = body.len();
    if total != up.size
        || start != up.att.bytes.len()
        || end < start
        || end - start + 1 != len
        || end >= total
    {
        return bad_range("The range does not continue the upload or does not match the body.");
    }
    if len > GRAPH_MAX {
        return graph_too_large();
    }
    let last = end + 1 == total;
    if !last && !len.is_multiple_of(CHUNK_UNIT) {
        return bad_range("Each range but the last must be a multiple of 320 KiB.");
    }
    up.att.bytes.extend_from_slice(&body);
    if !last {
        return Json(json!({"nextExpectedRanges": [format!("{}-", end + 1)],
            "expirationDateTime": "2100-01-01T00:00:00Z"}))
        .into_response();
    }
    let Some(up) = inner.graph_drafts.uploads.remove(&token) else {
        return not_found();
    };
    match inner.graph_drafts.drafts.get_mut(&up.draft) {
        Some(d) => {
            d.attachments.push(up.att);
            d.upload_sessions += 1;
            StatusCode::CREATED.into_response()
        }
        None => not_found(),
    }
}

/// `POST /v1.0/users/{mailbox}/messages/{id}/send`.
pub(crate) async fn send(
    State(shared): State<Arc<Shared>>,
    Path((mailbox, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check(&shared, &headers, &mailbox) {
        return r;
    }
    let draft = {
        let mut inner = shared.lock();
        match inner.graph_drafts.drafts.get(&id) {
            Some(d) if d.mailbox.eq_ignore_ascii_case(&mailbox) => {
                inner.graph_drafts.drafts.remove(&id)
            }
            _ => None,
        }
    };
    let Some(d) = draft else {
        return not_found();
    };
    let recipients = match &d.recipients {
        Some((to, cc, bcc)) => to.iter().chain(cc).chain(bcc).cloned().collect(),
        None => header_recipients(&d.mime),
    };
    if recipients.is_empty() {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "At least one recipient is not valid.",
        );
    }
    let data = assemble(&d.mime, &d.attachments);
    record_as(
        &shared,
        MailApi::Graph,
        &mailbox,
        data,
        recipients,
        Some(d.upload_sessions),
    );
    StatusCode::ACCEPTED.into_response()
}

/// The header's fields, unfolded, with the offset where the body starts.
fn split_header(mime: &[u8]) -> (Vec<String>, usize) {
    let end = mime
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(mime.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&mime[..end]);
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t'])
            && let Some(last) = fields.last_mut()
        {
            last.push_str("\r\n");
            last.push_str(line);
        } else {
            fields.push(line.to_owned());
        }
    }
    (fields, end)
}

fn field_is(field: &str, name: &str) -> bool {
    field
        .split_once(':')
        .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
}

fn boundary_of(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    let at = lower.find("boundary=")? + "boundary=".len();
    let rest = content_type[at..].trim_start();
    let b = match rest.strip_prefix('"') {
        Some(q) => q.split('"').next()?,
        None => rest.split([';', ' ', '\r', '\n']).next()?,
    };
    Some(b.to_owned())
}

fn attachment_part(boundary: &str, a: &Attachment) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(&a.bytes);
    let mut out = format!(
        "--{boundary}\r\nContent-Type: {}; name=\"{}\"\r\nContent-Disposition: {}; filename=\"{}\"\r\nContent-Transfer-Encoding: base64\r\n",
        a.content_type,
        a.name,
        if a.inline { "inline" } else { "attachment" },
        a.name
    );
    if let Some(cid) = &a.content_id {
        out.push_str(&format!("Content-ID: <{cid}>\r\n"));
    }
    out.push_str("\r\n");
    for line in b64.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// The draft's MIME with its attachments added as parts of a
/// `multipart/mixed` (the draft's own, or one wrapping its content).
pub(crate) fn assemble(mime: &[u8], attachments: &[Attachment]) -> Vec<u8> {
    if attachments.is_empty() {
        return mime.to_vec();
    }
    let (fields, body_at) = split_header(mime);
    let content_type = fields
        .iter()
        .find(|f| field_is(f, "content-type"))
        .cloned()
        .unwrap_or_else(|| "Content-Type: text/plain".to_owned());
    let mixed = content_type
        .to_ascii_lowercase()
        .contains("multipart/mixed");
    if mixed && let Some(b) = boundary_of(&content_type) {
        let close = format!("--{b}--");
        if let Some(at) = mime
            .windows(close.len())
            .rposition(|w| w == close.as_bytes())
        {
            let mut out = mime[..at].to_vec();
            for a in attachments {
                out.extend_from_slice(&attachment_part(&b, a));
            }
            out.extend_from_slice(&mime[at..]);
            return out;
        }
    }
    let b = format!("fakecloud-{}", random_token(16));
    let mut out = Vec::with_capacity(mime.len() * 2);
    let mut inner_fields = Vec::new();
    for f in &fields {
        if field_is(f, "content-type") || field_is(f, "content-transfer-encoding") {
            inner_fields.push(f.clone());
        } else {
            out.extend_from_slice(f.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\n").as_bytes(),
    );
    for f in inner_fields {
        out.extend_from_slice(f.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&mime[body_at..]);
    out.extend_from_slice(b"\r\n");
    for a in attachments {
        out.extend_from_slice(&attachment_part(&b, a));
    }
    out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    out
}
