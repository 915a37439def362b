//! Local submission: `hikyaku send` (a message built from arguments, e.g.
//! scan-to-email from a script) and `hikyaku sendmail` (a drop-in for
//! `/usr/sbin/sendmail` in cron). The running server queues them through its
//! control socket for any local user (`control`); when the server is stopped,
//! root and hikyaku's own user put them straight into the durable queue of the
//! data directory and the server's delivery picks them up at its next start.

use std::path::PathBuf;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use super::store_sink::new_job;
use crate::clock::Clock;
use crate::queue::JobStore as _;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{0}")]
    Usage(String),
    #[error("invalid address {0:?}: {1}")]
    Address(String, String),
    // Causes are part of the messages, not chained sources: said once.
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the message could not be built: {0}")]
    Build(String),
    #[error(
        "the message is {size} bytes, larger than the limit of {limit} bytes (intake.max_message_size)"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "the message is larger than the limit of {limit} bytes (intake.max_message_size); nothing was queued"
    )]
    TooLargeInput { limit: usize },
    #[error(
        "no recipients: give them as arguments, or use -t to read them from the To, Cc and Bcc headers"
    )]
    NoRecipients,
    #[error(
        "the message contains a NUL byte, which mail cannot carry: send binary content as an attachment (base64)"
    )]
    Nul,
    #[error("the queue could not store the message: {0}")]
    Store(StoreError),
    #[error("no sender address: give --from (or -f), or authorize an account first")]
    NoSender,
    #[error("refused, nothing was queued: {0}")]
    Unroutable(super::routing::Unroutable),
    #[error("refused, nothing was queued: {0}")]
    TooLargeForAccount(String),
}

impl From<StoreError> for LocalError {
    fn from(e: StoreError) -> Self {
        LocalError::Store(e)
    }
}

/// What `hikyaku send` was asked to send.
#[derive(Debug, Clone, Default)]
pub struct SendRequest {
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub body: String,
    pub attachments: Vec<PathBuf>,
}

fn mailbox(text: &str) -> Result<Mailbox, LocalError> {
    text.parse::<Mailbox>()
        .map_err(|e| LocalError::Address(text.to_string(), e.to_string()))
}

/// Builds a MIME message (text body plus attachments) with lettre, with a
/// Date and a Message-ID. Attachments are sized before they are read: one
/// that cannot fit in `limit` bytes once encoded is refused without reading it.
pub fn build_message(req: &SendRequest, limit: usize) -> Result<Vec<u8>, LocalError> {
    if req.to.is_empty() && req.cc.is_empty() {
        return Err(LocalError::NoRecipients);
    }
    let mut encoded = req.body.len();
    for path in &req.attachments {
        let size = std::fs::metadata(path)
            .map_err(|error| LocalError::Read {
                path: path.display().to_string(),
                error,
            })?
            .len();
        // Base64 makes 4 bytes of 3 (line ends aside).
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        encoded = encoded.saturating_add(size.saturating_mul(4) / 3);
        if encoded > limit {
            return Err(LocalError::TooLargeInput { limit });
        }
    }
    let from = mailbox(&req.from)?;
    let message_id = format!(
        "<{}@{}>",
        uuid::Uuid::now_v7().simple(),
        from.email.domain()
    );
    let mut builder = lettre::Message::builder()
        .from(from)
        .message_id(Some(message_id))
        .subject(req.subject.clone());
    for t in &req.to {
        builder = builder.to(mailbox(t)?);
    }
    for c in &req.cc {
        builder = builder.cc(mailbox(c)?);
    }
    let text = SinglePart::plain(req.body.clone());
    let message = if req.attachments.is_empty() {
        builder.singlepart(text)
    } else {
        let mut parts = MultiPart::mixed().singlepart(text);
        for path in &req.attachments {
            let bytes = std::fs::read(path).map_err(|error| LocalError::Read {
                path: path.display().to_string(),
                error,
            })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "attachment".into());
            let content_type = ContentType::parse(content_type_for(&name))
                .map_err(|e| LocalError::Build(e.to_string()))?;
            parts = parts.singlepart(Attachment::new(name).body(bytes, content_type));
        }
        builder.multipart(parts)
    };
    Ok(message
        .map_err(|e| LocalError::Build(e.to_string()))?
        .formatted())
}

/// A MIME type from a file name: the kinds scanners and scripts send.
fn content_type_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "tif" | "tiff" => "image/tiff",
        "txt" | "log" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "zip" => "application/zip",
        "xml" => "application/xml",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// The arguments of sendmail mode (the subset cron and scripts use).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendmailArgs {
    /// `-t`: recipients from the To, Cc and Bcc headers.
    pub from_headers: bool,
    /// `-i` / `-oi`: a line with a single dot does not end the message.
    pub ignore_dots: bool,
    /// `-f ADDR` / `-fADDR` / `-r ADDR`: envelope sender.
    pub sender: Option<String>,
    /// `-F NAME`: full name for a From header that hikyaku adds.
    pub full_name: Option<String>,
    pub recipients: Vec<String>,
}

/// Parses sendmail's flags. Unknown `-o` options and `-B`, `-v` and the like
/// are accepted and ignored, as other sendmail replacements do; anything that
/// would change the meaning (`-bs`, `-bd`, `-q`) is refused.
pub fn parse_sendmail_args<I: IntoIterator<Item = String>>(
    args: I,
) -> Result<SendmailArgs, LocalError> {
    let mut out = SendmailArgs::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            out.recipients.extend(it.by_ref());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            out.recipients.push(arg);
            continue;
        }
        let value = |inline: &str,
                     it: &mut dyn Iterator<Item = String>,
                     flag: &str|
         -> Result<String, LocalError> {
            if !inline.is_empty() {
                Ok(inline.to_string())
            } else {
                it.next()
                    .ok_or_else(|| LocalError::Usage(format!("{flag} needs a value")))
            }
        };
        match arg.as_str() {
            "-t" => out.from_headers = true,
            "-i" | "-oi" => out.ignore_dots = true,
            "-bm" | "-v" | "-U" | "-n" | "-m" | "-em" | "-ee" | "-oem" | "-oee" => {}
            a if a.starts_with("-f") => out.sender = Some(value(&a[2..], &mut it, "-f")?),
            a if a.starts_with("-r") => out.sender = Some(value(&a[2..], &mut it, "-r")?),
            a if a.starts_with("-F") => out.full_name = Some(value(&a[2..], &mut it, "-F")?),
            a if a.starts_with("-o")
                || a.starts_with("-B")
                || a.starts_with("-N")
                || a.starts_with("-R")
                || a.starts_with("-V") =>
            {
                // Options with a separate value when given alone.
                if matches!(a, "-o" | "-B" | "-N" | "-R" | "-V") {
                    it.next();
                }
            }
            a if a.starts_with("-b") || a.starts_with("-q") => {
                return Err(LocalError::Usage(format!(
                    "{a} is not supported: hikyaku's sendmail mode only submits a message (-bm)"
                )));
            }
            a => return Err(LocalError::Usage(format!("unknown option {a}"))),
        }
    }
    Ok(out)
}

/// Reads a message as sendmail does: LF or CRLF line ends become CRLF; without
/// `-i` a line with a single dot ends the message.
pub fn read_message(input: &[u8], ignore_dots: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 40);
    for line in input.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if !ignore_dots && body == b"." {
            break;
        }
        // A lone CR inside a line would be refused upstream; make it a line end.
        for chunk in body.split(|b| *b == b'\r') {
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// The addresses of the To, Cc and Bcc headers; an entry that is not an
/// address is an error, not silently left out (an empty group such as
/// `undisclosed-recipients:;` has no entries).
pub fn header_recipients(message: &[u8]) -> Result<Vec<String>, LocalError> {
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(message) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for list in [parsed.to(), parsed.cc(), parsed.bcc()]
        .into_iter()
        .flatten()
    {
        for addr in list.iter() {
            match (addr.address(), addr.name()) {
                (Some(a), _) => out.push(check_address(a)?),
                (None, Some(name)) => {
                    return Err(LocalError::Address(
                        name.to_string(),
                        "not an e-mail address (in the To, Cc or Bcc header)".into(),
                    ));
                }
                (None, None) => {}
            }
        }
    }
    Ok(out)
}

/// Adds a Date and a Message-ID to a message that lacks them, as sendmail
/// does; `domain` goes to the right of the Message-ID's `@`.
pub fn complete_header(message: &mut Vec<u8>, domain: &str, now: time::OffsetDateTime) {
    let parsed = mail_parser::MessageParser::default().parse_headers(message.as_slice());
    let (has_date, has_id) = parsed
        .as_ref()
        .map(|p| (p.date().is_some(), p.message_id().is_some()))
        .unwrap_or((false, false));
    let mut added = String::new();
    if !has_date && let Ok(date) = now.format(&time::format_description::well_known::Rfc2822) {
        added.push_str(&format!("Date: {date}\r\n"));
    }
    if !has_id {
        added.push_str(&format!(
            "Message-ID: <{}@{domain}>\r\n",
            uuid::Uuid::now_v7().simple()
        ));
    }
    message.splice(0..0, added.into_bytes());
}

/// Removes Bcc headers (with their folded continuation lines) from the header block.
pub fn strip_bcc(message: &[u8]) -> Vec<u8> {
    let split = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(message.len());
    let (head, body) = message.split_at(split);
    let mut out = Vec::with_capacity(message.len());
    let mut skipping = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if continuation {
            if !skipping {
                out.extend_from_slice(line);
            }
            continue;
        }
        skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(body);
    out
}

/// Validates an address given on the command line.
pub fn check_address(a: &str) -> Result<String, LocalError> {
    let a = a.trim().trim_start_matches('<').trim_end_matches('>');
    if a.is_empty()
        || !a.contains('@')
        || a.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
    {
        return Err(LocalError::Address(
            a.to_string(),
            "not an e-mail address".into(),
        ));
    }
    Ok(a.to_string())
}

/// A message from the command line and what is known of its envelope; the
/// sender is completed where the store can be read (by the server for a
/// message handed over its control socket).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Submission {
    /// `-f` / `--from`; else the From header's address, else the default
    /// account's sender or mailbox.
    pub sender: Option<String>,
    /// `-F`: the display name of a From header that hikyaku adds.
    pub full_name: Option<String>,
    pub recipients: Vec<String>,
}

/// The address local submissions come from when none is given: the default
/// account's sender or authorized mailbox.
pub async fn default_sender(store: &Store) -> Result<String, LocalError> {
    let accounts = store.accounts().await?;
    // The account a message without any send-as match would go through.
    let pick = super::routing::default_account(&accounts).ok().flatten();
    pick.and_then(|a| a.sender.clone().or_else(|| a.mailbox.clone()))
        .ok_or(LocalError::NoSender)
}

/// Completes a submission (sender, From, Date, Message-ID, as sendmail does)
/// and queues it; returns the job id. `Ok` means stored and synced.
pub async fn submit(
    store: &Store,
    clock: &dyn Clock,
    submitter: &str,
    submission: Submission,
    mut message: Vec<u8>,
    limit: usize,
    rewrite_from: bool,
) -> Result<String, LocalError> {
    let header_from = super::store_sink::summarize(&message).from;
    let sender = match (&submission.sender, &header_from) {
        (Some(s), _) => check_address(s)?,
        (None, Some(f)) => f.clone(),
        (None, None) => default_sender(store).await?,
    };
    if header_from.is_none() {
        let from = match &submission.full_name {
            Some(name) => format!(
                "From: \"{}\" <{sender}>\r\n",
                name.replace(['"', '\\', '\r', '\n'], "")
            ),
            None => format!("From: {sender}\r\n"),
        };
        message.splice(0..0, from.into_bytes());
    }
    let domain = sender.rsplit_once('@').map_or("localhost", |(_, d)| d);
    complete_header(&mut message, domain, clock.now());
    enqueue(
        store,
        clock,
        submitter,
        &sender,
        submission.recipients,
        message,
        limit,
        rewrite_from,
    )
    .await
}

/// Puts a message into the durable queue, routed to its account as SMTP
/// submissions are (`rewrite_from`: `delivery.rewrite_from`); returns the
/// job id.
#[allow(clippy::too_many_arguments)] // each is one setting of the submission
pub async fn enqueue(
    store: &Store,
    clock: &dyn Clock,
    submitter: &str,
    mail_from: &str,
    recipients: Vec<String>,
    message: Vec<u8>,
    limit: usize,
    rewrite_from: bool,
) -> Result<String, LocalError> {
    if recipients.is_empty() {
        return Err(LocalError::NoRecipients);
    }
    if message.len() > limit {
        return Err(LocalError::TooLarge {
            size: message.len(),
            limit,
        });
    }
    // The SMTP listener refuses NUL too (554 5.6.0); both paths agree.
    if message.contains(&0) {
        return Err(LocalError::Nul);
    }
    let mut job = new_job(submitter, "local", None, mail_from, recipients, message);
    let accounts = store.accounts().await?;
    job.account_id = super::routing::route(
        &accounts,
        None,
        &job.mail_from,
        job.header_from.as_deref(),
        rewrite_from,
    )
    .map_err(LocalError::Unroutable)?;
    if let Some(reason) = super::routing::too_large(&accounts, job.account_id, job.body.len()) {
        return Err(LocalError::TooLargeForAccount(reason));
    }
    store.enqueue(&job, clock.unix()).await?;
    Ok(job.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MimeHeaders;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sendmail_flags() {
        let a = parse_sendmail_args(args(&[
            "-t",
            "-oi",
            "-f",
            "cron@host",
            "-FCron Daemon",
            "a@example.com",
        ]))
        .unwrap();
        assert!(a.from_headers && a.ignore_dots);
        assert_eq!(a.sender.as_deref(), Some("cron@host"));
        assert_eq!(a.full_name.as_deref(), Some("Cron Daemon"));
        assert_eq!(a.recipients, vec!["a@example.com"]);
        assert_eq!(
            parse_sendmail_args(args(&["-fx@y"]))
                .unwrap()
                .sender
                .as_deref(),
            Some("x@y")
        );
        assert!(parse_sendmail_args(args(&["-bs"])).is_err());
        assert!(parse_sendmail_args(args(&["-f"])).is_err());
        assert!(parse_sendmail_args(args(&["-Z"])).is_err());
        assert_eq!(
            parse_sendmail_args(args(&["-o", "x", "b@c"]))
                .unwrap()
                .recipients,
            vec!["b@c"]
        );
    }

    #[test]
    fn line_ends_and_the_lone_dot() {
        assert_eq!(read_message(b"a\nb\r\n.\nc\n", false), b"a\r\nb\r\n");
        assert_eq!(read_message(b"a\nb\r\n.\nc", true), b"a\r\nb\r\n.\r\nc\r\n");
        assert_eq!(read_message(b"x\ry\n", true), b"x\r\ny\r\n");
    }

    #[test]
    fn recipients_from_headers_and_bcc_removed() {
        let m = b"From: a@x\r\nTo: B <b@x>, c@x\r\nBcc: secret@x,\r\n  other@x\r\nSubject: s\r\n\r\nBcc: body stays\r\n";
        let mut r = header_recipients(m).unwrap();
        r.sort();
        assert_eq!(r, vec!["b@x", "c@x", "other@x", "secret@x"]);
        let stripped = strip_bcc(m);
        let text = String::from_utf8(stripped).unwrap();
        assert!(
            !text.contains("secret@x") && !text.contains("other@x"),
            "{text}"
        );
        assert!(text.contains("Subject: s\r\n\r\nBcc: body stays"), "{text}");
        // Not an address: an error naming it. An empty group is no recipient.
        let e = header_recipients(b"To: boss, a@x\r\n\r\nx\r\n").unwrap_err();
        assert!(e.to_string().contains("\"boss\""), "{e}");
        assert_eq!(
            header_recipients(b"To: undisclosed-recipients:;\r\n\r\n").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn date_and_message_id_are_added_when_missing() {
        let mut m = b"Subject: s\r\n\r\nbody\r\n".to_vec();
        let now = time::macros::datetime!(2026-11-27 10:00 UTC);
        complete_header(&mut m, "example.com", now);
        let parsed = mail_parser::MessageParser::default().parse(&m).unwrap();
        assert!(parsed.date().is_some(), "{}", String::from_utf8_lossy(&m));
        assert!(
            parsed
                .message_id()
                .is_some_and(|id| id.ends_with("@example.com")),
            "{}",
            String::from_utf8_lossy(&m)
        );
        let kept = b"Date: Mon, 2 Jan 2006 15:04:05 +0000\r\nMessage-ID: <a@b>\r\n\r\nx\r\n";
        let mut same = kept.to_vec();
        complete_header(&mut same, "example.com", now);
        assert_eq!(same, kept);
    }

    #[test]
    fn builds_a_message_with_an_attachment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scan.pdf");
        std::fs::write(&file, b"%PDF-1.4 \x00\x01\x02").unwrap();
        let req = SendRequest {
            from: "Scanner <scanner@example.com>".into(),
            to: vec!["boss@example.com".into()],
            subject: "Scan ✓".into(),
            body: "Attached.".into(),
            attachments: vec![file],
            ..Default::default()
        };
        let bytes = build_message(&req, 1 << 20).unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(parsed.subject(), Some("Scan ✓"));
        assert!(parsed.date().is_some());
        assert!(
            parsed
                .message_id()
                .is_some_and(|id| id.ends_with("@example.com"))
        );
        // Sized before it is read: too big once encoded, refused.
        assert!(matches!(
            build_message(&req, 10),
            Err(LocalError::TooLargeInput { limit: 10 })
        ));
        let att = parsed.attachments().next().unwrap();
        assert_eq!(att.attachment_name(), Some("scan.pdf"));
        assert_eq!(att.contents(), b"%PDF-1.4 \x00\x01\x02");
        assert!(
            build_message(
                &SendRequest {
                    from: "a@b".into(),
                    ..Default::default()
                },
                1 << 20
            )
            .is_err()
        );
    }
}
