//! Graph's route for messages over its 4 MB request limit (protocols.md
//! §10): the message without its largest attachments becomes a draft (MIME,
//! so headers and text stay the device's), the draft's recipients are set
//! explicitly to the envelope, each attachment taken out is added back (a
//! plain `POST` under 3 MB, an upload session in 320 KiB multiples above),
//! then the draft is sent. A draft left by a failed step is deleted, so a
//! retry starts clean.

use base64::Engine as _;
use mail_parser::MimeHeaders as _;
use serde_json::{Value, json};

use super::http_api::{GRAPH_MAX_REQUEST, Reply, percent, read_reply};
use crate::tokens::AccessToken;

/// Largest attachment sent in one `POST …/attachments` (its base64 and the
/// JSON around it stay under 4 MB); larger ones use an upload session.
pub const SIMPLE_ATTACHMENT_MAX: usize = 3_000_000;
/// Upload session ranges: 10 × 320 KiB, Graph's unit, under 4 MB a request.
pub const CHUNK: usize = 10 * 320 * 1024;
/// Room left in the draft request for the JSON-free base64 line breaks and
/// headers a proxy may add.
const DRAFT_MARGIN: usize = 16 * 1024;

/// An attachment taken out of the draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    pub name: String,
    pub content_type: String,
    pub content_id: Option<String>,
    pub inline: bool,
    pub bytes: Vec<u8>,
}

/// Why a message cannot take the draft route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// Without all its attachments it is still over the request limit.
    TextTooLarge(usize),
    Unparsable,
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Whether `message` fits one `sendMail` request as base64.
pub fn fits_one_request(message: &[u8]) -> bool {
    base64_len(message.len()) <= GRAPH_MAX_REQUEST
}

/// `message` with its largest attachments cut out (each with the delimiter
/// line before it) until its base64 fits a request, and those attachments.
pub fn split(message: &[u8]) -> Result<(Vec<u8>, Vec<Detached>), SplitError> {
    let parsed = mail_parser::MessageParser::default()
        .parse(message)
        .ok_or(SplitError::Unparsable)?;
    let mut candidates: Vec<(usize, usize, Detached)> = Vec::new();
    for (n, part) in parsed.attachments().enumerate() {
        let (start, end) = (part.offset_header as usize, part.offset_end as usize);
        if start == 0 || end <= start || end > message.len() {
            continue;
        }
        // The delimiter before the part: "\r\n--boundary\r\n" ends at `start`.
        let Some(delim) = message[..start].windows(4).rposition(|w| w == b"\r\n--") else {
            continue;
        };
        // The CRLF before the next delimiter belongs to that delimiter.
        let end = if message[..end].ends_with(b"\r\n") && message[end..].starts_with(b"--") {
            end - 2
        } else {
            end
        };
        let ct = part.content_type();
        let content_type = ct.map_or_else(
            || "application/octet-stream".to_owned(),
            |c| match c.subtype() {
                Some(s) => format!("{}/{s}", c.ctype()),
                None => c.ctype().to_owned(),
            },
        );
        let inline = part
            .content_disposition()
            .is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline"));
        candidates.push((
            delim,
            end,
            Detached {
                name: part
                    .attachment_name()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("attachment-{}", n + 1)),
                content_type,
                content_id: part
                    .content_id()
                    .map(|c| c.trim_matches(['<', '>']).to_owned()),
                inline,
                bytes: part.contents().to_vec(),
            },
        ));
    }
    // Largest first: the fewest uploads that make the rest fit.
    candidates.sort_by_key(|(s, e, _)| std::cmp::Reverse(e - s));
    let limit = GRAPH_MAX_REQUEST - DRAFT_MARGIN;
    let mut size = message.len();
    let mut chosen = Vec::new();
    for c in candidates {
        if base64_len(size) <= limit {
            break;
        }
        // Parts nested in one already cut go with it.
        if chosen
            .iter()
            .any(|(s, e, _): &(usize, usize, Detached)| c.0 >= *s && c.1 <= *e)
        {
            continue;
        }
        size -= c.1 - c.0;
        chosen.push(c);
    }
    if base64_len(size) > limit {
        return Err(SplitError::TextTooLarge(size));
    }
    // Cut from the end so earlier offsets stay valid; keep message order.
    chosen.sort_by_key(|(s, _, _)| *s);
    let mut draft = message.to_vec();
    for (s, e, _) in chosen.iter().rev() {
        draft.drain(*s..*e);
    }
    Ok((draft, chosen.into_iter().map(|(_, _, d)| d).collect()))
}

/// To, Cc and Bcc of the draft: the header's To and Cc addresses (all in the
/// envelope, checked before), and the rest of the envelope as Bcc.
fn recipients(message: &[u8], envelope: &[String]) -> Value {
    let parsed = mail_parser::MessageParser::default().parse_headers(message);
    let list = |a: Option<&mail_parser::Address>| -> Vec<String> {
        a.map(|l| {
            l.iter()
                .filter_map(|x| x.address())
                .map(|x| x.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default()
    };
    let (to, cc) = match &parsed {
        Some(p) => (list(p.to()), list(p.cc())),
        None => (Vec::new(), Vec::new()),
    };
    let mut bcc: Vec<String> = Vec::new();
    for r in envelope {
        let lc = r.trim().to_ascii_lowercase();
        if !to.contains(&lc) && !cc.contains(&lc) && !bcc.contains(&lc) {
            bcc.push(lc);
        }
    }
    let to = to.into_iter().filter(|r| envelope_has(envelope, r));
    let cc = cc.into_iter().filter(|r| envelope_has(envelope, r));
    let wrap = |v: Vec<String>| -> Vec<Value> {
        v.into_iter()
            .map(|a| json!({"emailAddress": {"address": a}}))
            .collect()
    };
    json!({
        "toRecipients": wrap(to.collect()),
        "ccRecipients": wrap(cc.collect()),
        "bccRecipients": wrap(bcc),
    })
}

fn envelope_has(envelope: &[String], r: &str) -> bool {
    envelope.iter().any(|e| e.trim().eq_ignore_ascii_case(r))
}

/// The id in a JSON reply body.
async fn created_id(resp: reqwest::Response) -> Result<Result<String, Reply>, reqwest::Error> {
    if !resp.status().is_success() {
        return Ok(Err(read_reply(resp, None).await?));
    }
    let body = resp.bytes().await?;
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_owned));
    Ok(id.ok_or_else(|| Reply::Status {
        status: 502,
        retry_after: None,
        message: "HTTP 502 Graph created the draft without an id".to_owned(),
    }))
}

/// Sends `message` (over the request limit) through a draft. `Ok(Reply)`
/// as for `sendMail`; the draft's id is the provider's id.
pub(super) async fn send_large(
    client: &reqwest::Client,
    base: &str,
    token: &AccessToken,
    message: &[u8],
    envelope: &[String],
) -> Result<Result<Reply, SplitError>, reqwest::Error> {
    let (draft, attachments) = match split(message) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let messages = format!("{base}/v1.0/users/{}/messages", percent(&token.mailbox));
    let resp = client
        .post(&messages)
        .bearer_auth(&token.token)
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(base64::engine::general_purpose::STANDARD.encode(&draft))
        .send()
        .await?;
    let id = match created_id(resp).await? {
        Ok(id) => id,
        Err(reply) => return Ok(Ok(reply)),
    };
    let draft_url = format!("{messages}/{}", percent(&id));
    let sent = fill_and_send(client, &draft_url, token, message, envelope, &attachments).await;
    let done = matches!(sent, Ok(Reply::Ok { .. }));
    if !done {
        // Best effort: a retry makes a new draft; this one must not linger.
        let _ = client
            .delete(&draft_url)
            .bearer_auth(&token.token)
            .send()
            .await;
    }
    Ok(Ok(match sent? {
        Reply::Ok { status, .. } => Reply::Ok {
            status,
            id: Some(id),
        },
        other => other,
    }))
}

async fn fill_and_send(
    client: &reqwest::Client,
    draft_url: &str,
    token: &AccessToken,
    message: &[u8],
    envelope: &[String],
    attachments: &[Detached],
) -> Result<Reply, reqwest::Error> {
    let resp = client
        .patch(draft_url)
        .bearer_auth(&token.token)
        .json(&recipients(message, envelope))
        .send()
        .await?;
    if !resp.status().is_success() {
        return read_reply(resp, None).await;
    }
    for a in attachments {
        if let Some(failed) = attach(client, draft_url, token, a).await? {
            return Ok(failed);
        }
    }
    let resp = client
        .post(format!("{draft_url}/send"))
        .bearer_auth(&token.token)
        .header(reqwest::header::CONTENT_LENGTH, "0")
        .send()
        .await?;
    read_reply(resp, None).await
}

/// Adds one attachment to the draft; `Some` is the refusal.
async fn attach(
    client: &reqwest::Client,
    draft_url: &str,
    token: &AccessToken,
    a: &Detached,
) -> Result<Option<Reply>, reqwest::Error> {
    let mut meta = json!({
        "name": a.name,
        "contentType": a.content_type,
        "isInline": a.inline,
    });
    if let Some(cid) = &a.content_id {
        meta["contentId"] = json!(cid);
    }
    if a.bytes.len() <= SIMPLE_ATTACHMENT_MAX {
        meta["@odata.type"] = json!("#microsoft.graph.fileAttachment");
        meta["contentBytes"] = json!(base64::engine::general_purpose::STANDARD.encode(&a.bytes));
        let resp = client
            .post(format!("{draft_url}/attachments"))
            .bearer_auth(&token.token)
            .json(&meta)
            .send()
            .await?;
        return failure(resp).await;
    }
    meta["attachmentType"] = json!("file");
    meta["size"] = json!(a.bytes.len());
    let resp = client
        .post(format!("{draft_url}/attachments/createUploadSession"))
        .bearer_auth(&token.token)
        .json(&json!({ "AttachmentItem": meta }))
        .send()
        .await?;
    if !resp.status().is_success() {
        return Ok(Some(read_reply(resp, None).await?));
    }
    let body = resp.bytes().await?;
    let Some(url) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("uploadUrl")?.as_str().map(str::to_owned))
        .filter(|u| u.starts_with("https://"))
    else {
        return Ok(Some(Reply::Status {
            status: 502,
            retry_after: None,
            message: "HTTP 502 Graph's upload session has no usable uploadUrl".to_owned(),
        }));
    };
    let total = a.bytes.len();
    for (n, chunk) in a.bytes.chunks(CHUNK).enumerate() {
        let start = n * CHUNK;
        let end = start + chunk.len() - 1;
        // The URL carries its own authorisation: no bearer token goes there.
        let resp = client
            .put(&url)
            .header(
                reqwest::header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{total}"),
            )
            .body(chunk.to_vec())
            .send()
            .await?;
        if let Some(f) = failure(resp).await? {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

async fn failure(resp: reqwest::Response) -> Result<Option<Reply>, reqwest::Error> {
    if resp.status().is_success() {
        // Drained so the connection can be reused.
        let _ = resp.bytes().await?;
        return Ok(None);
    }
    Ok(Some(read_reply(resp, None).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attachments: &[(&str, usize)]) -> Vec<u8> {
        let mut m = b"From: a@x.example\r\nTo: b@y.example\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody text\r\n".to_vec();
        for (name, size) in attachments {
            let bytes: Vec<u8> = (0..*size).map(|i| (i * 31 % 251) as u8).collect();
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            m.extend_from_slice(format!("--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\r\n").as_bytes());
            for line in b64.as_bytes().chunks(76) {
                m.extend_from_slice(line);
                m.extend_from_slice(b"\r\n");
            }
        }
        m.extend_from_slice(b"--b1--\r\n");
        m
    }

    #[test]
    fn the_largest_attachments_leave_the_draft_until_it_fits_one_request() {
        let m = message(&[
            ("small.bin", 1000),
            ("big.bin", 4_000_000),
            ("mid.bin", 100_000),
        ]);
        assert!(!fits_one_request(&m));
        let (draft, out) = split(&m).unwrap();
        assert!(fits_one_request(&draft));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "big.bin");
        assert_eq!(out[0].bytes.len(), 4_000_000);
        assert_eq!(out[0].content_type, "application/octet-stream");
        // What stays is a well-formed multipart with the other two.
        let parsed = mail_parser::MessageParser::default().parse(&draft).unwrap();
        let names: Vec<_> = parsed
            .attachments()
            .filter_map(|a| a.attachment_name())
            .collect();
        assert_eq!(names, vec!["small.bin", "mid.bin"]);
        assert_eq!(parsed.body_text(0).unwrap().trim(), "body text");
        assert!(
            draft.ends_with(b"\r\n--b1--\r\n"),
            "{:?}",
            &draft[draft.len() - 20..]
        );
    }

    #[test]
    fn text_too_large_without_attachments_is_said() {
        let mut m = b"From: a@x.example\r\nTo: b@y.example\r\nSubject: big\r\n\r\n".to_vec();
        m.extend(std::iter::repeat_n(b'a', 4_000_000));
        assert!(matches!(split(&m), Err(SplitError::TextTooLarge(_))));
    }

    #[test]
    fn the_draft_goes_to_exactly_the_envelope() {
        let m = b"From: a@x.example\r\nTo: B@y.example\r\nCc: c@y.example\r\n\r\nx";
        let v = recipients(
            m,
            &[
                "b@y.example".into(),
                "c@y.example".into(),
                "Hidden@z.example".into(),
            ],
        );
        assert_eq!(
            v,
            json!({
                "toRecipients": [{"emailAddress": {"address": "b@y.example"}}],
                "ccRecipients": [{"emailAddress": {"address": "c@y.example"}}],
                "bccRecipients": [{"emailAddress": {"address": "hidden@z.example"}}],
            })
        );
    }
}
