//! Failure notices (RFC 3464): when a job fails for good, or some of its
//! recipients are refused, a `multipart/report; report-type=delivery-status`
//! message is queued as a new job (submitter `hikyaku`, empty envelope
//! sender) that goes out through the same account. It goes to
//! `delivery.failure_notice_to`, or to the failed message's envelope sender
//! when that is empty; never when it is `"none"`, and never about a failure
//! notice itself (loops) or a message whose envelope sender was `<>`.
//!
//! The notice carries the original header block (`text/rfc822-headers`), not
//! the body: the sender has the body, and the notice should not copy a large
//! scan or confidential content to an administrator's address.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::outcome::{Refusal, enhanced_code};
use super::rewrite::{encode_phrase, header_block_end, is_safe_address, sanitize_phrase};
use crate::queue::notices::{self, is_notice};
use crate::queue::{Job, NewJob};

/// `text` in US-ASCII: the dashes and arrows of our advice spelled out,
/// anything else outside ASCII as `?`.
fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '—' | '–' => "-".to_owned(),
            '→' => "->".to_owned(),
            c if c.is_ascii() => c.to_string(),
            _ => "?".to_owned(),
        })
        .collect()
}

/// Where the notice about `job` goes, if anywhere.
pub fn notice_recipient(failure_notice_to: &str, job: &Job) -> Option<String> {
    // No notice about a notice, nor about any message with the null sender
    // (RFC 3464 §2: it exists to stop such loops).
    if is_notice(job) || job.mail_from.trim().is_empty() {
        return None;
    }
    let configured = failure_notice_to.trim();
    if configured.eq_ignore_ascii_case("none") {
        return None;
    }
    let to = if configured.is_empty() {
        job.mail_from.trim()
    } else {
        configured
    };
    is_safe_address(to).then(|| to.to_owned())
}

/// Everything a notice says.
pub struct Notice<'a> {
    pub job: &'a Job,
    /// The original message (its header block is attached), when still stored.
    pub original: Option<&'a [u8]>,
    /// Each recipient that failed.
    pub failed: &'a [Refusal],
    /// Whether the job gave up after `max_age_hours` (a temporary failure).
    pub expired: bool,
    pub to: &'a str,
    /// The From address of the notice (the account's mailbox when known).
    pub from: &'a str,
    pub reporting_mta: &'a str,
    pub now: OffsetDateTime,
    pub boundary: &'a str,
}

fn one_line(text: &str, max: usize) -> String {
    let mut s = sanitize_phrase(text);
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" ...");
    }
    s
}

fn date(t: OffsetDateTime) -> String {
    t.format(&Rfc2822).unwrap_or_default()
}

/// The notice as a message (CRLF line endings).
pub fn build(n: &Notice<'_>) -> Vec<u8> {
    let job = n.job;
    let arrival = crate::clock::from_unix(job.created_at);
    let subject_of_original = job
        .subject
        .as_deref()
        .map(|s| one_line(s, 200))
        .unwrap_or_default();
    let subject = if subject_of_original.is_empty() {
        "Undelivered Mail Returned to Sender".to_owned()
    } else {
        format!("Undelivered Mail Returned to Sender: {subject_of_original}")
    };
    let subject_field = if subject.is_ascii() {
        subject.clone()
    } else {
        super::rewrite::encoded_words(&subject)
    };
    let mta = one_line(n.reporting_mta, 200);
    let mut m = String::new();
    let mut line = |s: &str| {
        m.push_str(s);
        m.push_str("\r\n");
    };
    line(&format!(
        "From: {} <{}>",
        encode_phrase("Mail Delivery System"),
        n.from
    ));
    line(&format!("To: {}", n.to));
    line(&format!("Subject: {subject_field}"));
    line(&format!("Date: {}", date(n.now)));
    line(&format!("Message-ID: <{}.dsn@{mta}>", uuid::Uuid::now_v7()));
    line("Auto-Submitted: auto-replied");
    line("MIME-Version: 1.0");
    line(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"{}\"",
        n.boundary
    ));
    line("");
    line("This is a MIME-encapsulated message.");
    line("");
    line(&format!("--{}", n.boundary));
    line("Content-Type: text/plain; charset=utf-8");
    line("Content-Transfer-Encoding: 8bit");
    line("");
    if n.expired {
        line("hikyaku could not deliver your message in time and has given up.");
    } else {
        line("hikyaku could not deliver your message to the following recipients.");
    }
    line("");
    for Refusal {
        recipient: rcpt,
        reply,
    } in n.failed
    {
        line(&format!(
            "  <{}>: {}",
            one_line(rcpt, 320),
            one_line(reply, 900)
        ));
    }
    line("");
    line(&format!("  Job:       {}", job.id));
    line(&format!("  Accepted:  {}", date(arrival)));
    if !subject_of_original.is_empty() {
        line(&format!("  Subject:   {subject_of_original}"));
    }
    line(&format!("  Attempts:  {}", job.attempts));
    line("");
    line(&format!("--{}", n.boundary));
    line("Content-Type: message/delivery-status");
    line("");
    line(&format!("Reporting-MTA: dns; {mta}"));
    line(&format!("Arrival-Date: {}", date(arrival)));
    for Refusal {
        recipient: rcpt,
        reply,
    } in n.failed
    {
        let status = if n.expired {
            "4.4.7".to_owned()
        } else {
            enhanced_code(reply)
                .filter(|c| c.starts_with('5') || c.starts_with('4'))
                .unwrap_or_else(|| "5.0.0".to_owned())
        };
        line("");
        line(&format!(
            "Final-Recipient: rfc822; {}",
            ascii(&one_line(rcpt, 320))
        ));
        line("Action: failed");
        line(&format!("Status: {status}"));
        // The delivery-status part is US-ASCII (RFC 3464 §2.1.2); the reply
        // and its advice appear unchanged in the text part above.
        line(&format!(
            "Diagnostic-Code: smtp; {}",
            ascii(&one_line(reply, 900))
        ));
        line(&format!("Last-Attempt-Date: {}", date(n.now)));
    }
    line("");
    let mut out = m.into_bytes();
    if let Some(original) = n.original {
        let end = header_block_end(original);
        out.extend_from_slice(format!("--{}\r\n", n.boundary).as_bytes());
        out.extend_from_slice(b"Content-Type: text/rfc822-headers\r\n\r\n");
        out.extend_from_slice(&super::smtp::prepare_data(&original[..end]));
        out.extend_from_slice(b"\r\n\r\n");
    }
    out.extend_from_slice(format!("--{}--\r\n", n.boundary).as_bytes());
    out
}

/// The job that carries a notice: it enters the queue like any message
/// ([`crate::queue::notices`]).
pub fn job(n: &Notice<'_>, account_id: Option<i64>) -> NewJob {
    notices::new_job(
        build(n),
        notices::Addressing {
            account_id,
            to: n.to,
            from: n.from,
            subject: n
                .job
                .subject
                .as_deref()
                .map(|s| format!("Undelivered Mail Returned to Sender: {}", one_line(s, 200)))
                .unwrap_or_else(|| "Undelivered Mail Returned to Sender".to_owned()),
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn job() -> Job {
        Job {
            id: "j1".into(),
            account_id: Some(1),
            submitter: "printer".into(),
            source: "smtp".into(),
            mail_from: "scanner@printers.local".into(),
            rcpt_to: vec!["a@b.example".into()],
            header_from: None,
            subject: Some("Scan ✓".into()),
            size: 10,
            state: crate::queue::JobState::Sending,
            attempts: 1,
            next_attempt_at: 0,
            last_reply: None,
            last_reply_reason: None,
            via_account_id: None,
            created_at: 1_700_000_000,
            updated_at: 0,
        }
    }

    #[test]
    fn recipient_rules() {
        let j = job();
        assert_eq!(
            notice_recipient("", &j).as_deref(),
            Some("scanner@printers.local")
        );
        assert_eq!(notice_recipient("None", &j), None);
        assert_eq!(
            notice_recipient("admin@contoso.example", &j).as_deref(),
            Some("admin@contoso.example")
        );
        let mut null_sender = job();
        null_sender.mail_from = String::new();
        assert_eq!(notice_recipient("", &null_sender), None);
        // Not even to a configured address: <> means "send no notice".
        assert_eq!(
            notice_recipient("admin@contoso.example", &null_sender),
            None
        );
        let mut notice = job();
        notice.submitter = notices::SUBMITTER.into();
        notice.mail_from = String::new();
        assert_eq!(notice_recipient("admin@contoso.example", &notice), None);
    }

    #[test]
    fn report_is_multipart_report() {
        let j = job();
        let failed = vec![
            Refusal {
                recipient: "a@b.example".to_owned(),
                reply: "550 5.1.1 User unknown\r\nBcc: x".to_owned(),
            },
            Refusal {
                recipient: "c@b.example".to_owned(),
                reply: "554 5.2.252 SendAsDenied — grant Send As → retry ✓".to_owned(),
            },
        ];
        let original = b"From: s@p.local\r\nSubject: Scan\r\n\r\nsecret body\r\n";
        let n = Notice {
            job: &j,
            original: Some(original),
            failed: &failed,
            expired: false,
            to: "scanner@printers.local",
            from: "printer@contoso.example",
            reporting_mta: "relay.local",
            now: crate::clock::from_unix(1_700_000_100),
            boundary: "BOUNDARY",
        };
        let msg = String::from_utf8(build(&n)).unwrap();
        assert!(msg.contains("multipart/report; report-type=delivery-status"));
        assert!(msg.contains(
            "Final-Recipient: rfc822; a@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ));
        assert!(msg.contains("Diagnostic-Code: smtp; 550 5.1.1 User unknown Bcc: x\r\n"));
        // The delivery-status part is ASCII; the text part keeps the reply.
        assert!(msg.contains(
            "Diagnostic-Code: smtp; 554 5.2.252 SendAsDenied - grant Send As -> retry ?\r\n"
        ));
        let status_part = msg
            .split("Content-Type: message/delivery-status")
            .nth(1)
            .and_then(|s| s.split("--BOUNDARY").next())
            .unwrap();
        assert!(status_part.is_ascii(), "{status_part}");
        assert!(msg.contains(
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: s@p.local\r\nSubject: Scan\r\n"
        ));
        assert!(!msg.contains("secret body"));
        assert!(msg.contains("Subject: =?UTF-8?B?"));
        assert!(msg.ends_with("--BOUNDARY--\r\n"));
        let parsed = mail_parser::MessageParser::default()
            .parse(msg.as_bytes())
            .unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Undelivered Mail Returned to Sender: Scan ✓")
        );
        assert!(!msg.contains("\n\n") && !msg.replace("\r\n", "").contains('\n'));
        let new = super::job(&n, Some(1));
        assert_eq!(new.mail_from, "");
        assert_eq!(new.submitter, notices::SUBMITTER);
        assert_eq!(new.rcpt_to, vec!["scanner@printers.local".to_owned()]);
    }
}
