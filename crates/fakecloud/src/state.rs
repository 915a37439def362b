//! Shared state of one fakecloud run: issued grants and tokens, the test
//! knobs (faults, revocations) and what was recorded (requests, inbox).
//!
//! Everything sits behind one `std::sync::Mutex`: the lock is never held
//! across an `.await`, and a test double does not need finer locking.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use serde_json::json;
use tokio::sync::watch;

use crate::Options;

/// Scope an access token needs for Exchange Online SMTP AUTH.
pub(crate) const MS_SMTP_SCOPE: &str = "https://outlook.office.com/SMTP.Send";
/// Scope an access token needs for Gmail SMTP AUTH.
pub(crate) const GOOGLE_MAIL_SCOPE: &str = "https://mail.google.com/";

/// A fault injected into the token endpoints of both providers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HttpFault {
    /// Answer normally.
    #[default]
    None,
    /// Answer with this HTTP status (e.g. 500, 503) and a short body.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Close the connection without any answer.
    Down,
}

/// Stage of an SMTP session, for [`SmtpFault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmtpStage {
    /// The greeting after the connection is accepted.
    Connect,
    /// The reply to `AUTH` (after the SASL exchange).
    Auth,
    /// The reply to `MAIL FROM`.
    Mail,
    /// The reply to each `RCPT TO`.
    Rcpt,
    /// The reply to `DATA` (instead of `354`).
    Data,
    /// The reply after the message's final `<CRLF>.<CRLF>`.
    EndOfData,
}

/// A fault injected into all SMTP listeners.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SmtpFault {
    /// Behave normally.
    #[default]
    None,
    /// Answer `code text` at `stage` instead of the normal reply (and do not
    /// store the message). A multi-line `text` becomes a multi-line reply.
    ReplyAt {
        stage: SmtpStage,
        code: u16,
        text: String,
    },
    /// New connections get no greeting; sessions already past the greeting
    /// get no reply at the end of DATA. The connection stays open.
    Hang,
    /// Like `Hang`, but only at the given stage.
    HangAt(SmtpStage),
    /// After `354`, close the connection as soon as message data arrives.
    CloseMidData,
    /// Answer STARTTLS with `220` and, in the same write, an injected
    /// second reply (a response-injection attack on the client).
    InjectAfterStartTls,
    /// Close every new connection immediately, without a greeting.
    Down,
}

/// Which provider's SMTP behaviour a listener imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmtpFlavor {
    /// Exchange Online (`smtp.office365.com`).
    Exchange,
    /// Gmail (`smtp.gmail.com`).
    Gmail,
}

/// A message accepted by one of the SMTP listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as transmitted, dot-stuffing undone, ending with CRLF.
    pub data: Vec<u8>,
    /// The mailbox of the access token used in AUTH.
    pub auth_user: String,
    pub listener: SmtpFlavor,
    /// Which SMTP connection carried it (numbered from 1 per fakecloud).
    pub connection: u64,
}

/// Counts of SMTP connections, for tests of connection reuse and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SmtpConnections {
    /// Connections accepted so far.
    pub opened: u64,
    /// Connections open now.
    pub open: u64,
    /// Most connections open at the same time.
    pub max_open: u64,
    /// Successful AUTH commands so far.
    pub authentications: u64,
    /// MAIL commands that arrived with the rest of their envelope already
    /// sent behind them (a client pipelining, RFC 2920).
    pub pipelined_envelopes: u64,
}

/// One HTTP request the HTTPS server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// The body parsed as `application/x-www-form-urlencoded` (empty when it
    /// is not a form).
    pub form: Vec<(String, String)>,
}

impl RecordedRequest {
    /// First value of the form field `key`.
    pub fn form_value(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Microsoft,
    Google,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Pending,
    Approved { mailbox: String },
    Declined,
    Redeemed,
}

#[derive(Debug, Clone)]
pub(crate) struct DeviceGrant {
    pub tenant: String,
    pub scope: String,
    pub expires_at: Instant,
    pub status: DeviceStatus,
}

#[derive(Debug, Clone)]
pub(crate) struct GoogleCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: String,
    pub email: String,
    pub expires_at: Instant,
    pub used: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub provider: Provider,
    pub mailbox: String,
    pub scope: String,
    pub expires_at: Instant,
    pub revoked: bool,
    /// The refresh token of the grant this token belongs to, if any.
    pub grant: Option<String>,
    /// App-only (Microsoft client credentials): the client it was issued to;
    /// the mailbox comes from SMTP AUTH and must be granted to the client.
    pub app_client: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshStatus {
    Active,
    /// Replaced by a newer one (Microsoft rotates on every use).
    Rotated,
    Revoked,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshToken {
    pub provider: Provider,
    pub mailbox: String,
    pub scope: String,
    pub client_id: String,
    pub tenant: String,
    pub status: RefreshStatus,
}

/// Why an SMTP AUTH token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SmtpAuthError {
    Invalid,
    Disabled,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub device_grants: HashMap<String, DeviceGrant>,
    /// Normalized user code → device code.
    pub user_codes: HashMap<String, String>,
    pub slow_down_remaining: u32,
    /// Delegated Microsoft permissions (by name, e.g. `Mail.ReadWrite`)
    /// nobody consented to: a device authorization asking for them is
    /// granted without them, as the token response's `scope` then says.
    pub withheld_permissions: Vec<String>,
    pub device_poll_times: Vec<Instant>,
    pub google_codes: HashMap<String, GoogleCode>,
    pub access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    pub refresh_count: u64,
    /// `refresh_token` grants refused with `invalid_grant` (both providers).
    pub refresh_refused: u64,
    /// Per lower-cased mailbox: SMTP sessions authenticated as it and still
    /// open now, and the most at the same time (Exchange's per-mailbox cap).
    pub mailbox_sessions: HashMap<String, (u64, u64)>,
    pub token_fault: HttpFault,
    pub smtp_fault: SmtpFault,
    /// Lower-cased mailboxes for which Exchange refuses SMTP AUTH.
    pub smtp_auth_disabled: HashSet<String>,
    /// EHLO leaves PIPELINING out (a server that does not offer it).
    pub no_pipelining: bool,
    /// Held before each write of SMTP replies: a link's round trip.
    pub smtp_reply_delay: std::time::Duration,
    /// Lower-cased recipients refused at RCPT, and the code they get.
    pub refused_recipients: HashMap<String, u16>,
    /// (mailbox, address) pairs: the mailbox may send as the address
    /// (Exchange's Send As right, Gmail's "Send mail as" alias).
    pub send_as: std::collections::HashSet<(String, String)>,
    pub inbox: Vec<ReceivedMessage>,
    pub requests: Vec<RecordedRequest>,
    pub smtp_connections: SmtpConnections,
    /// App-only grants: apps, service accounts, grants and forced errors.
    pub app: crate::apponly::AppState,
    /// Messages the HTTP sending APIs accepted.
    pub api_inbox: Vec<crate::mailapi::ApiMessage>,
    /// Replies the next API requests get instead of the normal one.
    pub api_faults: std::collections::VecDeque<crate::mailapi::ApiFault>,
    /// Gmail resumable upload sessions: id → mailbox.
    pub api_uploads: HashMap<String, String>,
    /// Graph drafts and their attachment upload sessions.
    pub graph_drafts: crate::graphdraft::DraftState,
    /// Graph `sendMail` waits this long between recording a message and
    /// answering (a window to kill the sender in).
    pub api_reply_delay: Option<std::time::Duration>,
}

pub(crate) struct Shared {
    pub opts: Options,
    pub base_url: String,
    inner: Mutex<Inner>,
    /// Number of messages in the inbox, so tests can wait without polling.
    pub inbox_len: watch::Sender<usize>,
    /// Bumped to make every SMTP session waiting for a command close, as a
    /// server does with idle connections.
    pub idle_kick: watch::Sender<u64>,
}

impl Shared {
    pub fn new(opts: Options, base_url: String) -> Self {
        Self {
            opts,
            base_url,
            inner: Mutex::new(Inner::default()),
            inbox_len: watch::Sender::new(0),
            idle_kick: watch::Sender::new(0),
        }
    }

    /// A panicking handler must not wedge every later test call, so a
    /// poisoned lock is simply taken over.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn access_lifetime(&self) -> Duration {
        Duration::from_secs(self.opts.access_token_lifetime_secs)
    }

    /// Issues an access token (and, when `with_refresh`, a new refresh token)
    /// and returns `(access_token, refresh_token)`.
    pub fn issue_tokens(
        &self,
        provider: Provider,
        mailbox: &str,
        scope: &str,
        client_id: &str,
        tenant: &str,
        refresh: RefreshChoice,
    ) -> (String, Option<String>) {
        let access = match provider {
            Provider::Microsoft => format!("EwB{}", random_token(120)),
            Provider::Google => format!("ya29.a0{}", random_token(120)),
        };
        let refresh_token = match refresh {
            RefreshChoice::None => None,
            RefreshChoice::Keep(rt) => Some(rt),
            RefreshChoice::New => {
                let rt = match provider {
                    Provider::Microsoft => format!("M.C5{}", random_token(200)),
                    Provider::Google => format!("1//0{}", random_token(100)),
                };
                Some(rt)
            }
        };
        let mut inner = self.lock();
        if let Some(rt) = &refresh_token {
            inner
                .refresh_tokens
                .entry(rt.clone())
                .or_insert_with(|| RefreshToken {
                    provider,
                    mailbox: mailbox.to_owned(),
                    scope: scope.to_owned(),
                    client_id: client_id.to_owned(),
                    tenant: tenant.to_owned(),
                    status: RefreshStatus::Active,
                });
        }
        inner.access_tokens.insert(
            access.clone(),
            AccessToken {
                provider,
                mailbox: mailbox.to_owned(),
                scope: scope.to_owned(),
                expires_at: Instant::now() + self.access_lifetime(),
                revoked: false,
                grant: refresh_token.clone(),
                app_client: None,
            },
        );
        (access, refresh_token)
    }

    /// Checks a bearer token presented in SMTP AUTH and returns its mailbox.
    pub fn check_smtp_token(
        &self,
        provider: Provider,
        user: &str,
        token: &str,
    ) -> Result<String, SmtpAuthError> {
        let inner = self.lock();
        let at = inner
            .access_tokens
            .get(token)
            .ok_or(SmtpAuthError::Invalid)?;
        let needed = match (provider, &at.app_client) {
            (Provider::Microsoft, Some(_)) => crate::apponly::MS_APP_SCOPE,
            (Provider::Microsoft, None) => MS_SMTP_SCOPE,
            (Provider::Google, _) => GOOGLE_MAIL_SCOPE,
        };
        // An app token names no mailbox: Exchange checks that the app's
        // service principal was granted the one in `user=`.
        let mailbox_ok = match &at.app_client {
            Some(client) => inner
                .app
                .grants
                .contains(&(client.clone(), user.to_ascii_lowercase())),
            None => at.mailbox.eq_ignore_ascii_case(user),
        };
        let ok = at.provider == provider
            && !at.revoked
            && Instant::now() < at.expires_at
            && mailbox_ok
            && at.scope.split_whitespace().any(|s| s == needed);
        if !ok {
            return Err(SmtpAuthError::Invalid);
        }
        let mailbox = if at.app_client.is_some() {
            user.to_owned()
        } else {
            at.mailbox.clone()
        };
        if provider == Provider::Microsoft
            && inner
                .smtp_auth_disabled
                .contains(&mailbox.to_ascii_lowercase())
        {
            return Err(SmtpAuthError::Disabled);
        }
        Ok(mailbox)
    }

    /// Kills a refresh token and every access token issued under it.
    pub fn revoke_grant(inner: &mut Inner, refresh_token: &str) {
        if let Some(rt) = inner.refresh_tokens.get_mut(refresh_token) {
            rt.status = RefreshStatus::Revoked;
        }
        for at in inner.access_tokens.values_mut() {
            if at.grant.as_deref() == Some(refresh_token) {
                at.revoked = true;
            }
        }
    }

    pub fn store_message(&self, msg: ReceivedMessage) {
        let len = {
            let mut inner = self.lock();
            inner.inbox.push(msg);
            inner.inbox.len()
        };
        self.inbox_len.send_replace(len);
    }
}

/// What to do about the refresh token when issuing tokens.
pub(crate) enum RefreshChoice {
    None,
    New,
    /// Google does not rotate: the response carries no refresh token, but
    /// the access token is tied to this existing grant.
    Keep(String),
}

/// Random `[A-Za-z0-9]` string; opaque tokens need nothing more.
pub(crate) fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Seconds since the Unix epoch, for JWT claims.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Builds an id_token. It is not really signed: hikyaku reads it over
/// verified TLS and never checks the signature (OIDC Core §3.1.3.7).
pub(crate) fn make_id_token(claims: serde_json::Value) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "fakecloud"});
    let enc = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        enc(&header),
        enc(&claims),
        URL_SAFE_NO_PAD.encode(b"fakecloud-does-not-sign-id-tokens")
    )
}

/// A stable GUID-shaped id derived from a name (tenant or user).
pub(crate) fn guid_for(name: &str) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(name.to_ascii_lowercase().as_bytes());
    let hex: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses an `application/x-www-form-urlencoded` body.
pub(crate) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// First value of `key` in a parsed form.
pub(crate) fn form_get<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
