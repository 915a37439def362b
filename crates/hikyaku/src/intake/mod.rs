//! SMTP intake: the plain-SMTP front door that printers, cron jobs and
//! applications submit mail to.
//!
//! This module owns the wire protocol only (RFC 5321 with STARTTLS, RFC 3207,
//! and AUTH PLAIN/LOGIN, RFC 4954); everything it needs from the rest of
//! hikyaku — credential checks, the IP allowlist and the durable queue — comes
//! through [`IntakeSink`]. Its invariants:
//!
//! * **Never an open relay.** `MAIL FROM` is refused (`530 5.7.0`) unless the
//!   session authenticated or [`IntakeSink::allowlisted`] vouches for the peer.
//! * **`250` means durable.** The final `250` after `DATA` is written only after
//!   [`IntakeSink::accept`] returned `Ok`; any other outcome (disconnect, size,
//!   bare newline, sink error) stores nothing and says so.
//! * **No smuggling.** The end of data is exactly `<CRLF>.<CRLF>`; bare CR and
//!   bare LF are refused in commands and in message data (CVE-2023-51764), and
//!   plaintext pipelined behind `STARTTLS` is discarded (CVE-2011-0411).
//!
//! Layout: [`limits`] (tunables and the per-client connection counter),
//! `data` (the `DATA` collector), `auth` (SASL decoding), `session` (one
//! connection's state machine) and `listener` (the accept loop).

mod auth;
pub mod cidr;
mod data;
pub mod limits;
mod listener;
pub mod local;
pub mod routing;
mod session;
pub mod store_sink;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub use limits::Limits;
pub use listener::serve;
pub use session::run_session;

/// Who submitted a message, and the account it is relayed through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitter {
    /// Login name, or the allowlist entry's name; used in logs and job history.
    pub name: String,
    /// Account to send through; `None` means the default account.
    pub account_id: Option<i64>,
}

/// The SMTP envelope (RFC 5321 §2.3.1), as the client gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse-path without angle brackets; empty for the null sender `<>`.
    pub mail_from: String,
    /// Forward-paths without angle brackets, in the order given; never empty.
    pub rcpt_to: Vec<String>,
}

/// One message handed to [`IntakeSink::accept`].
#[derive(Debug, Clone)]
pub struct Submission {
    pub submitter: Submitter,
    pub peer: SocketAddr,
    /// The EHLO/HELO argument.
    pub helo: String,
    pub envelope: Envelope,
    /// Exactly the message bytes: dot-unstuffed, CRLF line endings (no bare CR
    /// or LF can occur), ending with the CRLF that preceded the final dot.
    pub data: Vec<u8>,
    /// Whether the message arrived over TLS (STARTTLS or implicit).
    pub tls: bool,
    /// A large message: the pieces before `data` were stored as they
    /// arrived ([`IntakeSink::store_piece`]); `data` is its last piece.
    pub upload: Option<Upload>,
}

/// The stored part of a message that arrived in pieces.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The name the pieces were stored under (the job's id to be).
    pub id: String,
    /// Pieces stored.
    pub pieces: u32,
    /// The whole message's length.
    pub size: usize,
    /// The start of the message (its header, for routing and the history).
    pub head: Vec<u8>,
}

/// Why the rest of hikyaku could not take a message or check a login.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Try again later: `451 4.3.0 {0}` (for AUTH: `454 4.7.0`).
    #[error("{0}")]
    Temporary(String),
    /// Never going to work: `554 5.3.0 {0}`.
    #[error("{0}")]
    Permanent(String),
    /// Refused by policy (no account routes it, or it may not send as its
    /// From): `550 5.7.1 {0}`; nothing is queued.
    #[error("{0}")]
    Refused(String),
    /// Larger than the routed account's transport can carry: `552 5.3.4 {0}`;
    /// nothing is queued.
    #[error("{0}")]
    TooLargeForAccount(String),
    /// The queue's disk is full: `452 4.3.1 Insufficient system storage`.
    #[error("insufficient system storage")]
    StorageFull,
    /// Too many failed logins for this user or from this address; the
    /// credentials were not checked: `454 4.7.0`, try again after this long.
    #[error("too many failed logins: try again in {0} s")]
    Throttled(i64),
}

impl SinkError {
    /// The `reason` label of the intake's refusal counter.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            SinkError::Temporary(_) => "temporary",
            SinkError::Permanent(_) => "refused",
            SinkError::Refused(_) => "unroutable",
            SinkError::TooLargeForAccount(_) => "too_large",
            SinkError::StorageFull => "storage_full",
            SinkError::Throttled(_) => "throttled",
        }
    }
}

/// What the intake needs from the rest of hikyaku.
///
/// `accept` returns only after the message and its envelope are durably
/// committed: the session writes `250` only after it returns `Ok`.
pub trait IntakeSink: Send + Sync + 'static {
    /// Checks a SASL login from `peer`. `Ok(None)` means wrong credentials.
    fn authenticate(
        &self,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> impl Future<Output = Result<Option<Submitter>, SinkError>> + Send;

    /// Whether `peer` may submit without AUTH (e.g. a printer on the LAN).
    /// An error means the list could not be read (e.g. the database is
    /// away): the client hears a temporary refusal, not "authentication
    /// required".
    fn allowlisted(
        &self,
        peer: IpAddr,
    ) -> impl Future<Output = Result<Option<Submitter>, SinkError>> + Send;

    /// A mail transaction opened (MAIL accepted): counted as a message on
    /// its way in until the guard drops, so that a group commit may wait a
    /// moment for it ([`crate::queue::arrivals`]). `None` (the default):
    /// nothing waits for it.
    fn arriving(&self) -> Option<crate::queue::arrivals::Arriving> {
        None
    }

    /// Bytes per piece in which a message is stored while it arrives;
    /// `None` (the default): messages are handed over whole.
    fn piece_size(&self) -> Option<usize> {
        None
    }

    /// Stores piece `seq` (from 0) of a message still arriving under
    /// `upload` (committed, part of no job yet).
    fn store_piece(
        &self,
        upload: &str,
        seq: u32,
        piece: Vec<u8>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = (upload, seq, piece);
        async {
            Err(SinkError::Temporary(
                "messages in pieces are not stored here".into(),
            ))
        }
    }

    /// Drops the pieces of a message that was not accepted (best effort; a
    /// piece left behind is removed at the next start).
    fn discard_upload(&self, upload: &str) -> impl Future<Output = ()> + Send {
        let _ = upload;
        async {}
    }

    /// Durably enqueues a message; returns the queue id for the `250` reply.
    fn accept(
        &self,
        submission: Submission,
    ) -> impl Future<Output = Result<String, SinkError>> + Send;
}

/// One listening socket's settings.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Our name in the greeting and the EHLO reply.
    pub hostname: String,
    /// Server certificate; enables STARTTLS (or implicit TLS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS from the first byte (port 465, RFC 8314) instead of STARTTLS.
    pub implicit_tls: bool,
    /// Refuse AUTH over plaintext (`538 5.7.11`); true except on loopback.
    pub require_tls_for_auth: bool,
    pub limits: Limits,
}

/// Why a session ended abnormally. Protocol errors are not errors here: they
/// are answered on the wire and the session goes on.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    // The I/O errors are part of the messages, not chained sources: said once.
    #[error("connection I/O failed: {0}")]
    Io(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(std::io::Error),
    #[error("implicit TLS listener has no TLS configuration")]
    TlsNotConfigured,
    #[error("client did not read our reply in time")]
    WriteTimeout,
}

impl From<std::io::Error> for IntakeError {
    fn from(e: std::io::Error) -> Self {
        IntakeError::Io(e)
    }
}
