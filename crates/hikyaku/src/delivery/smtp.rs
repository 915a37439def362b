//! The upstream SMTP transport: lettre's low-level [`AsyncSmtpConnection`]
//! over a socket we open and secure ourselves, driven step by step so that
//! each step can be judged on its own.
//!
//! * The socket: TCP with `TCP_NODELAY` (lettre writes the message and the
//!   final dot separately; with Nagle's algorithm and delayed ACKs every
//!   message would stall for tens of milliseconds), TLS by tokio-rustls with
//!   [`crate::tls::client_config`] — the same Verify Server Certificate, Add
//!   CN and extra-CA rules as every HTTPS call, checked during the handshake,
//!   so nothing is sent to a server that fails them.
//! * `smtp_security = "starttls"` requires STARTTLS — a server that does not
//!   offer it is refused, never used in plain text; `"implicit"` speaks TLS
//!   from the first byte. The plain-text part of STARTTLS (greeting, EHLO,
//!   STARTTLS) is spoken here, before lettre takes over the encrypted
//!   stream: lettre cannot hand over its socket, and this way any byte the
//!   server sends after its `220` to STARTTLS (a response-injection attempt)
//!   is caught and refused. lettre then reads the server's greeting again
//!   (replayed from what we read) and sends EHLO over TLS (RFC 3207 §4.2).
//! * AUTH XOAUTH2 is sent by us through `command()` (lettre's own `auth()`
//!   cannot answer Gmail's `334` error challenge): a `334` is answered with an
//!   empty line, and its base64 JSON is kept in the recorded reply.
//! * Each recipient gets its own `RCPT`: `5xx` refuses that recipient only,
//!   a `4xx` aborts the transaction (the whole job is retried later; nothing
//!   was sent).
//! * When the server's EHLO offers PIPELINING (Exchange Online and Gmail
//!   do), MAIL, every RCPT and DATA go out in one write and their replies
//!   are read in order (RFC 2920), and the message leaves with its final
//!   dot in one write: two round trips per message instead of four or
//!   more, which is most of a message's time on a link to the cloud. lettre
//!   does not record PIPELINING, so the EHLO reply is read from the bytes
//!   lettre read while connecting.
//! * DATA: lettre's `message_iter()` dot-stuffs and appends `CRLF.CRLF`
//!   itself, so [`Pieces`] strips the message's own final CRLF (else the
//!   message would grow a blank line) and turns stray bare CR/LF into CRLF
//!   (lettre's dot-stuffing only recognises lines that end in CRLF). It does
//!   so one piece of [`DATA_PIECE`] bytes at a time, as lettre writes them:
//!   a 10 MB message is sent without two more copies of it (prepared and
//!   dot-stuffed) in memory.
//! * Every step is bounded: connecting by `connect_timeout_secs` (plus one
//!   command timeout for the TLS handshake, greeting and EHLO), each reply by
//!   `command_timeout_secs`, the end of DATA additionally by the time to
//!   upload the message at 64 KiB/s.
//!
//! Sessions are reused between jobs by [`super::pool`]. lettre's `tracing`
//! feature must stay off: it would log the AUTH line, i.e. the access token.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lettre::Address;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Mail, Quit, Rcpt};
use lettre::transport::smtp::extension::{
    ClientId, Extension, MailBodyParameter, MailParameter, ServerInfo,
};
use lettre::transport::smtp::response::Response;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::outcome::{Refusal, Stage, decode_challenge};
use crate::cloud::Cloud;
use crate::i18n::Reason;
use crate::provider::Provider;

/// How the TLS of an upstream connection starts: the account's setting.
pub use crate::store::accounts::SmtpSecurity as Security;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// The account's TLS policy, built once and shared ([`crate::tls::client_config`]).
    pub tls: Arc<rustls::ClientConfig>,
    /// Which policy `tls` was built for ([`crate::tls::client_config_with_id`]).
    pub tls_id: u64,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub hello: ClientId,
    /// The host is the provider's own ([`provider_host`]): failures to
    /// connect are described in full. For any other host they are not (the
    /// names and dates on its certificate, how its port answered), so that
    /// the host setting cannot be used to probe the internal network.
    pub full_detail: bool,
}

/// Domains under which the provider runs its SMTP hosts.
fn provider_domains(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Microsoft => &["office365.com", "outlook.com", "office365.us", "outlook.cn"],
        Provider::Google => &["gmail.com", "google.com", "googlemail.com"],
    }
}

/// Whether `host` is a plausible SMTP host of the account's provider: its
/// cloud's preset host or a host under the provider's own domains.
pub fn provider_host(provider: Provider, cloud: Cloud, host: &str) -> bool {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    host == cloud.preset(provider).smtp_host
        || host == provider.default_smtp().0
        || provider_domains(provider)
            .iter()
            .any(|d| host.strip_suffix(d).is_some_and(|rest| rest.ends_with('.')))
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
    /// No usable connection: refused, lost, timed out, TLS failed (which
    /// includes the Add-CN check: nothing was sent then).
    Transport { stage: Stage, reason: String },
    /// An address we were given is not valid.
    BadAddress { stage: Stage, reason: String },
}

impl SmtpError {
    /// What is recorded in the job history: the upstream's reply as it
    /// came, or why there was none.
    pub fn reason(&self) -> Reason {
        match self {
            SmtpError::Reply { .. } => super::replies::upstream(self.reply()),
            SmtpError::Transport {
                stage: Stage::Connect,
                reason,
            } => super::replies::connect_failed(reason),
            SmtpError::Transport { stage, reason } => {
                super::replies::transport(reason, stage.as_str())
            }
            SmtpError::BadAddress { reason, .. } => Reason::text(reason),
        }
    }

    /// The text of [`SmtpError::reason`]: for a negative reply, the reply.
    pub fn reply(&self) -> String {
        match self {
            SmtpError::Reply { code, text, .. } => format!("{code} {text}"),
            _ => self.reason().to_string(),
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
    /// Each recipient refused with `5xx`.
    pub refused: Vec<Refusal>,
}

/// The result of `send` when no message went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Every recipient was refused (permanently).
    AllRefused(Vec<Refusal>),
    Smtp(SmtpError),
}

/// An open, encrypted SMTP session.
pub struct Session {
    conn: AsyncSmtpConnection,
    control: Arc<Control>,
    /// The server offers PIPELINING (RFC 2920): MAIL, RCPT and DATA go out
    /// in one write, one round trip instead of two or more.
    pipelining: bool,
    /// Set when the dialogue went where it cannot be resumed from (a
    /// pipelined group answered unexpectedly): the session is not reused.
    broken: bool,
    command_timeout: Duration,
    /// Messages sent over this session so far.
    pub sent: u32,
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
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return describe_io(io);
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

/// The stream under lettre: TLS over TCP, and first the server's greeting
/// again when STARTTLS was spoken before lettre took over.
///
/// Writes are gathered until lettre flushes, and a flush can be held back
/// ([`Control`]): lettre writes a message and its final dot separately, each
/// with a flush, which would otherwise be two TLS records and two packets.
struct Wire {
    replay: Vec<u8>,
    replayed: usize,
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    /// Written by lettre, not yet handed to TLS.
    pending: Vec<u8>,
    /// How much of `pending` TLS has taken.
    taken: usize,
    control: Arc<Control>,
    /// A message being fed from the store (taken from [`Control::feed`]);
    /// in a mutex only because lettre wants the stream `Sync`.
    feeding: std::sync::Mutex<Option<Feed>>,
}

/// The prepared pieces of a message read from the store as they are sent.
pub type Feed = Pin<Box<dyn futures_util::Stream<Item = io::Result<Vec<u8>>> + Send>>;

/// What the session tells its [`Wire`] once lettre owns it.
struct Control {
    /// Skip the next flush: set before lettre's `message()`, so that the
    /// message and its final dot leave together.
    hold: AtomicBool,
    /// While lettre connects (`Some`): the bytes it reads (greeting and EHLO
    /// reply), kept to learn the extensions lettre does not record.
    heard: std::sync::Mutex<Option<Vec<u8>>>,
    /// A message to write, piece by piece as each is read, before lettre's
    /// next write (its final dot): lettre takes a message only from a
    /// synchronous iterator, which cannot wait for the store.
    feed: std::sync::Mutex<Option<Feed>>,
}

impl Control {
    /// Listening from the start.
    fn listening() -> Self {
        Control {
            hold: AtomicBool::new(false),
            heard: std::sync::Mutex::new(Some(Vec::new())),
            feed: std::sync::Mutex::new(None),
        }
    }

    fn heard(&self, bytes: &[u8]) {
        if let Ok(mut heard) = self.heard.lock()
            && let Some(h) = heard.as_mut()
            && h.len() + bytes.len() <= MAX_PLAIN_REPLY * 2
        {
            h.extend_from_slice(bytes);
        }
    }

    /// Stops listening and returns what was heard.
    fn stop(&self) -> Vec<u8> {
        self.heard
            .lock()
            .ok()
            .and_then(|mut h| h.take())
            .unwrap_or_default()
    }

    fn set_feed(&self, feed: Option<Feed>) {
        if let Ok(mut f) = self.feed.lock() {
            *f = feed;
        }
    }

    fn take_feed(&self) -> Option<Feed> {
        self.feed.lock().ok().and_then(|mut f| f.take())
    }

    fn hold_next_flush(&self, hold: bool) {
        self.hold.store(hold, Ordering::Relaxed);
    }

    /// Whether this flush is to be skipped (and counts it as skipped).
    fn skip_flush(&self) -> bool {
        self.hold.swap(false, Ordering::Relaxed)
    }
}

/// Whether an EHLO reply (in `heard`, after the greeting) lists `keyword`.
fn ehlo_lists(heard: &[u8], keyword: &str) -> bool {
    heard
        .split(|&b| b == b'\n')
        .filter(|line| line.starts_with(b"250-") || line.starts_with(b"250 "))
        .filter_map(|line| std::str::from_utf8(&line[4..]).ok())
        .filter_map(|text| text.split_whitespace().next())
        .any(|word| word.eq_ignore_ascii_case(keyword))
}

/// Bytes [`Wire`] gathers at most; a larger message goes through as lettre
/// writes it.
const GATHER_MAX: usize = 64 * 1024;

impl Wire {
    /// Hands everything gathered to TLS.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.taken < self.pending.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.tls).poll_write(cx, &self.pending[self.taken..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.taken += n;
        }
        self.pending.clear();
        self.taken = 0;
        Poll::Ready(Ok(()))
    }
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wire { .. }")
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
        } else {
            std::task::ready!(Pin::new(&mut this.tls).poll_read(cx, buf))?;
        }
        this.control.heard(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // A message fed from the store goes out first, a piece at a time.
        loop {
            let feeding = this
                .feeding
                .get_mut()
                .map_err(|_| io::Error::other("poisoned"))?;
            if feeding.is_none() {
                *feeding = this.control.take_feed();
                if feeding.is_none() {
                    break;
                }
            }
            std::task::ready!(this.poll_drain(cx))?;
            let feeding = this
                .feeding
                .get_mut()
                .map_err(|_| io::Error::other("poisoned"))?;
            let Some(feed) = feeding.as_mut() else {
                break;
            };
            match std::task::ready!(feed.as_mut().poll_next(cx)) {
                Some(Ok(piece)) => {
                    this.pending = piece;
                    this.taken = 0;
                }
                Some(Err(e)) => {
                    *feeding = None;
                    return Poll::Ready(Err(e));
                }
                None => {
                    *feeding = None;
                    // Not a piece's worth kept for the life of the session.
                    if this.pending.capacity() > GATHER_MAX {
                        std::task::ready!(this.poll_drain(cx))?;
                        this.pending = Vec::new();
                    }
                }
            }
        }
        if this.pending.len() + buf.len() <= GATHER_MAX {
            this.pending.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.control.skip_flush() {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tls).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Wire {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tls.get_ref().0.peer_addr()
    }
}

/// Longest reply we read in plain text (a greeting or an EHLO list).
const MAX_PLAIN_REPLY: usize = 16 * 1024;

/// Reads one whole reply in plain text. Bytes after it mean the server
/// talks out of turn; after our STARTTLS that is a response-injection
/// attempt, and in any case nothing we can trust.
async fn read_plain_reply(
    tcp: &mut TcpStream,
    stage: Stage,
) -> Result<(Vec<u8>, Response), SmtpError> {
    let mut raw = Vec::with_capacity(512);
    let mut chunk = [0u8; 2048];
    loop {
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|e| SmtpError::Transport {
                stage,
                reason: describe_io(&e),
            })?;
        if n == 0 {
            return Err(SmtpError::Transport {
                stage,
                reason: "the server closed the connection".to_owned(),
            });
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > MAX_PLAIN_REPLY {
            return Err(SmtpError::Transport {
                stage,
                reason: "the server sent an over-long reply; is this an SMTP server?".to_owned(),
            });
        }
        // Complete when the last line ends in CRLF and is a final line ("250 ...").
        if !raw.ends_with(b"\r\n") {
            continue;
        }
        let text = String::from_utf8_lossy(&raw);
        let lines: Vec<&str> = text.trim_end_matches("\r\n").split("\r\n").collect();
        let is_final = |l: &str| l.as_bytes().get(3) != Some(&b'-');
        let Some(end) = lines.iter().position(|l| is_final(l)) else {
            continue;
        };
        if end + 1 < lines.len() {
            return Err(SmtpError::Transport {
                stage,
                reason: "the server sent more than one reply at once before TLS (a possible STARTTLS response injection); refusing the connection".to_owned(),
            });
        }
        let parsed = Response::from_str(&text).map_err(|_| SmtpError::Transport {
            stage,
            reason: format!(
                "the server's reply is not SMTP ({:?}); is this an SMTP port?",
                text.chars().take(80).collect::<String>()
            ),
        })?;
        return Ok((raw, parsed));
    }
}

fn describe_io(e: &io::Error) -> String {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return format!("TLS: {}", crate::tls::describe_tls_error(tls));
    }
    use io::ErrorKind as K;
    match e.kind() {
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            "the server closed the connection".to_owned()
        }
        K::ConnectionRefused => "connection refused".to_owned(),
        K::TimedOut => "timed out".to_owned(),
        _ => e.to_string(),
    }
}

fn negative(stage: Stage, r: &Response) -> SmtpError {
    SmtpError::Reply {
        stage,
        code: code_of(r),
        text: reply_text(r),
    }
}

/// The plain-text part of STARTTLS: greeting, EHLO, STARTTLS and its `220`.
/// Returns the greeting, for lettre to read again over TLS.
async fn starttls_plain(tcp: &mut TcpStream, hello: &ClientId) -> Result<Vec<u8>, SmtpError> {
    let (greeting, r) = read_plain_reply(tcp, Stage::Connect).await?;
    if !r.is_positive() {
        return Err(negative(Stage::Connect, &r));
    }
    let write = |e: io::Error| SmtpError::Transport {
        stage: Stage::Tls,
        reason: describe_io(&e),
    };
    tcp.write_all(format!("EHLO {hello}\r\n").as_bytes())
        .await
        .map_err(write)?;
    let (_, ehlo) = read_plain_reply(tcp, Stage::Tls).await?;
    if !ehlo.is_positive() {
        return Err(negative(Stage::Tls, &ehlo));
    }
    let offers = ServerInfo::from_response(&ehlo)
        .map(|info| info.supports_feature(Extension::StartTls))
        .unwrap_or(false);
    if !offers {
        let _ = tcp.write_all(b"QUIT\r\n").await;
        return Err(SmtpError::Transport {
            stage: Stage::Tls,
            reason: "the server does not offer STARTTLS; refusing to send in plain text (check the port, or choose implicit TLS for port 465)".to_owned(),
        });
    }
    tcp.write_all(b"STARTTLS\r\n").await.map_err(write)?;
    let (_, ready) = read_plain_reply(tcp, Stage::Tls).await?;
    if code_of(&ready) != 220 {
        return Err(negative(Stage::Tls, &ready));
    }
    Ok(greeting)
}

/// The one failure shown for a host that is not the provider's, whatever
/// its port did (closed, filtered, not SMTP, no STARTTLS, not TLS).
fn no_server(t: &Target) -> SmtpError {
    SmtpError::Transport {
        stage: Stage::Connect,
        reason: Reason::new("smtp-no-server")
            .arg("target", format!("{}:{}", t.host, t.port))
            .to_string(),
    }
}

/// `e` as it may be shown for `t`: itself for the provider's host, else
/// [`no_server`].
fn hidden(t: &Target, e: SmtpError) -> SmtpError {
    if t.full_detail { e } else { no_server(t) }
}

/// A failed TLS handshake. For a host that is not the provider's, a
/// certificate problem is named without the names or dates the
/// certificate carries; anything else reads as [`no_server`].
fn handshake_failure(t: &Target, e: &io::Error) -> SmtpError {
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    if t.full_detail {
        return SmtpError::Transport {
            stage: Stage::Tls,
            reason: describe_io(e),
        };
    }
    let Some(tls) = tls else {
        return no_server(t);
    };
    let target = format!("{}:{}", t.host, t.port);
    let reason = crate::tls::tls_reason(tls);
    let reason = match reason.code.as_str() {
        // What the administrator needs to correct trust, with nothing of
        // the certificate's own content.
        "tls-unknown-issuer"
        | "tls-expired"
        | "tls-not-yet-valid"
        | "tls-wrong-name-bare"
        | "tls-revoked"
        | "tls-bad-signature"
        | "tls-malformed"
        | "tls-critical-extension"
        | "tls-purpose"
        | "tls-no-cn" => reason,
        "tls-wrong-name" => Reason::new("smtp-tls-name-unlisted").arg("target", &target),
        "tls-cn-mismatch" => Reason::new("smtp-tls-cn-mismatch-unlisted").arg("target", &target),
        "tls-expired-at" => Reason::new("tls-expired"),
        "tls-not-yet-valid-at" => Reason::new("tls-not-yet-valid"),
        _ => return no_server(t),
    };
    SmtpError::Transport {
        stage: Stage::Tls,
        reason: format!("TLS: {reason}"),
    }
}

/// Opens TCP (with `TCP_NODELAY`) to the first address of the host that
/// answers. A name that does not resolve is always said: it is the setting.
async fn open_tcp(t: &Target) -> Result<TcpStream, SmtpError> {
    let (host, port, limit) = (t.host.as_str(), t.port, t.connect_timeout);
    // The reason names the server: the history shows which one failed.
    let transport = |reason: String| SmtpError::Transport {
        stage: Stage::Connect,
        reason: format!("{host}:{port}: {reason}"),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| transport(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = transport(format!("{host} has no address"));
    for addr in addrs {
        match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                tcp.set_nodelay(true)
                    .map_err(|e| hidden(t, transport(describe_io(&e))))?;
                return Ok(tcp);
            }
            Ok(Err(e)) => last = hidden(t, transport(describe_io(&e))),
            Err(_) => {
                last = hidden(
                    t,
                    transport(format!("no answer within {} s", limit.as_secs())),
                )
            }
        }
    }
    Err(last)
}

async fn connect_inner(t: &Target) -> Result<Session, SmtpError> {
    let mut tcp = open_tcp(t).await?;
    let replay = match t.security {
        Security::StartTls => starttls_plain(&mut tcp, &t.hello)
            .await
            .map_err(|e| hidden(t, e))?,
        Security::Implicit => Vec::new(),
    };
    let name = ServerName::try_from(t.host.clone()).map_err(|_| SmtpError::Transport {
        stage: Stage::Tls,
        reason: format!("{:?} is not a valid server name for TLS", t.host),
    })?;
    let tls = tokio_rustls::TlsConnector::from(t.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| handshake_failure(t, &e))?;
    let control = Arc::new(Control::listening());
    let wire = Wire {
        replay,
        replayed: 0,
        tls,
        pending: Vec::new(),
        taken: 0,
        control: control.clone(),
        feeding: std::sync::Mutex::new(None),
    };
    let conn = AsyncSmtpConnection::connect_with_transport(Box::new(wire), &t.hello)
        .await
        .map_err(|e| hidden(t, from_lettre(Stage::Connect, &e)))?;
    let pipelining = ehlo_lists(&control.stop(), "PIPELINING");
    Ok(Session {
        conn,
        control,
        pipelining,
        broken: false,
        command_timeout: t.command_timeout,
        sent: 0,
    })
}

/// Connects and secures the connection (STARTTLS or implicit TLS), checking
/// the server's certificate by the account's rules. Never returns a
/// plain-text session.
pub async fn connect(t: &Target) -> Result<Session, SmtpError> {
    let limit = t.connect_timeout + t.command_timeout;
    match tokio::time::timeout(limit, connect_inner(t)).await {
        Err(_) => Err(hidden(t, timed_out(Stage::Connect, limit))),
        Ok(r) => r,
    }
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
        let answer = tokio::time::timeout(self.command_timeout, self.conn.command(line)).await;
        self.judge(stage, answer)
    }

    /// The next reply of a pipelined group.
    async fn next_reply(&mut self, stage: Stage) -> Result<Response, SmtpError> {
        let answer = tokio::time::timeout(self.command_timeout, self.conn.read_response()).await;
        self.judge(stage, answer)
    }

    fn judge(
        &self,
        stage: Stage,
        answer: Result<
            Result<Response, lettre::transport::smtp::Error>,
            tokio::time::error::Elapsed,
        >,
    ) -> Result<Response, SmtpError> {
        match answer {
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

    /// MAIL, one RCPT per recipient, DATA (as one pipelined group when the
    /// server offers PIPELINING), then the message (as stored: line endings
    /// are made CRLF on the way). Returns once the server accepted the
    /// message (its reply after the final dot).
    pub async fn send(
        &mut self,
        from: &str,
        recipients: &[String],
        data: &[u8],
    ) -> Result<SendReport, SendError> {
        self.send_message(from, recipients, Outgoing::Whole(data))
            .await
    }

    /// [`Session::send`] for a message whole in memory or read piece by
    /// piece while it is written.
    pub async fn send_message(
        &mut self,
        from: &str,
        recipients: &[String],
        message: Outgoing<'_>,
    ) -> Result<SendReport, SendError> {
        let (data, len): (&[u8], usize) = match &message {
            Outgoing::Whole(data) => (data, data.len()),
            Outgoing::Pieces { head, size, .. } => (head, *size),
        };
        let streamed = matches!(message, Outgoing::Pieces { .. });
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
        // A message in pieces is not read ahead: 8BITMIME is declared
        // whenever offered (right for 7-bit text too, RFC 6152).
        if (streamed || !data.is_ascii()) && info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let mail = Mail::new(Some(sender), params);

        let mut refused = Vec::new();
        let mut valid = Vec::new();
        for rcpt in recipients {
            match rcpt.parse::<Address>() {
                Ok(addr) => valid.push((rcpt, addr)),
                Err(_) => refused.push(Refusal {
                    recipient: rcpt.clone(),
                    reply: "not a valid address".to_owned(),
                }),
            }
        }
        if valid.is_empty() {
            return Err(SendError::AllRefused(refused));
        }
        if self.pipelining {
            self.envelope_pipelined(mail, &valid, &mut refused).await?;
        } else {
            self.envelope_stepwise(mail, &valid, &mut refused).await?;
        }

        let size_allowance = Duration::from_secs(u64::try_from(len / 65_536).unwrap_or(u64::MAX));
        let limit = self.command_timeout + size_allowance;
        let reply = match message {
            Outgoing::Whole(data) => {
                let pieces = Pieces::new(data, Some(self.control.clone()));
                tokio::time::timeout(limit, self.conn.message_iter(pieces)).await
            }
            Outgoing::Pieces { head, rest, .. } => {
                self.control.set_feed(Some(stuffed(head.to_vec(), rest)));
                // lettre writes nothing of its own but the final dot; the
                // wire writes the fed message before it.
                let sent = tokio::time::timeout(
                    limit,
                    self.conn.message_iter(std::iter::empty::<&[u8]>()),
                )
                .await;
                self.control.set_feed(None);
                if !matches!(sent, Ok(Ok(_))) {
                    // Cut off mid-message: what the wire still holds of it
                    // must never be written into another transaction.
                    self.broken = true;
                }
                sent
            }
        };
        self.control.hold_next_flush(false);
        let reply = match reply {
            Err(_) => return Err(smtp(timed_out(Stage::EndOfData, limit))),
            Ok(Err(e)) => return Err(smtp(from_lettre(Stage::EndOfData, &e))),
            Ok(Ok(r)) => r,
        };
        self.sent = self.sent.saturating_add(1);
        Ok(SendReport {
            reply: format!("{} {}", code_of(&reply), reply_text(&reply)),
            refused,
        })
    }

    /// MAIL, then each RCPT and DATA, each waiting for its reply. A `5xx`
    /// to a RCPT refuses that recipient only; a `4xx` aborts the
    /// transaction (the whole job is tried again later; nothing was sent).
    async fn envelope_stepwise(
        &mut self,
        mail: Mail,
        valid: &[(&String, Address)],
        refused: &mut Vec<Refusal>,
    ) -> Result<(), SendError> {
        let smtp = SendError::Smtp;
        self.command(Stage::Mail, mail).await.map_err(smtp)?;
        let mut accepted = 0usize;
        for (rcpt, addr) in valid {
            match self
                .command(Stage::Rcpt, Rcpt::new(addr.clone(), Vec::new()))
                .await
            {
                Ok(_) => accepted += 1,
                Err(SmtpError::Reply { code, text, .. }) if (500..600).contains(&code) => {
                    refused.push(Refusal {
                        recipient: (*rcpt).clone(),
                        reply: format!("{code} {text}"),
                    });
                }
                Err(e) => return Err(smtp(e)),
            }
        }
        if accepted == 0 {
            let _ = self.command(Stage::Rcpt, "RSET\r\n").await;
            return Err(SendError::AllRefused(std::mem::take(refused)));
        }
        self.command(Stage::Data, Data).await.map_err(smtp)?;
        Ok(())
    }

    /// MAIL, every RCPT and DATA in one write (RFC 2920), then their
    /// replies in order, judged as in [`Self::envelope_stepwise`]. Every
    /// reply of the group is read whatever the first ones said, so that the
    /// dialogue stays in step; the first failure is the one reported.
    async fn envelope_pipelined(
        &mut self,
        mail: Mail,
        valid: &[(&String, Address)],
        refused: &mut Vec<Refusal>,
    ) -> Result<(), SendError> {
        let smtp = SendError::Smtp;
        let mut group = mail.to_string();
        for (_, addr) in valid {
            group.push_str(&Rcpt::new(addr.clone(), Vec::new()).to_string());
        }
        group.push_str(&Data.to_string());
        // A transport failure leaves the dialogue somewhere unknown.
        let mut failure = match self.command(Stage::Mail, group).await {
            Ok(_) => None,
            Err(e @ SmtpError::Reply { .. }) => Some(e),
            Err(e) => {
                self.broken = true;
                return Err(smtp(e));
            }
        };
        let mut accepted = 0usize;
        for (rcpt, _) in valid {
            match self.next_reply(Stage::Rcpt).await {
                Ok(_) => accepted += 1,
                Err(SmtpError::Reply { code, text, .. })
                    if failure.is_none() && (500..600).contains(&code) =>
                {
                    refused.push(Refusal {
                        recipient: (*rcpt).clone(),
                        reply: format!("{code} {text}"),
                    });
                }
                Err(e @ SmtpError::Reply { .. }) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    self.broken = true;
                    return Err(smtp(failure.unwrap_or(e)));
                }
            }
        }
        let data = self.next_reply(Stage::Data).await;
        match (data, failure) {
            (Ok(_), None) if accepted > 0 => Ok(()),
            (Ok(_), failure) => {
                // DATA was opened although the transaction cannot go on (a
                // server outside RFC 2920 §3.1): only closing the connection
                // abandons it with nothing sent.
                self.broken = true;
                Err(failure.map_or_else(|| SendError::AllRefused(std::mem::take(refused)), smtp))
            }
            (Err(e @ SmtpError::Reply { .. }), failure) => {
                if let Some(f) = failure {
                    return Err(smtp(f));
                }
                if accepted == 0 {
                    let _ = self.command(Stage::Rcpt, "RSET\r\n").await;
                    return Err(SendError::AllRefused(std::mem::take(refused)));
                }
                Err(smtp(e))
            }
            (Err(e), failure) => {
                self.broken = true;
                Err(smtp(failure.unwrap_or(e)))
            }
        }
    }

    /// Whether the connection is still fit for another message.
    pub fn is_usable(&self) -> bool {
        !self.conn.has_broken() && !self.broken
    }

    /// QUIT, best effort.
    pub async fn quit(mut self) {
        if self.broken {
            // Dropped, which closes the connection: in the middle of a
            // transaction QUIT would be read as text of the message.
            return;
        }
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
    Pieces::new(message, None).flatten().collect()
}

/// A message to send: whole, or its first piece (From already rewritten)
/// and the rest read piece by piece as it is written.
pub enum Outgoing<'a> {
    Whole(&'a [u8]),
    Pieces {
        head: &'a [u8],
        rest: Feed,
        /// The stored message's length (for the time allowed to send it).
        size: usize,
    },
}

/// `head` and then the pieces of `rest`, made ready for the wire: line
/// endings CRLF, lines starting with a dot stuffed (RFC 5321 §4.5.2), the
/// final CRLF left to lettre's `<CRLF>.<CRLF>`.
fn stuffed(head: Vec<u8>, rest: Feed) -> Feed {
    use futures_util::StreamExt as _;
    let first = futures_util::stream::once(std::future::ready(Ok(head)));
    let pieces = first
        .chain(rest)
        .map(Some)
        .chain(futures_util::stream::once(std::future::ready(None)));
    let mut stuffer = Stuffer::default();
    Box::pin(pieces.filter_map(move |piece| {
        let out = match piece {
            Some(Ok(p)) => Some(Ok(stuffer.feed(&p, false))),
            Some(Err(e)) => Some(Err(e)),
            None => Some(Ok(stuffer.feed(&[], true))),
        };
        std::future::ready(out.filter(|r| !matches!(r, Ok(v) if v.is_empty())))
    }))
}

/// Dot-stuffing and line endings across piece boundaries.
#[derive(Debug)]
struct Stuffer {
    /// A trailing CR or CRLF held back: whether it is bare, or the
    /// message's last, depends on what follows.
    carry: Vec<u8>,
    line_start: bool,
}

impl Default for Stuffer {
    fn default() -> Self {
        Stuffer {
            carry: Vec::new(),
            line_start: true,
        }
    }
}

impl Stuffer {
    fn feed(&mut self, piece: &[u8], last: bool) -> Vec<u8> {
        let mut input = std::mem::take(&mut self.carry);
        input.extend_from_slice(piece);
        let mut end = input.len();
        if !last {
            if input.ends_with(b"\r\n") {
                end -= 2;
            } else if input.ends_with(b"\r") {
                end -= 1;
            }
        }
        self.carry = input[end..].to_vec();
        let body = &input[..end];
        let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 8);
        let mut i = 0;
        while i < body.len() {
            let b = body[i];
            if self.line_start && b == b'.' {
                out.push(b'.');
            }
            match b {
                b'\r' if body.get(i + 1) == Some(&b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    self.line_start = true;
                    i += 2;
                    continue;
                }
                b'\r' | b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.line_start = true;
                }
                _ => {
                    out.push(b);
                    self.line_start = false;
                }
            }
            i += 1;
        }
        if last && out.ends_with(b"\r\n") {
            out.truncate(out.len() - 2);
        }
        out
    }
}

/// Bytes of the stored message prepared and handed to lettre at a time.
const DATA_PIECE: usize = 64 * 1024;

/// A message as lettre's `message_iter()` takes it (see [`prepare_data`]),
/// prepared piece by piece as lettre asks for the next one.
struct Pieces<'a> {
    rest: &'a [u8],
    /// When sending: each piece's flush is held back (see [`Control`]), so
    /// that only the final dot's flush sends what is gathered.
    control: Option<Arc<Control>>,
}

impl<'a> Pieces<'a> {
    fn new(message: &'a [u8], control: Option<Arc<Control>>) -> Self {
        Pieces {
            rest: message,
            control,
        }
    }
}

impl Iterator for Pieces<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.rest.is_empty() {
            return None;
        }
        // A piece never ends in CR unless the message does: whether a CR is
        // bare depends on the byte after it.
        let mut end = self.rest.len().min(DATA_PIECE);
        while end < self.rest.len() && self.rest[end - 1] == b'\r' {
            end += 1;
        }
        let (piece, rest) = self.rest.split_at(end);
        self.rest = rest;
        let mut out = Vec::with_capacity(piece.len() + 16);
        let mut i = 0;
        while i < piece.len() {
            match piece[i] {
                b'\r' if piece.get(i + 1) == Some(&b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    i += 2;
                    continue;
                }
                b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
                b => out.push(b),
            }
            i += 1;
        }
        // A CRLF is never split between pieces, so the message's last one
        // is in its last piece.
        if self.rest.is_empty() && out.ends_with(b"\r\n") {
            out.truncate(out.len() - 2);
        }
        if let Some(c) = &self.control {
            c.hold_next_flush(true);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_read_from_the_ehlo_reply() {
        let heard = b"220 smtp.example ESMTP PIPELINING ready\r\n250-smtp.example Hello\r\n250-SIZE 35882577\r\n250-pipelining\r\n250 SMTPUTF8\r\n";
        assert!(ehlo_lists(heard, "PIPELINING"));
        assert!(ehlo_lists(heard, "SMTPUTF8"));
        // The greeting's words and parameters are not extensions.
        let heard = b"220 smtp.example ESMTP PIPELINING\r\n250-smtp.example Hello\r\n250 SIZE PIPELINING\r\n";
        assert!(!ehlo_lists(heard, "PIPELINING"));
        assert!(!ehlo_lists(b"", "PIPELINING"));
    }

    /// The message prepared whole, as before it was prepared in pieces.
    fn whole(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
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

    /// Pieces stuffed one by one, split anywhere, make what lettre makes
    /// of the whole message.
    #[test]
    fn pieces_are_stuffed_as_lettre_stuffs_the_whole() {
        let message = b".a\r\nb\r\n.\r\n..c\r\nd\re\nf\r\n\r\n.";
        // What lettre's transparency does to the prepared message.
        let prepared = prepare_data(message);
        let mut expected = Vec::new();
        for (i, line) in prepared.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                expected.push(b'\n');
            }
            if line.starts_with(b".") {
                expected.push(b'.');
            }
            expected.extend_from_slice(line);
        }
        for cut in 0..message.len() {
            for cut2 in cut..message.len() {
                let mut s = Stuffer::default();
                let mut out = s.feed(&message[..cut], false);
                out.extend(s.feed(&message[cut..cut2], false));
                out.extend(s.feed(&message[cut2..], false));
                out.extend(s.feed(&[], true));
                assert_eq!(out, expected, "cut at {cut}, {cut2}");
            }
        }
    }

    #[test]
    fn data_is_prepared_for_lettre() {
        assert_eq!(prepare_data(b"a\r\nb\r\n"), b"a\r\nb");
        assert_eq!(prepare_data(b"a\r\nb"), b"a\r\nb");
        assert_eq!(prepare_data(b"a\r\n\r\n"), b"a\r\n");
        assert_eq!(prepare_data(b"a\nb\r.\r\n"), b"a\r\nb\r\n.");
        assert_eq!(prepare_data(b""), b"");
        // Piece by piece, the same as the whole: CRs at and around the
        // pieces' ends, bare or not, and the final CRLF.
        for at in [DATA_PIECE - 2, DATA_PIECE - 1, DATA_PIECE, DATA_PIECE + 1] {
            for tail in [
                &b"\r\n"[..],
                b"\r\r\n",
                b"\r\r",
                b"\n\r",
                b"\rx",
                b"\r\n\r\n",
            ] {
                let mut m = vec![b'a'; at];
                m.extend_from_slice(tail);
                m.extend_from_slice(b"b\r\n");
                let pieces: Vec<Vec<u8>> = Pieces::new(&m, None).collect();
                assert_eq!(pieces.len(), 2, "{at} {tail:?}");
                assert_eq!(pieces.concat(), whole(&m), "{at} {tail:?}");
                m.truncate(at + tail.len());
                assert_eq!(prepare_data(&m), whole(&m), "{at} {tail:?} at the end");
            }
        }
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
        assert!(
            e.reply()
                .starts_with("refused (at connect) — check SMTP Server and Port"),
            "{}",
            e.reply()
        );
        let e = SmtpError::Transport {
            stage: Stage::Tls,
            reason: "handshake".into(),
        };
        assert_eq!(e.reply(), "handshake (during the TLS handshake)");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod host_tests {
    use super::*;
    use crate::tls::testutil::*;
    use crate::tls::{TlsPolicy, client_config};

    #[test]
    fn provider_hosts_are_the_presets_and_the_providers_domains() {
        let ms = Provider::Microsoft;
        assert!(provider_host(ms, Cloud::Worldwide, "smtp.office365.com"));
        assert!(provider_host(ms, Cloud::Worldwide, "SMTP.Office365.com."));
        assert!(provider_host(ms, Cloud::GccHigh, "smtp.office365.us"));
        assert!(provider_host(
            ms,
            Cloud::Worldwide,
            "contoso-com.mail.protection.outlook.com"
        ));
        assert!(provider_host(
            Provider::Google,
            Cloud::Worldwide,
            "smtp.gmail.com"
        ));
        assert!(provider_host(
            Provider::Google,
            Cloud::Worldwide,
            "smtp-relay.gmail.com"
        ));
        for other in [
            "localhost",
            "10.0.0.5",
            "mail.intranet.example",
            "office365.com.evil.example",
            "evil-office365.com",
        ] {
            assert!(!provider_host(ms, Cloud::Worldwide, other), "{other}");
        }
        // Google's domains are not Microsoft's.
        assert!(!provider_host(ms, Cloud::Worldwide, "smtp.gmail.com"));
    }

    fn target(port: u16, security: Security, full_detail: bool, ca: &TestCa) -> Target {
        let policy = TlsPolicy {
            verify_cn: true,
            extra_cas: vec![ca.der()],
            ..TlsPolicy::default()
        };
        Target {
            host: "localhost".to_owned(),
            port,
            security,
            tls: client_config(&policy).unwrap(),
            tls_id: 0,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            hello: ClientId::default(),
            full_detail,
        }
    }

    async fn failure(t: &Target) -> SmtpError {
        match connect(t).await {
            Ok(_) => panic!("connected to {}", t.port),
            Err(e) => e,
        }
    }

    /// A port that answers like a web server.
    async fn not_smtp() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n").await;
            }
        });
        port
    }

    async fn closed() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_certificate_is_described_in_full_for_the_providers_host_only() {
        let ca = TestCa::new("Test CA");
        let leaf = ca.leaf(&["localhost"], "other.example", None);
        let port = https_server(server_config_for(&leaf), String::new())
            .await
            .port();
        let full = failure(&target(port, Security::Implicit, true, &ca)).await;
        let text = full.reason().to_string();
        assert!(
            text.contains("CN 'other.example' does not match host 'localhost'"),
            "{text}"
        );
        let limited = failure(&target(port, Security::Implicit, false, &ca)).await;
        let text = limited.reason().to_string();
        assert!(!text.contains("other.example"), "{text}");
        assert!(
            text.contains(&format!(
                "the certificate's subject CN does not match the host of localhost:{port}"
            )),
            "{text}"
        );
        // Still a TLS failure: nothing was sent.
        assert!(matches!(
            limited,
            SmtpError::Transport {
                stage: Stage::Tls,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn closed_and_non_smtp_ports_read_the_same_for_another_host() {
        let ca = TestCa::new("Test CA");
        let web = not_smtp().await;
        let shut = closed().await;
        let leaf = ca.leaf(&["localhost"], "localhost", None);
        let tls_web = https_server(server_config_for(&leaf), String::new())
            .await
            .port();
        let cases = [
            (web, Security::StartTls),
            (web, Security::Implicit),
            (shut, Security::StartTls),
            (tls_web, Security::StartTls),
        ];
        let mut full = Vec::new();
        for (port, security) in cases {
            let e = failure(&target(port, security, false, &ca)).await;
            let text = e.reason().to_string().replace(&port.to_string(), "PORT");
            assert!(
                text.contains("no SMTP server with TLS answered at localhost:PORT"),
                "{text}"
            );
            assert!(
                !text.contains("HTTP") && !text.contains("refused"),
                "{text}"
            );
            assert_eq!(
                text,
                failure(&target(web, Security::StartTls, false, &ca))
                    .await
                    .reason()
                    .to_string()
                    .replace(&web.to_string(), "PORT")
            );
            full.push(
                failure(&target(port, security, true, &ca))
                    .await
                    .reason()
                    .to_string(),
            );
        }
        // For the provider's host each keeps its own description.
        assert!(full[0].contains("not SMTP"), "{}", full[0]);
        assert!(full[2].contains("refused"), "{}", full[2]);
    }
}
