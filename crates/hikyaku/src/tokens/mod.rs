//! tokens: every OAuth 2.0 exchange of hikyaku (design.md, protocols.md §1, §3, §5).
//!
//! * [`microsoft`]: the device authorization grant, with a poller that survives
//!   restarts (the device code and its expiry are persisted, sealed);
//! * [`google`]: the authorization code grant with PKCE, the pasted code or
//!   URL, and a one-shot loopback listener that catches the redirect itself;
//! * [`refresh`]: access tokens on demand with one refresh at a time per
//!   account, rotation stored atomically, the background keep-alive and the
//!   reaction to a wall-clock jump;
//! * [`status`]: the token status and advice for provider error codes;
//! * [`endpoint`]: validation of the Microsoft endpoint field;
//! * [`apponly`] and [`appkeys`]: app-only tokens (client credentials with a
//!   secret or certificate, Google service accounts), their advice and the
//!   expiry warning of their credentials.
//!
//! Secrets (refresh and access tokens, device codes, PKCE verifiers, client
//! secrets) are kept sealed in the store and never logged: tracing fields are
//! account ids and statuses only.

pub mod appkeys;
pub mod apponly;
pub mod endpoint;
mod google;
mod idtoken;
mod microsoft;
mod paste;
mod refresh;
pub mod status;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::GoogleConfig;
use crate::connection::{ConnectionReport, ConnectionStatus};
use crate::i18n::Reason;
use crate::provider::Provider;
use crate::proxy::SharedProxy;
use crate::secrets::{MasterKey, SecretsError};
use crate::store::accounts::Account;
use crate::store::{Store, StoreError};
use crate::tls::TlsPolicy;

pub use endpoint::{EndpointCheck, EndpointError, validate_microsoft_endpoint};
pub use google::GoogleAuthorization;
pub use idtoken::mailbox_from_id_token;
pub use microsoft::DeviceCode;
pub use paste::{PasteProblem, PastedCode, parse_pasted_code};
pub use status::TokenStatus;

/// An access token ready for XOAUTH2, and the mailbox it belongs to.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub mailbox: String,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[redacted]")
            .field("mailbox", &self.mailbox)
            .finish()
    }
}

/// Errors of the token service. The texts are shown to administrators: each
/// says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("account {0} does not exist")]
    NoAccount(i64),
    /// A setting is missing or unusable (Client ID, secret, endpoint, switched off).
    #[error("{0}")]
    NotConfigured(Setup),
    #[error(
        "the account is not authorized (Token Status: Not registered): do the authorization first"
    )]
    NotAuthorized,
    /// The provider refused an app-only credential; the reason says what to do.
    #[error("{0}")]
    AppRefused(Reason),
    /// The refresh token no longer works; the stored token reason says why.
    #[error("{0}")]
    ReauthorizationRequired(Reason),
    /// The token endpoint could not be reached; retrying later may work.
    #[error("{0}")]
    Temporary(String),
    /// Another answer of the provider, described.
    #[error("{0}")]
    Provider(String),
    #[error(
        "the authorization code was not accepted: it is wrong, was already used, or has expired (codes are valid for a few minutes and only once) — get a new URL and authorize again"
    )]
    CodeRejected,
    #[error(
        "the pasted address belongs to another authorization (its state does not match) — paste the address from the latest URL, or get a new URL"
    )]
    StateMismatch,
    #[error(
        "Google refused the redirect address (redirect_uri_mismatch): the OAuth client must be of application type \"Desktop app\" (Google Cloud → APIs & Services → Credentials → Create credentials → OAuth client ID → Desktop app) — enter that client's ID and secret"
    )]
    RedirectUriMismatch,
    #[error(
        "Google does not accept the Client ID or the Client Secret (invalid_client) — copy both again from Google Cloud → APIs & Services → Credentials and save them in Basic Settings"
    )]
    InvalidClient,
    #[error("{}", status::access_denied())]
    AccessDenied,
    #[error(
        "no authorization is pending (it completed, expired, or was replaced) — check Token Status, or start again"
    )]
    NoPendingAuthorization,
    /// The pasted text is not a code or a redirect address.
    #[error("{0}")]
    Pasted(PasteProblem),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

/// A setting that is missing or unusable; each text says what to set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Setup {
    #[error("this account is not a {} account", .0.as_str())]
    WrongProvider(Provider),
    #[error("Use OAuth 2.0 (Microsoft) is off: switch it on in Basic Settings first")]
    MicrosoftOff,
    #[error("Use OAuth 2.0 (Google) is off: switch it on in Basic Settings first")]
    GoogleOff,
    #[error("Microsoft Entra ID Authorization Server Endpoint: {0}")]
    Endpoint(EndpointError),
    #[error(
        "enter the Client ID in Basic Settings (Entra admin center → App registrations → your app → Application (client) ID)"
    )]
    MicrosoftClientId,
    #[error("enter the Client ID in Basic Settings (Google Cloud → APIs & Services → Credentials)")]
    GoogleClientId,
    #[error(
        "enter the Client Secret in Basic Settings (Google Cloud → APIs & Services → Credentials)"
    )]
    GoogleClientSecret,
    #[error(
        "the app-only credentials are incomplete: set the secret, certificate or service account key, and the mailbox"
    )]
    AppCredentials,
    /// The stored key cannot be used (the detail says why).
    #[error("{0}")]
    AppKey(String),
    /// An address built from the settings is not a URL (the detail says why).
    #[error("{0}")]
    BadUrl(String),
    /// The HTTPS client could not be built (certificates, proxy).
    #[error("{0}")]
    Transport(String),
}

impl TokensError {
    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_temporary(&self) -> bool {
        match self {
            TokensError::Temporary(_) => true,
            TokensError::Store(e) => e.is_temporary(),
            _ => false,
        }
    }
}

/// The access token must stay valid at least this long to be handed out.
pub(crate) const MIN_VALIDITY: Duration = Duration::from_secs(60);

/// A pending authorization, sealed in the account's `authorization` column.
#[derive(Serialize, Deserialize)]
#[serde(tag = "flow", rename_all = "snake_case")]
pub(crate) enum Pending {
    Device(microsoft::PendingDevice),
    Google(google::PendingGoogle),
}

/// An access token in memory, with a monotonic deadline (a wall-clock jump
/// can never make an expired token look valid).
#[derive(Clone)]
pub(crate) struct Cached {
    pub token: String,
    pub mailbox: String,
    pub deadline: Instant,
}

/// In-memory state of one account.
#[derive(Default)]
pub(crate) struct AccountState {
    /// One refresh (or code exchange) at a time.
    pub lock: Arc<tokio::sync::Mutex<()>>,
    pub cached: Option<Cached>,
    /// Bumped by every stored token set, so that a waiter can tell a refresh happened meanwhile.
    pub generation: u64,
    /// The running poller or loopback listener: (task id, handle).
    pub task: Option<(u64, tokio::task::AbortHandle)>,
    /// Keep-alive backoff after a temporary failure: (next try, current delay).
    pub retry: Option<(Instant, Duration)>,
}

pub(crate) struct Inner {
    pub store: Store,
    pub key: Arc<MasterKey>,
    pub clock: SharedClock,
    pub google: GoogleConfig,
    pub extra_cas: Arc<RwLock<Vec<CertificateDer<'static>>>>,
    /// The extra CAs that also anchor the Google account's connections:
    /// those an Administrator added (a NetworkAdmin's must not decide whom
    /// Google's credentials are sent to).
    pub google_cas: Arc<RwLock<Vec<CertificateDer<'static>>>>,
    /// The outbound proxy (Management → Network), read at each request.
    pub proxy: SharedProxy,
    pub cancel: CancellationToken,
    pub accounts: Mutex<HashMap<i64, AccountState>>,
    pub next_task: AtomicU64,
    pub keepalive_started: AtomicBool,
}

/// Cancels background tasks when the last [`TokenService`] clone is dropped.
struct Lifetime(CancellationToken);

impl Drop for Lifetime {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The token service: cheap to clone; background tasks stop when the last
/// clone is dropped (or on [`TokenService::shutdown`]).
#[derive(Clone)]
pub struct TokenService {
    inner: Arc<Inner>,
    _lifetime: Arc<Lifetime>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService").finish_non_exhaustive()
    }
}

impl TokenService {
    /// A token service without an outbound proxy (environment proxies apply).
    pub fn new(
        store: Store,
        key: Arc<MasterKey>,
        clock: SharedClock,
        google: GoogleConfig,
        extra_cas: Arc<RwLock<Vec<CertificateDer<'static>>>>,
    ) -> Self {
        Self::with_proxy(store, key, clock, google, extra_cas, SharedProxy::default())
    }

    /// A token service whose HTTPS calls go through the shared `proxy`
    /// setting, with one trust set for every account (tests).
    pub fn with_proxy(
        store: Store,
        key: Arc<MasterKey>,
        clock: SharedClock,
        google: GoogleConfig,
        extra_cas: Arc<RwLock<Vec<CertificateDer<'static>>>>,
        proxy: SharedProxy,
    ) -> Self {
        let google_cas = extra_cas.clone();
        Self::with_trust(store, key, clock, google, extra_cas, google_cas, proxy)
    }

    /// A token service whose Google account trusts only `google_cas` of the
    /// extra CAs, and every other account all of `extra_cas`.
    pub fn with_trust(
        store: Store,
        key: Arc<MasterKey>,
        clock: SharedClock,
        google: GoogleConfig,
        extra_cas: Arc<RwLock<Vec<CertificateDer<'static>>>>,
        google_cas: Arc<RwLock<Vec<CertificateDer<'static>>>>,
        proxy: SharedProxy,
    ) -> Self {
        let cancel = CancellationToken::new();
        TokenService {
            inner: Arc::new(Inner {
                store,
                key,
                clock,
                google,
                extra_cas,
                google_cas,
                proxy,
                cancel: cancel.clone(),
                accounts: Mutex::new(HashMap::new()),
                next_task: AtomicU64::new(1),
                keepalive_started: AtomicBool::new(false),
            }),
            _lifetime: Arc::new(Lifetime(cancel)),
        }
    }

    /// Stops pollers, listeners and the keep-alive loop (also happens when the
    /// last clone is dropped). Persisted authorizations resume on the next start.
    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
    }

    /// At start: resumes the pollers of persisted, unexpired device
    /// authorizations (and Google loopback listeners), and starts the keep-alive loop.
    pub fn resume(&self) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.resume_pending().await {
                tracing::warn!(error = %e, "resuming pending authorizations failed");
            }
        });
        if !self.inner.keepalive_started.swap(true, Ordering::SeqCst) {
            let inner = self.inner.clone();
            tokio::spawn(async move { inner.keep_alive_loop().await });
        }
    }

    /// Checks the connection to the provider's discovery document and stores
    /// the result (Server Connection Status). For Microsoft, a successful
    /// check with no authorization pending or active starts the device
    /// authorization, so that the code appears after Refresh (seed steps 9–11).
    pub async fn check_connection(&self, account_id: i64) -> Result<ConnectionReport, TokensError> {
        let a = self.inner.account(account_id).await?;
        // Google's endpoints come from the configuration file; the
        // Microsoft endpoint is a setting, so any host may be typed there.
        let mut known_host = true;
        let url = match a.provider {
            Provider::Microsoft => {
                let raw = a
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| a.cloud.microsoft_endpoint("common"));
                match validate_microsoft_endpoint(&raw) {
                    Ok(c) => {
                        known_host = c.warning.is_none();
                        endpoint::microsoft_discovery_url(&c.normalized)
                    }
                    Err(reason) => {
                        let mut report = ConnectionReport::not_checked(self.inner.clock.now());
                        report.status = ConnectionStatus::Failed;
                        report.reason = Some(Reason::text(reason));
                        self.inner.save_report(account_id, &report).await?;
                        return Ok(report);
                    }
                }
            }
            Provider::Google => self.inner.google.discovery_url.clone(),
        };
        let policy = self.inner.policy(&a);
        let clock = self.inner.clock.clone();
        let proxy = crate::proxy::current(&self.inner.proxy);
        let mut report =
            crate::connection::check(&url, &policy, proxy.as_ref(), move || clock.now()).await;
        if !known_host {
            report = report.limited(&url);
        }
        if a.provider == Provider::Google {
            report = report.with_google_trust_advice();
        }
        self.inner.save_report(account_id, &report).await?;
        tracing::info!(account = account_id, status = ?report.status, "connection checked");
        if a.provider == Provider::Microsoft
            && a.enabled
            && !a.credential_kind.is_app_only()
            && report.status == ConnectionStatus::Successful
            // Only the first time (the seed's step 9): after an Error (a
            // declined or expired code), Refresh re-reads the status and
            // keeps the reason in view; "Get a new code" starts again.
            && a.token_status == TokenStatus::NotRegistered
            && self.pending_device_code(account_id).await?.is_none()
            && let Err(e) = self.start_device_authorization(account_id).await
        {
            tracing::warn!(
                account = account_id,
                temporary = e.is_temporary(),
                "starting the device authorization failed"
            );
        }
        Ok(report)
    }
}

impl TokenService {
    /// The TLS rules for connections of account `a` (its certificate
    /// settings and the extra CAs that apply to its provider).
    pub fn tls_policy(&self, a: &Account) -> TlsPolicy {
        self.inner.policy(a)
    }

    /// The outbound proxy (Management → Network) as configured now; the
    /// HTTP transports go through it as the token requests do.
    pub fn proxy_settings(&self) -> Option<crate::proxy::ProxySettings> {
        crate::proxy::current(&self.inner.proxy)
    }
}

impl Inner {
    /// The account, with `NotFound` turned into [`TokensError::NoAccount`].
    pub async fn account(&self, id: i64) -> Result<Account, TokensError> {
        match self.store.account(id).await {
            Ok(a) => Ok(a),
            Err(StoreError::NotFound) => Err(TokensError::NoAccount(id)),
            Err(e) => Err(e.into()),
        }
    }

    pub fn policy(&self, a: &Account) -> TlsPolicy {
        let cas = match a.provider {
            crate::provider::Provider::Google => &self.google_cas,
            crate::provider::Provider::Microsoft => &self.extra_cas,
        };
        TlsPolicy {
            verify: a.verify_cert,
            verify_cn: a.verify_cert && a.verify_cn,
            extra_cas: cas.read().map(|v| v.clone()).unwrap_or_default(),
        }
    }

    pub fn transport(&self, a: &Account) -> Result<wire::Transport, TokensError> {
        wire::Transport::new(&self.policy(a), crate::proxy::current(&self.proxy))
            .map_err(|e| TokensError::NotConfigured(Setup::Transport(e)))
    }

    pub fn seal(&self, id: i64, field: &str, value: &str) -> Result<Vec<u8>, TokensError> {
        Ok(self.key.seal_str(&aad(id, field), value)?)
    }

    pub fn open(&self, id: i64, field: &str, blob: &[u8]) -> Result<String, TokensError> {
        Ok(self.key.open_string(&aad(id, field), blob)?)
    }

    /// The pending authorization of an account, if any (unreadable ones count as none).
    pub async fn pending(&self, id: i64) -> Result<Option<Pending>, TokensError> {
        let sealed = self.store.sealed_secrets(id).await?;
        let Some(blob) = sealed.authorization else {
            return Ok(None);
        };
        let json = match self.open(id, "authorization", &blob) {
            Ok(j) => j,
            Err(_) => {
                tracing::warn!(
                    account = id,
                    "a pending authorization cannot be opened; ignoring it"
                );
                return Ok(None);
            }
        };
        Ok(serde_json::from_str(&json).ok())
    }

    pub async fn save_pending(&self, id: i64, pending: &Pending) -> Result<(), TokensError> {
        let json =
            serde_json::to_string(pending).map_err(|e| TokensError::Provider(e.to_string()))?;
        let blob = self.seal(id, "authorization", &json)?;
        self.store
            .set_authorization(id, Some(&blob), TokenStatus::Authorizing.as_str(), None)
            .await?;
        Ok(())
    }

    pub async fn save_report(&self, id: i64, r: &ConnectionReport) -> Result<(), TokensError> {
        let status = r.status.as_str();
        self.store
            .set_connection_status(
                id,
                status,
                r.reason.as_ref(),
                r.warning.as_ref(),
                r.checked_at.unix_timestamp(),
                r.clock_skew_secs,
            )
            .await?;
        Ok(())
    }

    /// Runs `f` on the account's in-memory state.
    pub fn with_state<T>(&self, id: i64, f: impl FnOnce(&mut AccountState) -> T) -> T {
        let mut map = match self.accounts.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(map.entry(id).or_default())
    }

    pub fn account_lock(&self, id: i64) -> Arc<tokio::sync::Mutex<()>> {
        self.with_state(id, |s| s.lock.clone())
    }

    /// Replaces the account's background task (poller or listener), aborting the old one.
    pub fn set_task(&self, id: i64, task_id: u64, handle: tokio::task::AbortHandle) {
        let old = self.with_state(id, |s| s.task.replace((task_id, handle)));
        if let Some((_, h)) = old {
            h.abort();
        }
    }

    /// Aborts the account's background task, if any.
    pub fn stop_task(&self, id: i64) {
        if let Some((_, h)) = self.with_state(id, |s| s.task.take()) {
            h.abort();
        }
    }

    /// Whether `task_id` is still the account's current task.
    pub fn is_current(&self, id: i64, task_id: u64) -> bool {
        self.with_state(id, |s| s.task.as_ref().is_some_and(|(t, _)| *t == task_id))
    }

    /// Forgets the task slot when `task_id` finishes by itself.
    pub fn task_done(&self, id: i64, task_id: u64) {
        self.with_state(id, |s| {
            if s.task.as_ref().is_some_and(|(t, _)| *t == task_id) {
                s.task = None;
            }
        });
    }

    pub fn new_task_id(&self) -> u64 {
        self.next_task.fetch_add(1, Ordering::Relaxed)
    }

    async fn resume_pending(self: &Arc<Self>) -> Result<(), TokensError> {
        for a in self.store.accounts().await? {
            if !a.has_authorization {
                continue;
            }
            match self.pending(a.id).await? {
                Some(Pending::Device(p)) => self.resume_device(&a, p).await?,
                Some(Pending::Google(p)) => self.resume_google(&a, p).await,
                None => {}
            }
        }
        Ok(())
    }
}

pub(crate) fn aad(id: i64, field: &str) -> String {
    format!("account:{id}:{field}")
}

/// Sleeps `d`, or returns `false` at once when the service shuts down.
pub(crate) async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Minimal HTML escaping for the loopback page.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_debug_is_redacted() {
        let t = AccessToken {
            token: "ya29.secret".into(),
            mailbox: "a@b.c".into(),
        };
        let d = format!("{t:?}");
        assert!(!d.contains("ya29.secret") && d.contains("a@b.c"), "{d}");
    }

    #[test]
    fn temporary_errors() {
        assert!(TokensError::Temporary("x".into()).is_temporary());
        assert!(!TokensError::CodeRejected.is_temporary());
        assert!(TokensError::Store(StoreError::Full).is_temporary());
        assert!(!TokensError::ReauthorizationRequired(Reason::text("r")).is_temporary());
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
