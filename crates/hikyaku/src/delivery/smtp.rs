//! The upstream SMTP transport: lettre's low-level [`AsyncSmtpConnection`],
//! driven step by step so that each step can be judged on its own.
//!
//! * TLS: `smtp_security = "starttls"` requires STARTTLS — a server that does
//!   not offer it is refused, never used in plain text; `"implicit"` speaks
//!   TLS from the first byte. Trust comes from the account's Verify Server
//!   Certificate setting and the administrator's extra CAs. lettre takes no
//!   custom certificate verifier, so the "Add CN" check
//!   ([`crate::tls::check_cn`]) runs on `peer_certificate()` right after the
//!   handshake, before AUTH: no credential has been sent when it fails.
//! * AUTH XOAUTH2 is sent by us through `command()` (lettre's own `auth()`
//!   cannot answer Gmail's `334` error challenge): a `334` is answered with an
//!   empty line, and its base64 JSON is kept in the recorded reply.
//! * Each recipient gets its own `RCPT`: `5xx` refuses that recipient only,
//!   a `4xx` aborts the transaction (the whole job is retried later; nothing
//!   was sent).
//! * DATA: lettre's `message()` dot-stuffs and appends `CRLF.CRLF` itself, so
//!   [`prepare_data`] strips the message's own final CRLF (else the message
//!   would grow a blank line) and turns stray bare CR/LF into CRLF (lettre's
//!   dot-stuffing only recognises lines that end in CRLF).
//! * Every step is bounded: connecting by `connect_timeout_secs` (plus one
//!   command timeout for the greeting and EHLO), each reply by
//!   `command_timeout_secs`, the end of DATA additionally by the time to
//!   upload the message at 64 KiB/s.
//!
//! One connection per job: relay volumes are small, the access token may
//! change between jobs, and lettre's pool breaks on server-side idle closes
//! (lettre issue #743, "incomplete response"). lettre's `tracing` feature
//! must stay off: it would log the AUTH line, i.e. the access token.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lettre::Address;
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Quit, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use rustls_pki_types::CertificateDer;

use super::outcome::{Stage, decode_challenge};

/// How the TLS of an upstream connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    StartTls,
    Implicit,
}

impl Security {
    /// The account's `smtp_security` value ("implicit" or, by default, STARTTLS).
    pub fn parse(text: &str) -> Security {
        if text.eq_ignore_ascii_case("implicit") {
            Security::Implicit
        } else {
            Security::StartTls
        }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub tls: TlsParameters,
    /// Run the "Add CN" check after the handshake.
    pub check_cn: bool,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub hello: ClientId,
}

/// Builds the TLS parameters of an account.
pub fn tls_parameters(
    host: &str,
    verify: bool,
    extra_cas: &[CertificateDer<'static>],
) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(host.to_owned());
    for der in extra_cas {
        match Certificate::from_der(der.to_vec()) {
            Ok(c) => b = b.add_root_certificate(c),
            Err(e) => tracing::warn!(error = %e, "an extra CA certificate is unusable; skipped"),
        }
    }
    b.dangerous_accept_invalid_certs(!verify)
        .build_rustls()
        .map_err(|e| format!("TLS setup failed: {}", describe(&e)))
}

/// A failure of the SMTP dialogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpError {
    /// A negative reply; `text` is every line of it.
    Reply {
        stage: Stage,
        code: u16,
        text: String,
    },
    /// No usable connection: refused, lost, timed out, TLS failed.
    Transport { stage: Stage, reason: String },
    /// The certificate's CN does not name the host ("Add CN"); no AUTH was sent.
    Identity(String),
    /// An address we were given is not valid.
    BadAddress { stage: Stage, reason: String },
}

impl SmtpError {
    /// The text recorded in the job history.
    pub fn reply(&self) -> String {
        match self {
            SmtpError::Reply { code, text, .. } => format!("{code} {text}"),
            SmtpError::Transport { stage, reason } => {
                format!("{reason} (at {})", stage.as_str())
            }
            SmtpError::Identity(reason) => {
                format!("TLS: {reason}; nothing was sent")
            }
            SmtpError::BadAddress { reason, .. } => reason.clone(),
        }
    }

    pub fn code(&self) -> Option<u16> {
        match self {
            SmtpError::Reply { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What `send` achieved: the `250` after DATA and the refused recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    pub reply: String,
    /// (recipient, reply) of each recipient refused with `5xx`.
    pub refused: Vec<(String, String)>,
}

/// The result of `send` when no message went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Every recipient was refused (permanently): (recipient, reply).
    AllRefused(Vec<(String, String)>),
    Smtp(SmtpError),
}

/// An open, encrypted SMTP session.
pub struct Session {
    conn: AsyncSmtpConnection,
    command_timeout: Duration,
}

fn reply_text(r: &Response) -> String {
    r.message().collect::<Vec<_>>().join(" ")
}

fn code_of(r: &Response) -> u16 {
    r.code().to_string().parse().unwrap_or(0)
}

/// Describes a lettre error: the TLS reason when there is one, else the
/// chain of causes.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return format!("TLS: {}", crate::tls::describe_tls_error(tls));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return format!("TLS: {}", crate::tls::describe_tls_error(tls));
            }
            use std::io::ErrorKind as K;
            match io.kind() {
                K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                    return "the server closed the connection".to_owned();
                }
                K::ConnectionRefused => return "connection refused".to_owned(),
                K::TimedOut => return "timed out".to_owned(),
                _ => {}
            }
        }
        source = err.source();
    }
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut text = e.to_string();
    if text.contains("incomplete response") {
        text = "the server closed the connection".to_owned();
    }
    text
}

fn from_lettre(stage: Stage, e: &lettre::transport::smtp::Error) -> SmtpError {
    if let Some(code) = e.status() {
        let code: u16 = code.to_string().parse().unwrap_or(0);
        let text = std::error::Error::source(e)
            .map(ToString::to_string)
            .unwrap_or_default();
        return SmtpError::Reply { stage, code, text };
    }
    SmtpError::Transport {
        stage,
        reason: describe(e),
    }
}

fn timed_out(stage: Stage, after: Duration) -> SmtpError {
    SmtpError::Transport {
        stage,
        reason: format!("no answer from the server within {} s", after.as_secs()),
    }
}

/// Connects, secures the connection (STARTTLS or implicit TLS) and runs the
/// CN check. Never returns a plain-text session.
pub async fn connect(t: &Target) -> Result<Session, SmtpError> {
    let implicit = (t.security == Security::Implicit).then(|| t.tls.clone());
    let limit = t.connect_timeout + t.command_timeout;
    let fut = AsyncSmtpConnection::connect_tokio1(
        (t.host.as_str(), t.port),
        Some(t.connect_timeout),
        &t.hello,
        implicit,
        None,
    );
    let mut conn = match tokio::time::timeout(limit, fut).await {
        Err(_) => return Err(timed_out(Stage::Connect, limit)),
        Ok(Err(e)) => return Err(from_lettre(Stage::Connect, &e)),
        Ok(Ok(c)) => c,
    };
    if t.security == Security::StartTls {
        if !conn.server_info().supports_feature(Extension::StartTls) {
            abort(&mut conn, t.command_timeout).await;
            return Err(SmtpError::Transport {
                stage: Stage::Tls,
                reason: "the server does not offer STARTTLS; refusing to send in plain text (check the port, or choose implicit TLS for port 465)".to_owned(),
            });
        }
        match tokio::time::timeout(t.command_timeout, conn.starttls(t.tls.clone(), &t.hello)).await
        {
            Err(_) => return Err(timed_out(Stage::Tls, t.command_timeout)),
            Ok(Err(e)) => return Err(from_lettre(Stage::Tls, &e)),
            Ok(Ok(())) => {}
        }
    }
    if !conn.is_encrypted() {
        abort(&mut conn, t.command_timeout).await;
        return Err(SmtpError::Transport {
            stage: Stage::Tls,
            reason: "the connection is not encrypted; refusing to send".to_owned(),
        });
    }
    if t.check_cn {
        let checked = conn
            .peer_certificate()
            .map_err(|e| format!("no server certificate: {}", describe(&e)))
            .and_then(|leaf| crate::tls::check_cn(&leaf, &t.host).map_err(|e| e.to_string()));
        if let Err(reason) = checked {
            abort(&mut conn, t.command_timeout).await;
            return Err(SmtpError::Identity(reason));
        }
    }
    Ok(Session {
        conn,
        command_timeout: t.command_timeout,
    })
}

async fn abort(conn: &mut AsyncSmtpConnection, limit: Duration) {
    let _ = tokio::time::timeout(limit.min(Duration::from_secs(5)), conn.abort()).await;
}

impl Session {
    async fn command(
        &mut self,
        stage: Stage,
        line: impl std::fmt::Display,
    ) -> Result<Response, SmtpError> {
        match tokio::time::timeout(self.command_timeout, self.conn.command(line)).await {
            Err(_) => Err(timed_out(stage, self.command_timeout)),
            Ok(Err(e)) => Err(from_lettre(stage, &e)),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// SASL XOAUTH2 with an initial response (protocols.md §2, §3).
    pub async fn auth_xoauth2(&mut self, user: &str, token: &str) -> Result<(), SmtpError> {
        if !super::rewrite::is_safe_address(user) || token.chars().any(char::is_control) {
            return Err(SmtpError::BadAddress {
                stage: Stage::Auth,
                reason: format!("the authorized mailbox {user:?} cannot be used for AUTH"),
            });
        }
        let ir = STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
        let first = self
            .command(Stage::Auth, format!("AUTH XOAUTH2 {ir}\r\n"))
            .await?;
        match code_of(&first) {
            235 => Ok(()),
            334 => {
                // An error challenge: answer with an empty line to get the final reply.
                let challenge = reply_text(&first);
                let detail = decode_challenge(&challenge).unwrap_or(challenge);
                let note = format!(" (server challenge: {detail})");
                match self.command(Stage::Auth, "\r\n").await {
                    Ok(r) if code_of(&r) == 235 => Ok(()),
                    Ok(r) => Err(SmtpError::Reply {
                        stage: Stage::Auth,
                        code: 535,
                        text: format!("{} {}{note}", code_of(&r), reply_text(&r)),
                    }),
                    Err(SmtpError::Reply { code, text, .. }) => Err(SmtpError::Reply {
                        stage: Stage::Auth,
                        code,
                        text: format!("{text}{note}"),
                    }),
                    Err(other) => Err(other),
                }
            }
            other => Err(SmtpError::Reply {
                stage: Stage::Auth,
                code: if other == 0 { 535 } else { other },
                text: reply_text(&first),
            }),
        }
    }

    /// MAIL, one RCPT per recipient, DATA. Returns once the server accepted
    /// the message (its reply after the final dot).
    pub async fn send(
        &mut self,
        from: &str,
        recipients: &[String],
        data: &[u8],
    ) -> Result<SendReport, SendError> {
        let smtp = SendError::Smtp;
        let sender: Address = from.parse().map_err(|_| {
            smtp(SmtpError::BadAddress {
                stage: Stage::Mail,
                reason: format!(
                    "the sender address {from:?} is not a valid address (check the account's Sender in E-mail Settings)"
                ),
            })
        })?;
        let mut params = Vec::new();
        let info = self.conn.server_info();
        let utf8 = !from.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        if utf8 && info.supports_feature(Extension::SmtpUtfEight) {
            params.push(MailParameter::SmtpUtfEight);
        }
        if !data.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.command(Stage::Mail, Mail::new(Some(sender), params))
            .await
            .map_err(smtp)?;

        let mut refused = Vec::new();
        let mut accepted = 0usize;
        for rcpt in recipients {
            let Ok(addr) = rcpt.parse::<Address>() else {
                refused.push((rcpt.clone(), "not a valid address".to_owned()));
                continue;
            };
            match self.command(Stage::Rcpt, Rcpt::new(addr, Vec::new())).await {
                Ok(_) => accepted += 1,
                Err(SmtpError::Reply { code, text, .. }) if (500..600).contains(&code) => {
                    refused.push((rcpt.clone(), format!("{code} {text}")));
                }
                Err(e) => return Err(smtp(e)),
            }
        }
        if accepted == 0 {
            let _ = self.command(Stage::Rcpt, "RSET\r\n").await;
            return Err(SendError::AllRefused(refused));
        }

        self.command(Stage::Data, Data).await.map_err(smtp)?;
        let size_allowance =
            Duration::from_secs(u64::try_from(data.len() / 65_536).unwrap_or(u64::MAX));
        let limit = self.command_timeout + size_allowance;
        let reply = match tokio::time::timeout(limit, self.conn.message(data)).await {
            Err(_) => return Err(smtp(timed_out(Stage::EndOfData, limit))),
            Ok(Err(e)) => return Err(smtp(from_lettre(Stage::EndOfData, &e))),
            Ok(Ok(r)) => r,
        };
        Ok(SendReport {
            reply: format!("{} {}", code_of(&reply), reply_text(&reply)),
            refused,
        })
    }

    /// QUIT, best effort.
    pub async fn quit(mut self) {
        let limit = self.command_timeout.min(Duration::from_secs(5));
        if tokio::time::timeout(limit, self.conn.command(Quit))
            .await
            .is_err()
        {
            abort(&mut self.conn, limit).await;
        }
    }
}

/// The bytes to hand to lettre's `message()`: line endings made CRLF and
/// the final CRLF removed, since `message()` appends `CRLF.CRLF` itself.
pub fn prepare_data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\r' if message.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_prepared_for_lettre() {
        assert_eq!(prepare_data(b"a\r\nb\r\n"), b"a\r\nb");
        assert_eq!(prepare_data(b"a\r\nb"), b"a\r\nb");
        assert_eq!(prepare_data(b"a\r\n\r\n"), b"a\r\n");
        assert_eq!(prepare_data(b"a\nb\r.\r\n"), b"a\r\nb\r\n.");
        assert_eq!(prepare_data(b""), b"");
        assert_eq!(
            prepare_data(&[0xe3, 0x81, 0x82, b'\r', b'\n']),
            &[0xe3, 0x81, 0x82]
        );
    }

    #[test]
    fn security_parses() {
        assert_eq!(Security::parse("implicit"), Security::Implicit);
        assert_eq!(Security::parse("starttls"), Security::StartTls);
        assert_eq!(Security::parse(""), Security::StartTls);
    }

    #[test]
    fn replies_render() {
        let e = SmtpError::Reply {
            stage: Stage::EndOfData,
            code: 550,
            text: "5.1.1 unknown".into(),
        };
        assert_eq!(e.reply(), "550 5.1.1 unknown");
        assert_eq!(e.code(), Some(550));
        let e = SmtpError::Transport {
            stage: Stage::Connect,
            reason: "refused".into(),
        };
        assert_eq!(e.reply(), "refused (at connect)");
    }
}
