//! SMTP submission listeners imitating Exchange Online and Gmail: STARTTLS
//! or implicit TLS, SASL XOAUTH2 (and OAUTHBEARER for Gmail) checked against
//! the access tokens this fakecloud issued, the providers' reply texts, and
//! fault injection. Commands are parsed with smtp-proto; DATA is read with
//! its `DataReceiver`, which undoes dot-stuffing.

use std::io;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{
    AUTH_LOGIN, AUTH_OAUTHBEARER, AUTH_PLAIN, AUTH_XOAUTH2, Error as ProtoError, Request,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::state::{
    Provider, ReceivedMessage, Shared, SmtpAuthError, SmtpFault, SmtpFlavor, SmtpStage,
};

/// Longest command line accepted (RFC 5321 says 512; AUTH lines with a
/// bearer token are longer, as at the real services).
const MAX_LINE: usize = 16 * 1024;
/// Exchange Online's advertised default limit (35 MB after encoding).
const MAX_MESSAGE: usize = 37_748_736;

/// How one listener presents itself.
#[derive(Clone, Copy)]
pub(crate) struct ListenerKind {
    pub flavor: SmtpFlavor,
    /// TLS from the first byte (port 465 style) instead of STARTTLS.
    pub implicit_tls: bool,
}

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    kind: ListenerKind,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((tcp, _peer)) = accepted else {
            continue;
        };
        let (open, connection) = OpenConnection::new(shared.clone());
        let session = Session {
            connection,
            shared: shared.clone(),
            acceptor: acceptor.clone(),
            kind,
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
            out: Vec::new(),
            tls: false,
            greeted: false,
            auth_user: None,
            mailbox_session: None,
            mail_from: None,
            rcpt_to: Vec::new(),
        };
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _open = open;
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = session.run() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "fakecloud smtp session ended");
                    }
                }
            }
        });
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while switching to TLS.
    Gone,
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Gone => Ok(0),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Stream::Gone => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }
}

/// What the command loop does next.
enum Flow {
    Continue,
    Close,
}

struct Session {
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    kind: ListenerKind,
    stream: Stream,
    /// Bytes read but not yet consumed (pipelined commands, message data).
    buf: Vec<u8>,
    /// Replies not yet written: while pipelined commands wait in `buf`,
    /// their replies go out together, as real servers send them (RFC 2920).
    out: Vec<u8>,
    tls: bool,
    greeted: bool,
    auth_user: Option<String>,
    /// Counts this session against its mailbox's open sessions once it
    /// has authenticated, until it closes.
    mailbox_session: Option<MailboxSession>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    connection: u64,
}

/// Counts a connection as open while it lives.
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn new(shared: Arc<Shared>) -> (Self, u64) {
        let id = {
            let mut inner = shared.lock();
            let c = &mut inner.smtp_connections;
            c.opened += 1;
            c.open += 1;
            c.max_open = c.max_open.max(c.open);
            c.opened
        };
        (OpenConnection(shared), id)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.smtp_connections.open = inner.smtp_connections.open.saturating_sub(1);
    }
}

/// An authenticated session of a mailbox, counted while it lives.
struct MailboxSession(Arc<Shared>, String);

impl MailboxSession {
    fn new(shared: Arc<Shared>, mailbox: &str) -> Self {
        let mailbox = mailbox.to_ascii_lowercase();
        {
            let mut inner = shared.lock();
            let (open, max) = inner.mailbox_sessions.entry(mailbox.clone()).or_default();
            *open += 1;
            *max = (*max).max(*open);
        }
        MailboxSession(shared, mailbox)
    }
}

impl Drop for MailboxSession {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        if let Some((open, _)) = inner.mailbox_sessions.get_mut(&self.1) {
            *open = open.saturating_sub(1);
        }
    }
}

/// Formats a (possibly multi-line) reply.
fn reply(code: u16, text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("{code}{sep}{line}\r\n"));
    }
    out
}

impl Session {
    fn exchange(&self) -> bool {
        self.kind.flavor == SmtpFlavor::Exchange
    }

    /// The authenticated mailbox itself, or an address it was allowed.
    fn may_send_as(&self, user: &str, from: &str) -> bool {
        from.eq_ignore_ascii_case(user)
            || self
                .shared
                .lock()
                .send_as
                .contains(&(user.to_ascii_lowercase(), from.to_ascii_lowercase()))
    }

    fn fault(&self) -> SmtpFault {
        self.shared.lock().smtp_fault.clone()
    }

    /// `Some((code, text))` when a `ReplyAt` fault targets this stage.
    fn reply_fault(&self, at: SmtpStage) -> Option<(u16, String)> {
        match self.fault() {
            SmtpFault::ReplyAt { stage, code, text } if stage == at => Some((code, text)),
            _ => None,
        }
    }

    fn hangs_at(&self, at: SmtpStage) -> bool {
        match self.fault() {
            SmtpFault::Hang => matches!(at, SmtpStage::Connect | SmtpStage::EndOfData),
            SmtpFault::HangAt(stage) => stage == at,
            _ => false,
        }
    }

    async fn send(&mut self, code: u16, text: &str) -> io::Result<()> {
        self.out.extend_from_slice(reply(code, text).as_bytes());
        if self.buf.contains(&b'\n') {
            return Ok(());
        }
        self.flush_out().await
    }

    async fn flush_out(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let delay = self.shared.lock().smtp_reply_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.stream.write_all(&out).await
    }

    async fn fill(&mut self) -> io::Result<usize> {
        // Nothing is waited for while a reply is still held back.
        self.flush_out().await?;
        let mut tmp = [0u8; 8192];
        let n = self.stream.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Next line including its LF, or `None` at end of stream.
    async fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(Some(self.buf.drain(..=pos).collect()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Says nothing until the client gives up (the "hang" faults).
    async fn drain(&mut self) -> io::Result<()> {
        self.buf.clear();
        while self.fill().await? > 0 {
            self.buf.clear();
        }
        Ok(())
    }

    async fn start_tls(&mut self) -> io::Result<()> {
        self.flush_out().await?;
        match std::mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(tcp) => {
                let tls = self.acceptor.accept(tcp).await?;
                self.stream = Stream::Tls(Box::new(tls));
                self.tls = true;
                Ok(())
            }
            other => {
                self.stream = other;
                Ok(())
            }
        }
    }

    async fn run(mut self) -> io::Result<()> {
        let ended = self.dialogue().await;
        let flushed = self.flush_out().await;
        ended.and(flushed)
    }

    async fn dialogue(&mut self) -> io::Result<()> {
        if matches!(self.fault(), SmtpFault::Down) {
            return Ok(());
        }
        if self.kind.implicit_tls {
            self.start_tls().await?;
        }
        if self.hangs_at(SmtpStage::Connect) {
            return self.drain().await;
        }
        if let Some((code, text)) = self.reply_fault(SmtpStage::Connect) {
            self.send(code, &text).await?;
            if code != 220 {
                return self.refuse_session(code).await;
            }
        } else {
            let greeting = if self.exchange() {
                format!(
                    "fakecloud.outlook.office365.com Microsoft ESMTP MAIL Service ready at {}",
                    httpdate::fmt_http_date(std::time::SystemTime::now())
                )
            } else {
                "smtp.gmail.com ESMTP fakecloud - gsmtp".to_owned()
            };
            self.send(220, &greeting).await?;
        }
        let mut kick = self.shared.idle_kick.subscribe();
        kick.mark_unchanged();
        loop {
            let line = tokio::select! {
                l = self.read_line() => l?,
                // An idle close: the server hangs up between commands.
                _ = kick.changed() => None,
            };
            let Some(line) = line else { break };
            match self.command(&line).await? {
                Flow::Continue => {}
                Flow::Close => break,
            }
        }
        Ok(())
    }

    /// After a refusing greeting (RFC 5321 §3.1): 421 closes, other codes
    /// answer 503 to everything but QUIT.
    async fn refuse_session(&mut self, code: u16) -> io::Result<()> {
        if code == 421 {
            return Ok(());
        }
        while let Some(line) = self.read_line().await? {
            if line.to_ascii_uppercase().starts_with(b"QUIT") {
                self.send(221, "2.0.0 Service closing transmission channel")
                    .await?;
                break;
            }
            self.send(503, "5.5.1 Bad sequence of commands").await?;
        }
        Ok(())
    }

    fn reset_envelope(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }

    async fn command(&mut self, line: &[u8]) -> io::Result<Flow> {
        let parsed = Request::parse(&mut line.iter()).map(Request::into_owned);
        let req = match parsed {
            Ok(r) => r,
            Err(ProtoError::UnknownCommand) => {
                self.send(500, "5.3.3 Unrecognized command").await?;
                return Ok(Flow::Continue);
            }
            Err(_) => {
                self.send(501, "5.5.4 Syntax error in parameters or arguments")
                    .await?;
                return Ok(Flow::Continue);
            }
        };
        match req {
            Request::Ehlo { host } => self.ehlo(&host).await?,
            Request::Helo { host } => {
                self.greeted = true;
                self.reset_envelope();
                self.send(250, &format!("{} Hello [{host}]", self.host_name()))
                    .await?;
            }
            Request::StartTls => return self.starttls().await,
            Request::Auth {
                mechanism,
                initial_response,
            } => return self.auth(mechanism, &initial_response).await,
            Request::Mail { from } => self.mail(&from.address).await?,
            Request::Rcpt { to } => self.rcpt(&to.address).await?,
            Request::Data => return self.data().await,
            Request::Rset => {
                self.reset_envelope();
                self.send(250, "2.0.0 Resetting").await?;
            }
            Request::Noop { .. } => self.send(250, "2.0.0 OK").await?,
            Request::Quit => {
                self.send(221, "2.0.0 Service closing transmission channel")
                    .await?;
                return Ok(Flow::Close);
            }
            _ => self.send(502, "5.5.1 Command not implemented").await?,
        }
        Ok(Flow::Continue)
    }

    fn host_name(&self) -> &'static str {
        if self.exchange() {
            "fakecloud.outlook.office365.com"
        } else {
            "smtp.gmail.com"
        }
    }

    async fn ehlo(&mut self, host: &str) -> io::Result<()> {
        self.greeted = true;
        self.reset_envelope();
        let mut lines = vec![if self.exchange() {
            format!("{} Hello [{host}]", self.host_name())
        } else {
            format!("smtp.gmail.com at your service, [{host}]")
        }];
        lines.push(format!("SIZE {MAX_MESSAGE}"));
        if !self.shared.lock().no_pipelining {
            lines.push("PIPELINING".into());
        }
        lines.push("8BITMIME".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        if !self.tls {
            lines.push("STARTTLS".into());
        } else if self.exchange() {
            lines.push("AUTH LOGIN XOAUTH2".into());
        } else {
            lines.push("AUTH LOGIN PLAIN XOAUTH2 OAUTHBEARER".into());
        }
        lines.push("SMTPUTF8".into());
        self.send(250, &lines.join("\n")).await
    }

    async fn starttls(&mut self) -> io::Result<Flow> {
        if self.tls {
            self.send(503, "5.5.1 TLS already active").await?;
            return Ok(Flow::Continue);
        }
        let text = if self.exchange() {
            "2.0.0 SMTP server ready"
        } else {
            "2.0.0 Ready to start TLS"
        };
        if matches!(self.fault(), SmtpFault::InjectAfterStartTls) {
            let both = format!("{}250 2.0.0 injected\r\n", reply(220, text));
            self.flush_out().await?;
            self.stream.write_all(both.as_bytes()).await?;
        } else {
            self.send(220, text).await?;
        }
        // Anything pipelined after STARTTLS is dropped (CVE-2011-0411), and
        // the session starts over.
        self.buf.clear();
        self.start_tls().await?;
        self.greeted = false;
        self.auth_user = None;
        self.reset_envelope();
        Ok(Flow::Continue)
    }

    async fn auth(&mut self, mechanism: u64, initial: &str) -> io::Result<Flow> {
        if !self.greeted {
            self.send(503, "5.5.2 Send hello first").await?;
            return Ok(Flow::Continue);
        }
        if !self.tls {
            self.send(530, "5.7.0 Must issue a STARTTLS command first")
                .await?;
            return Ok(Flow::Continue);
        }
        if self.auth_user.is_some() {
            self.send(503, "5.5.1 Already authenticated").await?;
            return Ok(Flow::Continue);
        }
        let oauthbearer = mechanism == AUTH_OAUTHBEARER && !self.exchange();
        if mechanism != AUTH_XOAUTH2 && !oauthbearer {
            if mechanism == AUTH_LOGIN || mechanism == AUTH_PLAIN {
                return self.basic_auth_refused().await;
            }
            self.send(504, "5.7.4 Unrecognized authentication type")
                .await?;
            return Ok(Flow::Continue);
        }
        let response = if initial.is_empty() || initial == "=" {
            self.send(334, "").await?;
            let Some(line) = self.read_line().await? else {
                return Ok(Flow::Close);
            };
            String::from_utf8_lossy(&line).trim().to_owned()
        } else {
            initial.to_owned()
        };
        if response == "*" {
            self.send(501, "5.7.0 Authentication cancelled").await?;
            return Ok(Flow::Continue);
        }
        let decoded = STANDARD
            .decode(response.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let creds = decoded.as_deref().and_then(|s| {
            if oauthbearer {
                parse_oauthbearer(s)
            } else {
                parse_xoauth2(s)
            }
        });
        let provider = if self.exchange() {
            Provider::Microsoft
        } else {
            Provider::Google
        };
        let outcome = match &creds {
            Some((user, token)) => self.shared.check_smtp_token(provider, user, token),
            None => Err(SmtpAuthError::Invalid),
        };
        if let Some((code, text)) = self.reply_fault(SmtpStage::Auth) {
            self.send(code, &text).await?;
            return Ok(Flow::Continue);
        }
        match outcome {
            Ok(mailbox) => {
                self.mailbox_session = Some(MailboxSession::new(self.shared.clone(), &mailbox));
                self.auth_user = Some(mailbox);
                self.shared.lock().smtp_connections.authentications += 1;
                let text = if self.exchange() {
                    "2.7.0 Authentication successful"
                } else {
                    "2.7.0 Accepted"
                };
                self.send(235, text).await?;
            }
            Err(SmtpAuthError::Disabled) => {
                self.send(
                    535,
                    "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.",
                )
                .await?;
            }
            Err(SmtpAuthError::Invalid) if self.exchange() => {
                self.send(535, "5.7.3 Authentication unsuccessful").await?;
            }
            Err(SmtpAuthError::Invalid) => {
                // Gmail sends an error challenge and waits for the client's
                // (empty) answer before the final 535.
                let json =
                    r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#;
                self.send(334, &STANDARD.encode(json)).await?;
                if self.read_line().await?.is_none() {
                    return Ok(Flow::Close);
                }
                self.send_gmail_bad_credentials().await?;
            }
        }
        Ok(Flow::Continue)
    }

    async fn send_gmail_bad_credentials(&mut self) -> io::Result<()> {
        self.send(
            535,
            "5.7.8 Username and Password not accepted. For more information, go to\n5.7.8  https://support.google.com/mail/?p=BadCredentials fakecloud - gsmtp",
        )
        .await
    }

    async fn basic_auth_refused(&mut self) -> io::Result<Flow> {
        if self.exchange() {
            self.send(
                535,
                "5.7.139 Authentication unsuccessful, basic authentication is disabled.",
            )
            .await?;
        } else {
            self.send_gmail_bad_credentials().await?;
        }
        Ok(Flow::Continue)
    }

    async fn mail(&mut self, from: &str) -> io::Result<()> {
        if !self.greeted {
            return self.send(503, "5.5.2 Send hello first").await;
        }
        let Some(user) = self.auth_user.clone() else {
            return if self.exchange() {
                self.send(
                    530,
                    "5.7.57 Client not authenticated to send mail. [fakecloud]",
                )
                .await
            } else {
                self.send(
                    530,
                    "5.7.0 Authentication Required. For more information, go to\n5.7.0  https://support.google.com/mail/?p=WantAuthError fakecloud - gsmtp",
                )
                .await
            };
        };
        if self.mail_from.is_some() {
            return self.send(503, "5.5.1 Sender already specified").await;
        }
        if self.buf.contains(&b'\n') {
            self.shared.lock().smtp_connections.pipelined_envelopes += 1;
        }
        if let Some((code, text)) = self.reply_fault(SmtpStage::Mail) {
            return self.send(code, &text).await;
        }
        // Exchange refuses a foreign sender only after DATA (as the real
        // service does); Gmail's fake refuses it here.
        if !self.exchange() && !self.may_send_as(&user, from) {
            return self
                .send(
                    555,
                    &format!(
                        "5.7.1 Sender address rejected: {from} not owned by user {user} fakecloud - gsmtp"
                    ),
                )
                .await;
        }
        self.mail_from = Some(from.to_owned());
        let text = if self.exchange() {
            "2.1.0 Sender OK"
        } else {
            "2.1.0 OK fakecloud - gsmtp"
        };
        self.send(250, text).await
    }

    async fn rcpt(&mut self, to: &str) -> io::Result<()> {
        if self.mail_from.is_none() {
            return self.send(503, "5.5.1 Need mail command").await;
        }
        if let Some((code, text)) = self.reply_fault(SmtpStage::Rcpt) {
            return self.send(code, &text).await;
        }
        let refused = self
            .shared
            .lock()
            .refused_recipients
            .get(&to.to_ascii_lowercase())
            .copied();
        if let Some(code) = refused {
            let text = match (code >= 500, self.exchange()) {
                (true, true) => format!(
                    "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {to} not found by SMTP address lookup"
                ),
                (true, false) => format!(
                    "5.1.1 The email account that you tried to reach does not exist. {to} fakecloud - gsmtp"
                ),
                (false, _) => {
                    format!("4.2.1 Mailbox {to} cannot take mail right now, try again later")
                }
            };
            return self.send(code, &text).await;
        }
        self.rcpt_to.push(to.to_owned());
        let text = if self.exchange() {
            "2.1.5 Recipient OK"
        } else {
            "2.1.5 OK fakecloud - gsmtp"
        };
        self.send(250, text).await
    }

    async fn data(&mut self) -> io::Result<Flow> {
        if self.mail_from.is_none() {
            self.send(503, "5.5.1 Need mail command").await?;
            return Ok(Flow::Continue);
        }
        if self.rcpt_to.is_empty() {
            self.send(503, "5.5.1 Need rcpt command").await?;
            return Ok(Flow::Continue);
        }
        if let Some((code, text)) = self.reply_fault(SmtpStage::Data) {
            self.send(code, &text).await?;
            return Ok(Flow::Continue);
        }
        let text = if self.exchange() {
            "Start mail input; end with <CRLF>.<CRLF>"
        } else {
            "Go ahead fakecloud - gsmtp"
        };
        self.send(354, text).await?;
        if matches!(self.fault(), SmtpFault::CloseMidData) {
            if self.buf.is_empty() {
                self.fill().await?;
            }
            return Ok(Flow::Close);
        }
        let mut receiver = DataReceiver::new();
        // Prime the receiver as if a CRLF preceded the data, so a leading
        // "." (stuffed first line or an empty message) is recognised.
        let mut scratch = Vec::new();
        receiver.ingest(&mut b"\r\n".iter(), &mut scratch);
        let mut data = Vec::new();
        loop {
            if !self.buf.is_empty() {
                let pending = std::mem::take(&mut self.buf);
                let mut it = pending.iter();
                let done = receiver.ingest(&mut it, &mut data);
                self.buf = it.as_slice().to_vec();
                if done {
                    break;
                }
            }
            if data.len() > MAX_MESSAGE + 1024 * 1024 {
                self.send(552, "5.3.4 Message size exceeds fixed maximum message size")
                    .await?;
                return Ok(Flow::Close);
            }
            if self.fill().await? == 0 {
                return Ok(Flow::Close);
            }
        }
        let from = self.mail_from.take().unwrap_or_default();
        let rcpt_to = std::mem::take(&mut self.rcpt_to);
        let user = self.auth_user.clone().unwrap_or_default();
        if self.hangs_at(SmtpStage::EndOfData) {
            self.drain().await?;
            return Ok(Flow::Close);
        }
        if let Some((code, text)) = self.reply_fault(SmtpStage::EndOfData) {
            self.send(code, &text).await?;
            return Ok(Flow::Continue);
        }
        if self.exchange() && !self.may_send_as(&user, &from) {
            self.send(
                554,
                &format!(
                    "5.2.252 SendAsDenied; {user} not allowed to send as {from}; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message.[EndDiagnosticData]"
                ),
            )
            .await?;
            return Ok(Flow::Continue);
        }
        if data.len() > MAX_MESSAGE {
            self.send(552, "5.3.4 Message size exceeds fixed maximum message size")
                .await?;
            return Ok(Flow::Continue);
        }
        self.shared.store_message(ReceivedMessage {
            mail_from: from,
            rcpt_to,
            data,
            auth_user: user,
            listener: self.kind.flavor,
            connection: self.connection,
        });
        let id = crate::state::random_token(20);
        let text = if self.exchange() {
            format!("2.0.0 OK <{id}@fakecloud> [Hostname=fakecloud.outlook.office365.com]")
        } else {
            format!("2.0.0 OK  {} {id} - gsmtp", crate::state::unix_now())
        };
        self.send(250, &text).await?;
        Ok(Flow::Continue)
    }
}

/// `user=...\x01auth=Bearer TOKEN\x01\x01` → (user, token).
fn parse_xoauth2(s: &str) -> Option<(String, String)> {
    let mut user = None;
    let mut token = None;
    for part in s.split('\x01') {
        if let Some(u) = part.strip_prefix("user=") {
            user = Some(u.to_owned());
        } else if let Some(a) = part.strip_prefix("auth=") {
            token = bearer(a);
        }
    }
    Some((user?, token?))
}

/// `n,a=user,\x01host=..\x01port=..\x01auth=Bearer TOKEN\x01\x01` (RFC 7628).
fn parse_oauthbearer(s: &str) -> Option<(String, String)> {
    let mut parts = s.split('\x01');
    let gs2 = parts.next()?;
    let user = gs2
        .split(',')
        .find_map(|f| f.strip_prefix("a="))
        .map(|u| u.replace("=2C", ",").replace("=3D", "="))?;
    let token = parts.find_map(|p| p.strip_prefix("auth=").and_then(bearer))?;
    Some((user, token))
}

fn bearer(auth: &str) -> Option<String> {
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then(|| token.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_parses() {
        let s = "user=a@b.example\x01auth=Bearer tok123\x01\x01";
        assert_eq!(
            parse_xoauth2(s),
            Some(("a@b.example".to_owned(), "tok123".to_owned()))
        );
        assert_eq!(parse_xoauth2("user=a\x01\x01"), None);
    }

    #[test]
    fn oauthbearer_parses() {
        let s = "n,a=a@b.example,\x01host=smtp.gmail.com\x01port=587\x01auth=Bearer t\x01\x01";
        assert_eq!(
            parse_oauthbearer(s),
            Some(("a@b.example".to_owned(), "t".to_owned()))
        );
    }

    #[test]
    fn multiline_reply() {
        assert_eq!(reply(250, "a\nb"), "250-a\r\n250 b\r\n");
        assert_eq!(reply(334, ""), "334 \r\n");
    }
}
