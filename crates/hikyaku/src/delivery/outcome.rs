//! What one delivery attempt came to, and how an upstream reply is judged:
//! `4xx`, connection loss, timeouts and TLS failures are temporary; `5xx` is
//! permanent — except where the reply says the *account* (not the message)
//! has a problem: a refused access token, SMTP AUTH switched off for the
//! mailbox, a daily sending quota. Those wait and are retried, so that no
//! message is lost while an administrator fixes the setting. The upstream's
//! full reply is always kept for the job history, with advice appended where
//! we know what to do.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::i18n::Reason;

/// The result of [`super::Delivery::deliver_one`], as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream accepted the message (its `250` reply).
    Sent { reply: String },
    /// A temporary failure; the job is due again at `next_attempt_at` (unix s).
    Deferred { reply: String, next_attempt_at: i64 },
    /// A permanent failure (or the job grew older than `max_age_hours`).
    Failed { reply: String },
    /// The account cannot send until an administrator acts (token status
    /// Error / Not registered, account switched off). The attempt is not counted.
    WaitingForAuthorization { reason: String },
}

/// Where in the SMTP dialogue something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Tls,
    Auth,
    Mail,
    Rcpt,
    Data,
    EndOfData,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Auth => "auth",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::EndOfData => "end of data",
        }
    }
}

/// How a reply is acted upon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retry later with backoff.
    Temporary,
    /// Fail the job now.
    Permanent,
    /// The access token was refused: refresh once, then retry later.
    TokenRejected,
    /// SMTP AUTH is disabled for the mailbox or tenant (`5.7.139`): retry
    /// later, with advice; only max age fails the job.
    AuthDisabled,
}

/// Judges a negative reply `code text` received at `stage`.
pub fn classify(stage: Stage, code: u16, text: &str) -> Class {
    let upper = text.to_ascii_uppercase();
    if matches!(stage, Stage::Connect | Stage::Tls) {
        // A refusing greeting is about the server or the account, never the message.
        return Class::Temporary;
    }
    if stage == Stage::Auth {
        if upper.contains("5.7.139") {
            return Class::AuthDisabled;
        }
        return match code {
            535 | 534 | 530 => Class::TokenRejected,
            // Other refusals at AUTH are about the account, not the message.
            _ => Class::Temporary,
        };
    }
    match code {
        400..=499 => Class::Temporary,
        500..=599 if is_quota(&upper) => Class::Temporary,
        // "Client not authenticated" after a successful AUTH: our session, not the message.
        530 => Class::Temporary,
        500..=599 => Class::Permanent,
        _ => Class::Temporary,
    }
}

/// Sending limits reported with a 5xx code that clear by themselves.
fn is_quota(upper: &str) -> bool {
    (upper.contains("5.4.5") && (upper.contains("LIMIT") || upper.contains("QUOTA")))
        || upper.contains("SUBMISSIONQUOTAEXCEEDED")
        || upper.contains("SENDING LIMIT EXCEEDED")
}

/// What an administrator should do about a reply, when we know: the code
/// of the advice (Fluent `reason-smtp-advice-…`).
fn advice_code(text: &str) -> Option<&'static str> {
    let upper = text.to_ascii_uppercase();
    if upper.contains("5.7.139") {
        Some("smtp-advice-auth-disabled")
    } else if upper.contains("5.2.252")
        || upper.contains("SENDASDENIED")
        || upper.contains("5.7.60")
    {
        Some("smtp-advice-send-as")
    } else if is_quota(&upper) {
        Some("smtp-advice-quota")
    } else {
        None
    }
}

/// The advice about a reply, when we know what to do.
pub fn advice(text: &str) -> Option<Reason> {
    advice_code(text).map(Reason::new)
}

/// The reply with its advice appended. The advice is chosen from the
/// English text, which quotes the upstream's reply as it came.
pub fn with_advice(reply: Reason) -> Reason {
    match advice(&reply.to_string()) {
        Some(a) => super::replies::then(reply, a),
        None => reply,
    }
}

/// Decodes the base64 JSON of Gmail's `334` error challenge (protocols.md
/// §3) to one line of text; `None` when it is not base64 or not UTF-8.
pub fn decode_challenge(b64: &str) -> Option<String> {
    let bytes = STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    Some(
        text.trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    )
}

/// The first enhanced status code (`x.y.z`, RFC 3463) in a reply.
pub fn enhanced_code(reply: &str) -> Option<String> {
    reply.split_whitespace().find_map(|word| {
        let parts: Vec<&str> = word.split('.').collect();
        let ok = parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then(|| word.to_owned())
    })
}

/// The reply code at the start of a recorded reply (`"550 5.1.1 ..."` → 550).
pub fn reply_code(reply: &str) -> Option<u16> {
    reply.get(..3).and_then(|c| c.parse().ok())
}

/// How an SMTP reply code says it went (RFC 5321 §4.2.1, its first digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    PositiveCompletion,
    PositiveIntermediate,
    TransientNegative,
    PermanentNegative,
}

/// An SMTP reply code, read as its three digits: severity, class (syntax,
/// information, connections, mail system) and detail. The reply's text
/// stays as the server sent it, beside the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyCode {
    pub severity: Severity,
    pub class: u8,
    pub detail: u8,
}

impl ReplyCode {
    /// The code `value` (e.g. 550), if it is one.
    pub fn new(value: u16) -> Option<Self> {
        let severity = match value / 100 {
            2 => Severity::PositiveCompletion,
            3 => Severity::PositiveIntermediate,
            4 => Severity::TransientNegative,
            5 => Severity::PermanentNegative,
            _ => return None,
        };
        let class = u8::try_from(value / 10 % 10).ok()?;
        let detail = u8::try_from(value % 10).ok()?;
        (class <= 5).then_some(ReplyCode {
            severity,
            class,
            detail,
        })
    }

    /// The code as a number (550).
    pub fn value(self) -> u16 {
        let first = match self.severity {
            Severity::PositiveCompletion => 2,
            Severity::PositiveIntermediate => 3,
            Severity::TransientNegative => 4,
            Severity::PermanentNegative => 5,
        };
        first * 100 + u16::from(self.class) * 10 + u16::from(self.detail)
    }

    pub fn is_permanent(self) -> bool {
        self.severity == Severity::PermanentNegative
    }
}

impl std::fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.value())
    }
}

/// A recipient the upstream refused, with its reply as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub recipient: String,
    pub reply: String,
}

impl Refusal {
    /// `<recipient>: reply`, as recorded in a job's last reply.
    pub fn describe(list: &[Refusal]) -> String {
        list.iter()
            .map(|r| format!("<{}>: {}", r.recipient, r.reply))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_read_as_their_digits() {
        let c = ReplyCode::new(554).unwrap();
        assert_eq!(
            (c.severity, c.class, c.detail),
            (Severity::PermanentNegative, 5, 4)
        );
        assert!(c.is_permanent());
        assert_eq!((c.value(), c.to_string()), (554, "554".to_owned()));
        assert!(!ReplyCode::new(421).unwrap().is_permanent());
        for bad in [0, 99, 199, 600, 560] {
            assert_eq!(ReplyCode::new(bad), None, "{bad}");
        }
        assert_eq!(
            reply_code("550 5.1.1 unknown").and_then(ReplyCode::new),
            ReplyCode::new(550)
        );
    }

    #[test]
    fn classification() {
        use Class::*;
        assert_eq!(
            classify(Stage::EndOfData, 451, "4.3.0 try later"),
            Temporary
        );
        assert_eq!(classify(Stage::Mail, 421, "4.4.2 timeout"), Temporary);
        assert_eq!(
            classify(
                Stage::Rcpt,
                432,
                "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"
            ),
            Temporary
        );
        assert_eq!(classify(Stage::Rcpt, 550, "5.1.1 User unknown"), Permanent);
        assert_eq!(
            classify(
                Stage::EndOfData,
                554,
                "5.2.252 SendAsDenied; a not allowed to send as b"
            ),
            Permanent
        );
        assert_eq!(
            classify(
                Stage::EndOfData,
                550,
                "5.4.5 Daily user sending limit exceeded"
            ),
            Temporary
        );
        assert_eq!(
            classify(Stage::Auth, 535, "5.7.3 Authentication unsuccessful"),
            TokenRejected
        );
        assert_eq!(
            classify(Stage::Auth, 535, "5.7.8 Username and Password not accepted"),
            TokenRejected
        );
        assert_eq!(
            classify(
                Stage::Auth,
                535,
                "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox"
            ),
            AuthDisabled
        );
        assert_eq!(
            classify(Stage::Auth, 454, "4.7.0 Temporary failure"),
            Temporary
        );
        assert_eq!(
            classify(Stage::Auth, 504, "5.7.4 Unrecognized authentication type"),
            Temporary
        );
        assert_eq!(
            classify(Stage::Mail, 530, "5.7.57 Client not authenticated"),
            Temporary
        );
        assert_eq!(classify(Stage::Connect, 554, "5.3.2 no service"), Temporary);
    }

    #[test]
    fn advice_and_codes() {
        let up = super::super::replies::upstream;
        let r = with_advice(up("535 5.7.139 Authentication unsuccessful")).to_string();
        assert!(r.starts_with("535 5.7.139 Authentication unsuccessful — "));
        assert!(r.contains("Manage email apps") && r.contains("Authenticated SMTP"));
        assert!(
            advice("554 5.2.252 SendAsDenied")
                .unwrap()
                .to_string()
                .contains("Sender")
        );
        assert_eq!(with_advice(up("250 ok")).to_string(), "250 ok");
        assert_eq!(
            enhanced_code("550 5.1.1 <a@b>: unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(enhanced_code("550 no code 1.2"), None);
        assert_eq!(reply_code("451 4.3.0 x"), Some(451));
        assert_eq!(reply_code("timeout"), None);
    }

    #[test]
    fn gmail_challenge_decodes() {
        let b64 = STANDARD
            .encode(r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#);
        assert_eq!(
            decode_challenge(&b64).as_deref(),
            Some(r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#)
        );
        assert_eq!(decode_challenge("!!!"), None);
        let b64 = STANDARD.encode("plain\r\ntext");
        assert_eq!(decode_challenge(&b64).as_deref(), Some("plain  text"));
    }
}
