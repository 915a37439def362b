//! One SMTP connection: greeting, command loop, AUTH, the mail transaction and
//! STARTTLS, generic over the byte stream so tests can drive it in memory.
//!
//! Invariants:
//! * Input is framed into CRLF lines here, before smtp-proto parses them; a
//!   line with a bare CR or LF is refused whole (`554 5.6.0`).
//! * Replies are buffered and flushed before every read, which is what
//!   PIPELINING needs (RFC 2920 §3) and keeps one write per batch.
//! * `250` after DATA is written only once [`IntakeSink::accept`] returned Ok.
//! * STARTTLS is a change of stream type: [`run_session`] drops everything
//!   buffered from the plaintext stream and starts a fresh protocol state on
//!   the TLS stream, without a new greeting (RFC 3207 §4.2, CVE-2011-0411).
//! * Every read is bounded by the idle timeout and the session deadline, and
//!   gives way to shutdown; `sink.accept` is never interrupted.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;

use smtp_proto::request::receiver::RequestReceiver;
use smtp_proto::{
    AUTH_LOGIN, AUTH_PLAIN, EXT_8BIT_MIME, EXT_AUTH, EXT_ENHANCED_STATUS_CODES, EXT_PIPELINING,
    EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse, MAIL_BODY_BINARYMIME, MailFrom, RcptTo,
    Request, Response,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::auth::{self, Credentials, SaslError};
use super::data::{Collector, Outcome, Rejection};
use super::{Envelope, IntakeError, IntakeSink, ListenerConfig, SinkError, Submission, Submitter};

/// Longest command line we take. RFC 5321 §4.5.3.1.4 allows 512 octets but
/// asks servers to be liberal, and RFC 4954 §4 lets AUTH lines grow to 12288;
/// 4096 is smtp-proto's own cap.
const MAX_COMMAND_LINE: usize = 4096;
/// Bad commands before we hang up (Postfix's smtpd_hard_error_limit).
const MAX_BAD_COMMANDS: u32 = 20;
const READ_CHUNK: usize = 16 * 1024;
/// Bytes of a large message's start kept for its header (routing and the
/// history read From and Subject there).
const HEAD: usize = 64 * 1024;

/// Serves one SMTP session on `stream` until QUIT, EOF, a timeout or shutdown.
///
/// On an implicit-TLS listener the handshake comes first. After STARTTLS the
/// session continues on the TLS stream with all protocol state reset.
pub async fn run_session<S, T>(
    stream: T,
    peer: SocketAddr,
    config: &ListenerConfig,
    sink: &S,
    shutdown: &CancellationToken,
) -> Result<(), IntakeError>
where
    S: IntakeSink,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut session = Session::new(config, sink, peer, shutdown);
    if config.implicit_tls {
        let tls = config.tls.clone().ok_or(IntakeError::TlsNotConfigured)?;
        let mut stream = session.handshake(tls, stream).await?;
        session.tls = true;
        session.greet();
        session.run(&mut stream).await?;
        close(&mut stream).await;
        return Ok(());
    }

    let mut stream = stream;
    session.greet();
    match session.run(&mut stream).await? {
        End::Close => {
            close(&mut stream).await;
            Ok(())
        }
        End::StartTls => {
            let tls = config.tls.clone().ok_or(IntakeError::TlsNotConfigured)?;
            // CVE-2011-0411: whatever the client pipelined after STARTTLS came
            // in plaintext; it must not be executed inside the TLS session.
            if !session.inbuf.is_empty() {
                warn!(peer = %peer, bytes = session.inbuf.len(), "discarding plaintext pipelined after STARTTLS");
            }
            session.inbuf.clear();
            let mut stream = session.handshake(tls, stream).await?;
            // RFC 3207 §4.2: forget everything learnt from the client, no new greeting.
            session.reset_for_tls();
            session.run(&mut stream).await?;
            close(&mut stream).await;
            Ok(())
        }
    }
}

async fn close<T: AsyncWrite + Unpin>(stream: &mut T) {
    // Best effort: sends TLS close_notify / FIN; the client may already be gone.
    let _ = timeout(std::time::Duration::from_secs(5), stream.shutdown()).await;
}

/// How the command loop ended.
enum End {
    Close,
    StartTls,
}

/// What a command handler tells the loop.
enum Flow {
    Continue,
    Close,
    StartTls,
}

/// Why reading stopped without data.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Eof,
    IdleTimeout,
    SessionTimeout,
    /// A command line or the data came in slower than the minimum.
    TooSlow,
    Shutdown,
}

/// The moment at which `received` octets since `started` fall below the
/// minimum data rate of `limits`.
fn too_slow_after(limits: &super::Limits, started: Instant, received: u64) -> Instant {
    let due = received.saturating_mul(1000) / limits.min_data_rate.max(1);
    started + limits.data_grace.max(std::time::Duration::from_millis(due))
}

/// One framed input line.
enum Line {
    /// A clean line, CRLF included.
    Text(Vec<u8>),
    TooLong,
    BareNewline,
    Stop(Stop),
}

/// What a line means, given where in the dialogue we are.
enum Expect {
    Command,
    /// AUTH PLAIN sent `334 ` and waits for the PLAIN message.
    PlainResponse,
    /// AUTH LOGIN waits for the user name.
    LoginUser,
    /// AUTH LOGIN waits for the password.
    LoginPassword {
        user: String,
    },
}

struct Transaction {
    mail_from: String,
    rcpt_to: Vec<String>,
    /// Counted as a message on its way in until handed over.
    arriving: Option<crate::queue::arrivals::Arriving>,
}

struct Session<'a, S> {
    config: &'a ListenerConfig,
    sink: &'a S,
    peer: SocketAddr,
    shutdown: &'a CancellationToken,
    deadline: Instant,
    tls: bool,
    // Protocol state, reset by STARTTLS.
    helo: Option<String>,
    authenticated: Option<Submitter>,
    transaction: Option<Transaction>,
    expect: Expect,
    parser: RequestReceiver,
    // Kept across STARTTLS: they count abuse, not protocol state.
    allowlisted: Option<Option<Submitter>>,
    auth_failures: u32,
    bad_commands: u32,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// A line over MAX_COMMAND_LINE is being skipped up to its LF.
    skipping_line: bool,
}

impl<'a, S: IntakeSink> Session<'a, S> {
    fn new(
        config: &'a ListenerConfig,
        sink: &'a S,
        peer: SocketAddr,
        shutdown: &'a CancellationToken,
    ) -> Self {
        Self {
            config,
            sink,
            peer,
            shutdown,
            deadline: Instant::now() + config.limits.session_timeout,
            tls: false,
            helo: None,
            authenticated: None,
            transaction: None,
            expect: Expect::Command,
            parser: RequestReceiver::default(),
            allowlisted: None,
            auth_failures: 0,
            bad_commands: 0,
            inbuf: Vec::with_capacity(READ_CHUNK),
            outbuf: Vec::with_capacity(1024),
            skipping_line: false,
        }
    }

    fn greet(&mut self) {
        let greeting = format!("220 {} ESMTP hikyaku\r\n", self.config.hostname);
        self.outbuf.extend_from_slice(greeting.as_bytes());
    }

    fn reset_for_tls(&mut self) {
        self.tls = true;
        self.helo = None;
        self.authenticated = None;
        self.transaction = None;
        self.expect = Expect::Command;
        self.parser = RequestReceiver::default();
        self.skipping_line = false;
    }

    async fn handshake<T>(
        &mut self,
        tls: Arc<rustls::ServerConfig>,
        stream: T,
    ) -> Result<tokio_rustls::server::TlsStream<T>, IntakeError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        match timeout(self.config.limits.idle_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                debug!(peer = %self.peer, "TLS established");
                Ok(stream)
            }
            Ok(Err(e)) => Err(IntakeError::TlsHandshake(e)),
            Err(_) => Err(IntakeError::TlsHandshake(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ))),
        }
    }

    // ---- replies -------------------------------------------------------

    fn reply(&mut self, code: u16, esc: [u8; 3], message: impl Display) {
        debug!(peer = %self.peer, code, "reply");
        // Writing into a Vec cannot fail.
        let _ = Response { code, esc, message }.write(&mut self.outbuf);
    }

    fn reply_raw(&mut self, line: &str) {
        self.outbuf.extend_from_slice(line.as_bytes());
        self.outbuf.extend_from_slice(b"\r\n");
    }

    async fn flush<T: AsyncWrite + Unpin>(&mut self, io: &mut T) -> Result<(), IntakeError> {
        if self.outbuf.is_empty() {
            return Ok(());
        }
        let write = async {
            io.write_all(&self.outbuf).await?;
            io.flush().await
        };
        match timeout(self.config.limits.idle_timeout, write).await {
            Ok(result) => result?,
            Err(_) => return Err(IntakeError::WriteTimeout),
        }
        self.outbuf.clear();
        Ok(())
    }

    /// Says why we hang up (if there is anyone to tell) and flushes.
    async fn goodbye<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        stop: Stop,
    ) -> Result<Flow, IntakeError> {
        let config = self.config;
        let host = config.hostname.as_str();
        match stop {
            Stop::Eof => debug!(peer = %self.peer, "client closed the connection"),
            Stop::IdleTimeout | Stop::SessionTimeout => {
                info!(peer = %self.peer, ?stop, "closing: timeout");
                self.reply(
                    421,
                    [4, 4, 2],
                    format_args!("{host} Error: timeout exceeded"),
                );
            }
            Stop::TooSlow => {
                info!(peer = %self.peer, "closing: the client sends too slowly");
                self.reply(
                    421,
                    [4, 4, 2],
                    format_args!("{host} Error: transfer too slow"),
                );
            }
            Stop::Shutdown => {
                info!(peer = %self.peer, "closing: shutting down");
                self.reply(421, [4, 3, 2], format_args!("{host} Service shutting down"));
            }
        }
        self.flush(io).await?;
        Ok(Flow::Close)
    }

    // ---- input ---------------------------------------------------------

    /// Reads more bytes into `inbuf`, after flushing pending replies. `slow`
    /// is when the bytes expected now count as too slow.
    async fn read_more<T>(
        &mut self,
        io: &mut T,
        slow: Option<Instant>,
    ) -> Result<Option<Stop>, IntakeError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        self.flush(io).await?;
        let now = Instant::now();
        if now >= self.deadline {
            return Ok(Some(Stop::SessionTimeout));
        }
        if slow.is_some_and(|at| now >= at) {
            return Ok(Some(Stop::TooSlow));
        }
        let mut wait = self.config.limits.idle_timeout.min(self.deadline - now);
        if let Some(at) = slow {
            wait = wait.min(at - now);
        }
        let shutdown = self.shutdown;
        self.inbuf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(Some(Stop::Shutdown)),
            read = timeout(wait, io.read_buf(&mut self.inbuf)) => read,
        };
        match read {
            Err(_) if Instant::now() >= self.deadline => Ok(Some(Stop::SessionTimeout)),
            Err(_) if slow.is_some_and(|at| Instant::now() >= at) => Ok(Some(Stop::TooSlow)),
            Err(_) => Ok(Some(Stop::IdleTimeout)),
            Ok(Ok(0)) => Ok(Some(Stop::Eof)),
            Ok(Ok(_)) => Ok(None),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// The next CRLF-terminated line from the client.
    async fn next_line<T>(&mut self, io: &mut T) -> Result<Line, IntakeError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        // When the first byte of a partial line was seen.
        let mut started: Option<Instant> = None;
        loop {
            if let Some(lf) = self.inbuf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.inbuf.drain(..=lf).collect();
                if std::mem::take(&mut self.skipping_line) || line.len() > MAX_COMMAND_LINE {
                    return Ok(Line::TooLong);
                }
                // A command line is text CR LF; any other CR or LF is the
                // ambiguity SMTP smuggling feeds on (CVE-2023-51764).
                return Ok(match line.strip_suffix(b"\r\n") {
                    Some(text) if !text.contains(&b'\r') => Line::Text(line),
                    _ => Line::BareNewline,
                });
            }
            if self.inbuf.len() > MAX_COMMAND_LINE {
                self.inbuf.clear();
                self.skipping_line = true;
            }
            if started.is_none() && (!self.inbuf.is_empty() || self.skipping_line) {
                started = Some(Instant::now());
            }
            let slow = started.map(|at| at + self.config.limits.command_line_timeout);
            if let Some(stop) = self.read_more(io, slow).await? {
                return Ok(Line::Stop(stop));
            }
        }
    }

    // ---- the loop ------------------------------------------------------

    async fn run<T>(&mut self, io: &mut T) -> Result<End, IntakeError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            let line = match self.next_line(io).await? {
                Line::Text(line) => line,
                Line::TooLong => {
                    self.expect = Expect::Command;
                    self.reply(500, [5, 5, 2], "Line too long");
                    if self.count_bad_command() {
                        self.too_many_errors(io).await?;
                        return Ok(End::Close);
                    }
                    continue;
                }
                Line::BareNewline => {
                    self.expect = Expect::Command;
                    warn!(peer = %self.peer, "bare CR or LF in command");
                    self.reply(554, [5, 6, 0], "Bare LF or CR not allowed");
                    if self.count_bad_command() {
                        self.too_many_errors(io).await?;
                        return Ok(End::Close);
                    }
                    continue;
                }
                Line::Stop(stop) => {
                    self.goodbye(io, stop).await?;
                    return Ok(End::Close);
                }
            };
            let flow = match std::mem::replace(&mut self.expect, Expect::Command) {
                Expect::Command => self.handle_command(io, &line).await?,
                Expect::PlainResponse => self.handle_plain_response(&line).await,
                Expect::LoginUser => self.handle_login_user(&line),
                Expect::LoginPassword { user } => self.handle_login_password(user, &line).await,
            };
            match flow {
                Flow::Continue => {}
                Flow::Close => {
                    self.flush(io).await?;
                    return Ok(End::Close);
                }
                Flow::StartTls => {
                    self.flush(io).await?;
                    return Ok(End::StartTls);
                }
            }
        }
    }

    /// Counts a bad command; true when the client has had too many.
    fn count_bad_command(&mut self) -> bool {
        self.bad_commands += 1;
        self.bad_commands >= MAX_BAD_COMMANDS
    }

    async fn too_many_errors<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
    ) -> Result<Flow, IntakeError> {
        warn!(peer = %self.peer, "closing: too many bad commands");
        self.reply(421, [4, 7, 0], "Too many errors");
        self.flush(io).await?;
        Ok(Flow::Close)
    }

    async fn handle_command<T>(&mut self, io: &mut T, line: &[u8]) -> Result<Flow, IntakeError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let request = self
            .parser
            .ingest(&mut line.iter())
            .map(Request::into_owned);
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                // A whole line was given; a parser that still wants more is
                // looking at garbage. Start it afresh so nothing carries over.
                self.parser = RequestReceiver::default();
                self.reply_parse_error(error);
                if self.count_bad_command() {
                    return self.too_many_errors(io).await;
                }
                return Ok(Flow::Continue);
            }
        };
        debug!(peer = %self.peer, command = request.name(), "command");
        match request {
            Request::Ehlo { host } => self.handle_helo(host, true),
            Request::Helo { host } => self.handle_helo(host, false),
            Request::Mail { from } => self.handle_mail(from).await,
            Request::Rcpt { to } => self.handle_rcpt(to),
            Request::Data => return self.handle_data(io).await,
            Request::Bdat { chunk_size, .. } => return self.handle_bdat(io, chunk_size).await,
            Request::Auth {
                mechanism,
                initial_response,
            } => return Ok(self.handle_auth(mechanism, initial_response).await),
            // RFC 3207 §4: STARTTLS has no parameters (smtp-proto ignores them).
            Request::StartTls if line.trim_ascii().len() != "STARTTLS".len() => {
                self.reply(501, [5, 5, 4], "Syntax: STARTTLS (no parameters)");
            }
            Request::StartTls => return Ok(self.handle_starttls()),
            Request::Rset => {
                self.transaction = None;
                self.reply(250, [2, 0, 0], "Ok");
            }
            Request::Noop { .. } => self.reply(250, [2, 0, 0], "Ok"),
            Request::Vrfy { .. } => self.reply(
                252,
                [2, 5, 0],
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            Request::Help { .. } => self.reply(
                214,
                [2, 0, 0],
                "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
            ),
            Request::Quit => {
                self.reply(221, [2, 0, 0], "Bye");
                return Ok(Flow::Close);
            }
            Request::Lhlo { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                self.reply(502, [5, 5, 1], "Command not implemented");
            }
        }
        Ok(Flow::Continue)
    }

    fn reply_parse_error(&mut self, error: smtp_proto::Error) {
        use smtp_proto::Error as E;
        match error {
            E::UnknownCommand => self.reply(500, [5, 5, 2], "Syntax error, command unrecognized"),
            E::InvalidSenderAddress => self.reply(501, [5, 1, 7], "Bad sender address syntax"),
            E::InvalidRecipientAddress => {
                self.reply(501, [5, 1, 3], "Bad recipient address syntax");
            }
            E::SyntaxError { syntax } => {
                self.reply(501, [5, 5, 4], format_args!("Syntax: {syntax}"));
            }
            E::InvalidParameter { param } => {
                self.reply(501, [5, 5, 4], format_args!("Invalid {param} parameter"));
            }
            E::UnsupportedParameter { param } => {
                // RFC 5321 §4.1.1.11: 555 for unrecognised MAIL/RCPT parameters.
                let param = printable(&param, 64);
                self.reply(
                    555,
                    [5, 5, 4],
                    format_args!("Unsupported parameter {param}"),
                );
            }
            E::ResponseTooLong => self.reply(500, [5, 5, 2], "Line too long"),
            E::NeedsMoreData { .. } | E::InvalidResponse { .. } => {
                self.reply(500, [5, 5, 2], "Syntax error");
            }
        }
    }

    // ---- commands ------------------------------------------------------

    fn may_authenticate(&self) -> bool {
        self.tls || !self.config.require_tls_for_auth
    }

    /// EHLO/HELO (RFC 5321 §4.1.1.1); both also reset the transaction (§4.1.4).
    fn handle_helo(&mut self, host: String, extended: bool) {
        self.transaction = None;
        self.helo = Some(host);
        if !extended {
            let line = format!("250 {}", self.config.hostname);
            self.reply_raw(&line);
            return;
        }
        let mut ehlo = EhloResponse::new(self.config.hostname.as_str());
        ehlo.capabilities =
            EXT_SIZE | EXT_8BIT_MIME | EXT_SMTP_UTF8 | EXT_PIPELINING | EXT_ENHANCED_STATUS_CODES;
        ehlo.size = self.config.limits.max_message_size;
        if self.config.tls.is_some() && !self.tls {
            ehlo.capabilities |= EXT_START_TLS;
        }
        // RFC 4954 §4 / protocols.md §7: no AUTH over plaintext except on
        // listeners that allow it (loopback).
        if self.may_authenticate() {
            ehlo.capabilities |= EXT_AUTH;
            ehlo.auth_mechanisms = AUTH_PLAIN | AUTH_LOGIN;
        }
        let mut reply = Vec::with_capacity(256);
        let _ = ehlo.write(&mut reply);
        // smtp-proto ends the first line with a joke; a relay answers plainly.
        let plain = String::from_utf8_lossy(&reply).replacen(" you had me at EHLO", "", 1);
        self.outbuf.extend_from_slice(plain.as_bytes());
    }

    fn handle_starttls(&mut self) -> Flow {
        if self.config.tls.is_none() {
            self.reply(502, [5, 5, 1], "Command not implemented");
            Flow::Continue
        } else if self.tls {
            self.reply(503, [5, 5, 1], "TLS already active");
            Flow::Continue
        } else {
            self.reply(220, [2, 0, 0], "Ready to start TLS");
            Flow::StartTls
        }
    }

    async fn handle_auth(&mut self, mechanism: u64, initial: String) -> Flow {
        if self.helo.is_none() {
            self.reply(503, [5, 5, 1], "Send EHLO first");
            return Flow::Continue;
        }
        if self.authenticated.is_some() {
            self.reply(503, [5, 5, 1], "Already authenticated");
            return Flow::Continue;
        }
        if self.transaction.is_some() {
            self.reply(503, [5, 5, 1], "AUTH not allowed during a mail transaction");
            return Flow::Continue;
        }
        if !self.may_authenticate() {
            self.reply(
                538,
                [5, 7, 11],
                "Encryption required for requested authentication mechanism",
            );
            return Flow::Continue;
        }
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.reply_raw("334 ");
                self.expect = Expect::PlainResponse;
                Flow::Continue
            }
            AUTH_PLAIN => match auth::decode_plain(&initial) {
                Ok(credentials) => self.verify(credentials).await,
                Err(e) => self.sasl_error(e),
            },
            AUTH_LOGIN if initial.is_empty() => {
                self.reply_raw(&format!("334 {}", auth::LOGIN_USER_PROMPT));
                self.expect = Expect::LoginUser;
                Flow::Continue
            }
            // Some clients send the user name with AUTH LOGIN.
            AUTH_LOGIN => match auth::decode_response(&initial) {
                Ok(user) => self.ask_password(user),
                Err(e) => self.sasl_error(e),
            },
            _ => {
                self.reply(504, [5, 5, 4], "Unrecognized authentication type");
                Flow::Continue
            }
        }
    }

    /// Decodes a continuation line; `None` after answering a cancel or junk.
    fn sasl_line(&mut self, line: &[u8]) -> Option<String> {
        let text = line.strip_suffix(b"\r\n").unwrap_or(line);
        if text == b"*" {
            // RFC 4954 §4: the client cancelled the exchange.
            self.reply(501, [5, 0, 0], "Authentication cancelled");
            return None;
        }
        match std::str::from_utf8(text) {
            Ok(text) => Some(text.to_owned()),
            Err(_) => {
                self.sasl_error(SaslError::Undecodable);
                None
            }
        }
    }

    fn sasl_error(&mut self, error: SaslError) -> Flow {
        match error {
            SaslError::Undecodable | SaslError::Malformed => {
                self.reply(501, [5, 5, 2], "Cannot decode authentication response");
            }
            SaslError::ProxyAuthorization => {
                self.reply(535, [5, 7, 8], "Authentication credentials invalid");
            }
        }
        Flow::Continue
    }

    async fn handle_plain_response(&mut self, line: &[u8]) -> Flow {
        let Some(text) = self.sasl_line(line) else {
            return Flow::Continue;
        };
        match auth::decode_plain(&text) {
            Ok(credentials) => self.verify(credentials).await,
            Err(e) => self.sasl_error(e),
        }
    }

    fn handle_login_user(&mut self, line: &[u8]) -> Flow {
        let Some(text) = self.sasl_line(line) else {
            return Flow::Continue;
        };
        match auth::decode_response(&text) {
            Ok(user) => self.ask_password(user),
            Err(e) => self.sasl_error(e),
        }
    }

    fn ask_password(&mut self, user: String) -> Flow {
        self.reply_raw(&format!("334 {}", auth::LOGIN_PASSWORD_PROMPT));
        self.expect = Expect::LoginPassword { user };
        Flow::Continue
    }

    async fn handle_login_password(&mut self, user: String, line: &[u8]) -> Flow {
        let Some(text) = self.sasl_line(line) else {
            return Flow::Continue;
        };
        match auth::decode_response(&text) {
            Ok(password) => self.verify(Credentials { user, password }).await,
            Err(e) => self.sasl_error(e),
        }
    }

    async fn verify(&mut self, credentials: Credentials) -> Flow {
        let result = self
            .sink
            .authenticate(&credentials.user, &credentials.password, self.peer.ip())
            .await;
        // The name tried helps an operator find a misconfigured device.
        let user = printable(&credentials.user, 64);
        drop(credentials);
        match result {
            Ok(Some(submitter)) => {
                info!(peer = %self.peer, submitter = %submitter.name, "authenticated");
                self.authenticated = Some(submitter);
                self.reply(235, [2, 7, 0], "Authentication successful");
                Flow::Continue
            }
            Err(SinkError::Throttled(wait)) => {
                warn!(peer = %self.peer, wait_secs = wait, "authentication refused: too many failed logins");
                crate::metrics::intake_auth_failure();
                self.auth_failures += 1;
                self.reply(
                    454,
                    [4, 7, 0],
                    format_args!(
                        "Too many failed logins for this user or from this address: try again in {wait} s"
                    ),
                );
                if self.auth_failures >= self.config.limits.max_auth_failures {
                    return Flow::Close;
                }
                Flow::Continue
            }
            Err(SinkError::Temporary(reason)) => {
                warn!(peer = %self.peer, %reason, "authentication backend unavailable");
                self.reply(454, [4, 7, 0], "Temporary authentication failure");
                Flow::Continue
            }
            Ok(None) | Err(_) => self.auth_failed(&user).await,
        }
    }

    /// A failed login: wait longer each time (slows guessing), then 535, or
    /// 421 and hang up once the limit is reached.
    async fn auth_failed(&mut self, user: &str) -> Flow {
        self.auth_failures += 1;
        crate::metrics::intake_auth_failure();
        let failures = self.auth_failures;
        warn!(peer = %self.peer, user, failures, "authentication failed");
        let delay = self
            .config
            .limits
            .auth_failure_delay
            .saturating_mul(failures);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.shutdown.cancelled() => {}
        }
        if failures >= self.config.limits.max_auth_failures {
            // protocols.md §7: 535, then disconnect.
            warn!(peer = %self.peer, "closing: too many authentication failures");
            self.reply(
                535,
                [5, 7, 8],
                "Authentication credentials invalid; too many failures, closing the connection",
            );
            return Flow::Close;
        }
        self.reply(535, [5, 7, 8], "Authentication credentials invalid");
        Flow::Continue
    }

    /// Who may submit: the authenticated user, else an allowlisted peer.
    /// An allowlist that cannot be read is an error, tried again next time.
    async fn submitter(&mut self) -> Result<Option<Submitter>, SinkError> {
        if let Some(s) = &self.authenticated {
            return Ok(Some(s.clone()));
        }
        if self.allowlisted.is_none() {
            let found = self.sink.allowlisted(self.peer.ip()).await?;
            self.allowlisted = Some(found);
        }
        Ok(self.allowlisted.clone().flatten())
    }

    async fn handle_mail(&mut self, from: MailFrom<String>) {
        if self.helo.is_none() {
            self.reply(503, [5, 5, 1], "Send HELO/EHLO first");
            return;
        }
        if self.transaction.is_some() {
            self.reply(503, [5, 5, 1], "Nested MAIL command");
            return;
        }
        // Never an open relay: no login and no allowlist entry, no mail.
        let submitter = match self.submitter().await {
            Ok(s) => s,
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "MAIL deferred: the allowlist cannot be read");
                crate::metrics::intake_refused("temporary");
                self.reply(451, [4, 3, 0], "Temporary failure, try again later");
                return;
            }
        };
        if submitter.is_none() {
            info!(peer = %self.peer, "MAIL refused: not authenticated and not allowlisted");
            crate::metrics::intake_refused("not_authenticated");
            self.reply(530, [5, 7, 0], "Authentication required");
            return;
        }
        // BINARYMIME needs CHUNKING (RFC 3030), which is not offered.
        if from.flags & MAIL_BODY_BINARYMIME != 0 {
            self.reply(
                555,
                [5, 5, 4],
                "BODY=BINARYMIME is not supported (CHUNKING is not offered)",
            );
            return;
        }
        // RFC 1870 §6.1: refuse a declared size over our limit up front.
        if from.size > self.config.limits.max_message_size {
            crate::metrics::intake_refused("too_big");
            self.reply(
                552,
                [5, 3, 4],
                "Message size exceeds fixed maximum message size",
            );
            return;
        }
        self.transaction = Some(Transaction {
            mail_from: from.address,
            rcpt_to: Vec::new(),
            arriving: self.sink.arriving(),
        });
        self.reply(250, [2, 1, 0], "Ok");
    }

    fn handle_rcpt(&mut self, to: RcptTo<String>) {
        let max = self.config.limits.max_recipients;
        let Some(transaction) = &mut self.transaction else {
            self.reply(503, [5, 5, 1], "Need MAIL command");
            return;
        };
        if to.address.is_empty() {
            self.reply(501, [5, 1, 3], "Bad recipient address syntax");
        } else if transaction.rcpt_to.len() >= max {
            // RFC 5321 §4.5.3.1.10: 452 tells the client to send the rest later.
            self.reply(452, [4, 5, 3], "Too many recipients");
        } else {
            transaction.rcpt_to.push(to.address);
            self.reply(250, [2, 1, 5], "Ok");
        }
    }

    async fn handle_bdat<T>(&mut self, io: &mut T, chunk_size: usize) -> Result<Flow, IntakeError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        // CHUNKING is not offered; still skip the chunk's octets so they are
        // not read as commands.
        let mut left = chunk_size;
        let started = Instant::now();
        loop {
            let n = left.min(self.inbuf.len());
            self.inbuf.drain(..n);
            left -= n;
            if left == 0 {
                break;
            }
            let slow = too_slow_after(&self.config.limits, started, (chunk_size - left) as u64);
            if let Some(stop) = self.read_more(io, Some(slow)).await? {
                return self.goodbye(io, stop).await;
            }
        }
        self.transaction = None;
        self.reply(502, [5, 5, 1], "CHUNKING not supported");
        Ok(Flow::Continue)
    }

    async fn handle_data<T>(&mut self, io: &mut T) -> Result<Flow, IntakeError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(transaction) = self.transaction.take() else {
            self.reply(503, [5, 5, 1], "Need MAIL command");
            return Ok(Flow::Continue);
        };
        if transaction.rcpt_to.is_empty() {
            self.transaction = Some(transaction);
            self.reply(503, [5, 5, 1], "Need RCPT command");
            return Ok(Flow::Continue);
        }
        self.reply_raw("354 End data with <CR><LF>.<CR><LF>");

        let mut collector =
            Collector::in_pieces(self.config.limits.max_message_size, self.sink.piece_size());
        let started = Instant::now();
        let mut received: u64 = 0;
        // A large message is stored piece by piece as it arrives, under the
        // id its job will have; only its head is kept here.
        let upload_id = uuid::Uuid::now_v7().to_string();
        let mut pieces: u32 = 0;
        let mut head: Vec<u8> = Vec::new();
        let mut store_failed: Option<SinkError> = None;
        let outcome = loop {
            let (used, outcome) = collector.ingest(&self.inbuf);
            self.inbuf.drain(..used);
            received += used as u64;
            if let Some(outcome) = outcome {
                break outcome;
            }
            while let Some(piece) = collector.take_piece() {
                if pieces == 0 {
                    head = piece[..piece.len().min(HEAD)].to_vec();
                }
                // After a failed write the rest is only read to its end
                // (the client hears why then), not stored.
                if store_failed.is_none()
                    && let Err(e) = self.sink.store_piece(&upload_id, pieces, piece).await
                {
                    store_failed = Some(e);
                }
                pieces = pieces.saturating_add(1);
            }
            let slow = too_slow_after(&self.config.limits, started, received);
            if let Some(stop) = self.read_more(io, Some(slow)).await? {
                // Disconnect, timeout or shutdown before the final dot: nothing
                // was accepted, so nothing is stored.
                info!(peer = %self.peer, ?stop, "message abandoned before its end");
                if pieces > 0 {
                    self.sink.discard_upload(&upload_id).await;
                }
                return self.goodbye(io, stop).await;
            }
        };
        if pieces > 0 && !matches!(outcome, Outcome::Message(_)) {
            self.sink.discard_upload(&upload_id).await;
        }

        let data = match outcome {
            Outcome::Message(data) => data,
            Outcome::Rejected(why) => {
                let reason = match why {
                    Rejection::BareNewline => {
                        "a bare CR or LF in the data (the client must send CRLF line endings)"
                            .to_owned()
                    }
                    Rejection::LineTooLong => {
                        "a line over 1000 octets (RFC 5321; the client must wrap or encode it)"
                            .to_owned()
                    }
                    Rejection::TooBig => format!(
                        "larger than intake.max_message_size ({} bytes)",
                        self.config.limits.max_message_size
                    ),
                    Rejection::Nul => {
                        "a NUL byte in the data (the client must encode binary content)".to_owned()
                    }
                };
                warn!(peer = %self.peer, %reason, "message refused");
                crate::metrics::intake_refused(why.metric_reason());
                match why {
                    Rejection::BareNewline => {
                        self.reply(554, [5, 6, 0], "Bare LF or CR not allowed");
                    }
                    Rejection::LineTooLong => self.reply(500, [5, 5, 2], "Line too long"),
                    Rejection::Nul => self.reply(
                        554,
                        [5, 6, 0],
                        "NUL bytes not allowed in a message; encode binary content (base64)",
                    ),
                    Rejection::TooBig => self.reply(
                        552,
                        [5, 3, 4],
                        "Message size exceeds fixed maximum message size",
                    ),
                }
                return Ok(Flow::Continue);
            }
        };

        let upload = (pieces > 0).then(|| super::Upload {
            id: upload_id.clone(),
            pieces,
            size: collector.taken() + data.len(),
            head,
        });
        let submitter = match (self.submitter().await, store_failed) {
            (Ok(Some(submitter)), None) => submitter,
            (_, Some(error)) => {
                if let Some(u) = &upload {
                    self.sink.discard_upload(&u.id).await;
                }
                self.refused_by_sink(error, "", upload.as_ref().map_or(0, |u| u.size));
                return Ok(Flow::Continue);
            }
            _ => {
                if let Some(u) = &upload {
                    self.sink.discard_upload(&u.id).await;
                }
                // Unreachable in practice: MAIL checked it; refuse rather than relay.
                self.reply(530, [5, 7, 0], "Authentication required");
                return Ok(Flow::Continue);
            }
        };
        let size = upload.as_ref().map_or(data.len(), |u| u.size);
        let upload_left = upload.as_ref().map(|u| u.id.clone());
        let recipients = transaction.rcpt_to.len();
        let submitter_name = submitter.name.clone();
        // Handed over now: a group commit no longer waits for it but takes it.
        drop(transaction.arriving);
        let submission = Submission {
            submitter,
            peer: self.peer,
            helo: self.helo.clone().unwrap_or_default(),
            envelope: Envelope {
                mail_from: transaction.mail_from,
                rcpt_to: transaction.rcpt_to,
            },
            data,
            tls: self.tls,
            upload,
        };
        match self.sink.accept(submission).await {
            Ok(id) => {
                info!(peer = %self.peer, submitter = %submitter_name, size, recipients, queue_id = %id, "message queued");
                crate::metrics::intake_accepted();
                let id = printable(&id, 64);
                self.reply(250, [2, 0, 0], format_args!("Ok: queued as {id}"));
            }
            Err(error) => {
                if let Some(id) = upload_left {
                    self.sink.discard_upload(&id).await;
                }
                self.refused_by_sink(error, &submitter_name, size);
            }
        }
        Ok(Flow::Continue)
    }

    /// Answers a message the rest of hikyaku did not take.
    fn refused_by_sink(&mut self, error: SinkError, submitter_name: &str, size: usize) {
        warn!(peer = %self.peer, submitter = %submitter_name, size, %error, "message not queued");
        crate::metrics::intake_refused(error.metric_reason());
        match error {
            SinkError::Temporary(reason) => {
                let reason = printable(&reason, 200);
                self.reply(451, [4, 3, 0], reason);
            }
            SinkError::Throttled(_) => {
                self.reply(451, [4, 3, 0], "Try again later");
            }
            SinkError::StorageFull => {
                self.reply(452, [4, 3, 1], "Insufficient system storage");
            }
            SinkError::Permanent(reason) => {
                let reason = printable(&reason, 200);
                self.reply(554, [5, 3, 0], reason);
            }
            SinkError::Refused(reason) => {
                let reason = printable(&reason, 300);
                self.reply(550, [5, 7, 1], reason);
            }
            SinkError::TooLargeForAccount(reason) => {
                let reason = printable(&reason, 300);
                self.reply(552, [5, 3, 4], reason);
            }
        }
    }
}

/// Makes text safe for one reply line: no control characters (a CR or LF in a
/// sink message would forge extra replies), bounded length.
fn printable(text: &str, max_chars: usize) -> String {
    let cleaned: String = text
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cleaned.trim().is_empty() {
        "Error".to_owned()
    } else {
        cleaned
    }
}
