//! Access tokens on demand: a cached one while it stays valid for more than a
//! minute (monotonic deadline), else one refresh per account at a time however
//! many callers wait. Microsoft rotates the refresh token: the new one is
//! stored in the same write as the access token, before the access token is
//! handed out. Temporary failures keep the status Active with a warning;
//! `invalid_grant` and other refusals set Error "re-authorization required"
//! with advice. A keep-alive loop refreshes active accounts before their
//! access token expires and at least weekly (Microsoft refresh tokens die
//! after 90 idle days).

use std::sync::Arc;
use std::time::Duration;

use oauth2::{AuthType, ClientId, ClientSecret, RefreshToken, Scope, TokenResponse as _, TokenUrl};

use super::apponly::app_configured;
use super::microsoft::microsoft_settings;
use super::status::{self, TokenStatus};
use super::wire::{CallError, OClient, TokenResp, Transport};
use super::{
    AccessToken, Cached, Inner, MIN_VALIDITY, Setup, TokenService, TokensError, sleep_or_cancel,
};
use crate::provider::Provider;
use crate::store::accounts::{Account, TokenGrant};

/// Whether the account can get a new access token without a person: a
/// refresh token, or complete app-only credentials.
fn can_renew(a: &Account) -> bool {
    if a.credential_kind.is_app_only() {
        app_configured(a)
    } else {
        a.has_refresh_token
    }
}

/// Keep-alive: how often the loop looks at the accounts.
const KEEPALIVE_TICK: Duration = Duration::from_secs(60);
/// Keep-alive: refresh when the access token has less than this left.
const KEEPALIVE_MARGIN: Duration = Duration::from_secs(300);
/// Keep-alive: refresh at least this often even when idle.
const KEEPALIVE_MAX_AGE_SECS: i64 = 7 * 86_400;
/// Keep-alive backoff after a temporary failure.
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(3600);
/// Inside one refresh: pauses before the retries of a temporary failure.
const IN_CALL_RETRIES: [Duration; 1] = [Duration::from_millis(500)];
/// Lifetime assumed when a token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

impl TokenService {
    /// A valid access token (valid for more than 60 s) and its mailbox.
    pub async fn access_token(&self, account_id: i64) -> Result<AccessToken, TokensError> {
        let inner = &self.inner;
        // The store is authoritative: settings reset, switched off or in Error
        // means no token, whatever is cached.
        inner.usable_account(account_id).await?;
        if let Some(t) = inner.cached_valid(account_id) {
            return Ok(t);
        }
        let lock = inner.account_lock(account_id);
        let _guard = lock.lock().await;
        if let Some(t) = inner.cached_valid(account_id) {
            return Ok(t);
        }
        // Another caller may have refreshed (or failed) while we waited.
        let a = inner.usable_account(account_id).await?;
        if let Some(t) = inner.stored_valid(&a).await? {
            return Ok(t);
        }
        // App-only tokens do not rotate: each instance gets its own.
        if inner.store.postgres().is_some() && !a.credential_kind.is_app_only() {
            return inner.refresh_shared(account_id, false, None).await;
        }
        inner.refresh_locked(&a).await
    }

    /// Refreshes now, whatever the cache says (after the upstream rejected the
    /// token, or from the Refresh button/API). Callers that waited while
    /// another refresh completed do not refresh again.
    pub async fn force_refresh(&self, account_id: i64) -> Result<(), TokensError> {
        self.inner.force_refresh(account_id).await
    }

    /// After the upstream refused the access token `refused`: refreshes
    /// unless the token was replaced meanwhile — by another task's refresh,
    /// or on a shared store by another instance's — so that many deliveries
    /// refused the same old token cause one refresh, not one each.
    pub async fn refresh_refused(&self, account_id: i64, refused: &str) -> Result<(), TokensError> {
        self.inner.force_refresh_of(account_id, Some(refused)).await
    }

    /// Switches OAuth off for the account: Google's grant is revoked (best
    /// effort), then every token and pending authorization is forgotten.
    pub async fn disable(&self, account_id: i64) -> Result<(), TokensError> {
        let inner = &self.inner;
        inner.stop_task(account_id);
        let lock = inner.account_lock(account_id);
        let _guard = lock.lock().await;
        inner.with_state(account_id, |s| {
            s.cached = None;
            s.retry = None;
        });
        let a = inner.account(account_id).await?;
        if a.provider == Provider::Google && a.has_refresh_token {
            inner.revoke_google(&a).await;
        }
        inner.store.clear_tokens(account_id).await?;
        tracing::info!(
            account = account_id,
            status = "not_registered",
            "tokens cleared"
        );
        Ok(())
    }

    /// After a wall-clock jump: refresh every active account now. Only a
    /// permanent failure turns the status to Error (re-authorization required).
    pub async fn on_clock_jump(&self) {
        let accounts = match self.inner.store.accounts().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "clock jump: cannot list accounts");
                return;
            }
        };
        for a in accounts {
            if can_renew(&a) && a.token_status == TokenStatus::Active {
                match self.inner.force_refresh(a.id).await {
                    Ok(()) => tracing::info!(account = a.id, "clock jump: tokens refreshed"),
                    Err(e) => tracing::warn!(
                        account = a.id,
                        temporary = e.is_temporary(),
                        "clock jump: refresh failed"
                    ),
                }
            }
        }
    }

    /// One pass of the keep-alive loop: refreshes the active accounts whose
    /// access token nears expiry or that were not refreshed for 7 days.
    pub async fn keep_alive_once(&self) {
        self.inner.keep_alive_once().await;
    }
}

impl Inner {
    /// The account if it has tokens that may be used; clears the cache otherwise.
    async fn usable_account(&self, id: i64) -> Result<Account, TokensError> {
        let a = self.account(id).await?;
        let refused = if !can_renew(&a) {
            Some(TokensError::NotAuthorized)
        } else if a.credential_kind.is_app_only() {
            // Nothing is lost by asking again: an app-only account in
            // Error gets a new token as soon as its credentials work.
            None
        } else if a.token_status == TokenStatus::Error {
            Some(TokensError::ReauthorizationRequired(
                a.token_reason
                    .clone()
                    .unwrap_or_else(status::reauthorization_required),
            ))
        } else {
            None
        };
        match refused {
            Some(e) => {
                self.with_state(id, |s| s.cached = None);
                Err(e)
            }
            None => Ok(a),
        }
    }

    pub(crate) fn cached_valid(&self, id: i64) -> Option<AccessToken> {
        let now = self.clock.monotonic();
        self.with_state(id, |s| {
            s.cached
                .as_ref()
                .filter(|c| c.deadline > now + MIN_VALIDITY)
                .map(|c| AccessToken {
                    token: c.token.clone(),
                    mailbox: c.mailbox.clone(),
                })
        })
    }

    /// After a restart: the stored access token if it stays valid long enough.
    async fn stored_valid(&self, a: &Account) -> Result<Option<AccessToken>, TokensError> {
        let Some(expires_at) = a.access_expires_at else {
            return Ok(None);
        };
        let left = expires_at.saturating_sub(self.clock.unix());
        let Ok(left) = u64::try_from(left) else {
            return Ok(None);
        };
        let left = Duration::from_secs(left);
        if left <= MIN_VALIDITY {
            return Ok(None);
        }
        let sealed = self.store.sealed_secrets(a.id).await?;
        let Some(blob) = sealed.access_token else {
            return Ok(None);
        };
        let Ok(token) = self.open(a.id, "access_token", &blob) else {
            return Ok(None);
        };
        let mailbox = a.mailbox.clone().unwrap_or_default();
        let deadline = self.clock.monotonic() + left;
        self.with_state(a.id, |s| {
            s.cached = Some(Cached {
                token: token.clone(),
                mailbox: mailbox.clone(),
                deadline,
            });
        });
        Ok(Some(AccessToken { token, mailbox }))
    }

    pub(crate) async fn force_refresh(&self, id: i64) -> Result<(), TokensError> {
        self.force_refresh_of(id, None).await
    }

    /// `refused`: the token the upstream refused, if that is why.
    async fn force_refresh_of(&self, id: i64, refused: Option<&str>) -> Result<(), TokensError> {
        let seen = self.with_state(id, |s| s.generation);
        let lock = self.account_lock(id);
        let _guard = lock.lock().await;
        if self.with_state(id, |s| s.generation) != seen {
            return Ok(());
        }
        if let Some(refused) = refused
            && self.cached_valid(id).is_some_and(|t| t.token != refused)
        {
            return Ok(());
        }
        let a = self.account(id).await?;
        if !can_renew(&a) {
            return Err(TokensError::NotAuthorized);
        }
        if self.store.postgres().is_some() && !a.credential_kind.is_app_only() {
            return self.refresh_shared(id, true, refused).await.map(|_| ());
        }
        self.refresh_locked(&a).await.map(|_| ())
    }

    /// A refresh on a store shared by several instances (protocols.md §13):
    /// under the account's cluster-wide refresh lock, the stored tokens are
    /// read again first, and a token another instance stored while this one
    /// waited is taken instead of refreshing again — a rotating refresh
    /// token is redeemed once, by one instance. `force` (the upstream
    /// refused the token in use, or a refresh was asked for): another
    /// instance's token counts only if it differs from the refused one (else
    /// the one this instance was using). Called with the
    /// account's local lock held, so one task per instance waits here.
    async fn refresh_shared(
        &self,
        id: i64,
        force: bool,
        refused: Option<&str>,
    ) -> Result<AccessToken, TokensError> {
        let Some(pg) = self.store.postgres() else {
            let a = self.account(id).await?;
            return self.refresh_locked(&a).await;
        };
        let mine = match refused {
            Some(t) => Some(t.to_owned()),
            None => self.with_state(id, |s| s.cached.as_ref().map(|c| c.token.clone())),
        };
        pg.single_refresh(id, async || {
            // What the last holder of the lock stored, not a cached read.
            self.store.forget_cached_accounts();
            let a = if force {
                let a = self.account(id).await?;
                if !can_renew(&a) {
                    return Err(TokensError::NotAuthorized);
                }
                a
            } else {
                self.usable_account(id).await?
            };
            if let Some(t) = self.stored_valid(&a).await?
                && (!force || mine.as_deref().is_some_and(|m| m != t.token))
            {
                // Local waiters of a forced refresh see it as done.
                self.with_state(id, |s| s.generation += 1);
                tracing::info!(
                    account = id,
                    "access token taken from another instance's refresh"
                );
                return Ok(t);
            }
            self.refresh_locked(&a).await
        })
        .await?
    }

    /// Refreshes with the account lock held.
    pub(crate) async fn refresh_locked(&self, a: &Account) -> Result<AccessToken, TokensError> {
        if a.credential_kind.is_app_only() {
            return self.app_token_locked(a).await;
        }
        let id = a.id;
        let sealed = self.store.sealed_secrets(id).await?;
        let Some(blob) = sealed.refresh_token else {
            return Err(TokensError::NotAuthorized);
        };
        let refresh = self.open(id, "refresh_token", &blob)?;
        let transport = self.transport(a)?;
        let mut attempt = 0;
        let outcome = loop {
            let outcome = self
                .refresh_request(a, &transport, &refresh, sealed.client_secret.as_deref())
                .await;
            match (&outcome, IN_CALL_RETRIES.get(attempt)) {
                (Err(RefreshFailure::Call(CallError::Temporary(_))), Some(pause)) => {
                    attempt += 1;
                    if !sleep_or_cancel(&self.cancel, *pause).await {
                        break outcome;
                    }
                }
                _ => break outcome,
            }
        };
        crate::metrics::token_refresh(id, outcome.is_ok());
        match outcome {
            Ok(t) => {
                let mailbox = t
                    .extra_fields()
                    .id_token
                    .as_deref()
                    .and_then(super::mailbox_from_id_token);
                let rotated = t.refresh_token().map(|r| r.secret().as_str());
                self.store_token_set(
                    a,
                    t.access_token().secret(),
                    t.expires_in(),
                    rotated,
                    mailbox,
                    false,
                )
                .await?;
                tracing::info!(account = id, status = "active", "access token refreshed");
                self.cached_valid(id).ok_or_else(|| {
                    TokensError::Provider(
                        "the provider issued an access token that expires within a minute".into(),
                    )
                })
            }
            Err(RefreshFailure::Setup(e)) => Err(e),
            Err(RefreshFailure::Call(CallError::Temporary(detail))) => {
                let status = a.token_status;
                if matches!(status, TokenStatus::Active | TokenStatus::Authorizing) {
                    self.store
                        .set_token_status(
                            id,
                            status.as_str(),
                            a.token_reason.as_ref(),
                            Some(&status::endpoint_unreachable()),
                        )
                        .await?;
                }
                tracing::warn!(account = id, "token endpoint unreachable");
                Err(TokensError::Temporary(format!(
                    "{} ({detail})",
                    status::endpoint_unreachable()
                )))
            }
            Err(RefreshFailure::Call(CallError::Oauth { error, description })) => {
                let reason = status::refresh_failure_reason(
                    a.provider,
                    &error,
                    description.as_deref(),
                    a.authorized_at,
                    self.clock.unix(),
                );
                self.with_state(id, |s| s.cached = None);
                self.store
                    .set_token_status(id, TokenStatus::Error.as_str(), Some(&reason), None)
                    .await?;
                tracing::warn!(
                    account = id,
                    status = "error",
                    "refresh refused by the provider"
                );
                Err(TokensError::ReauthorizationRequired(reason))
            }
        }
    }

    async fn refresh_request(
        &self,
        a: &Account,
        transport: &Transport,
        refresh: &str,
        sealed_secret: Option<&[u8]>,
    ) -> Result<TokenResp, RefreshFailure> {
        let refresh = RefreshToken::new(refresh.to_string());
        let result = match a.provider {
            Provider::Microsoft => {
                let (endpoint, client_id) = microsoft_settings(a).map_err(RefreshFailure::Setup)?;
                let token_url = TokenUrl::new(format!("{endpoint}/token")).map_err(|e| {
                    RefreshFailure::Setup(TokensError::NotConfigured(Setup::BadUrl(format!(
                        "invalid token URL: {e}"
                    ))))
                })?;
                let client: OClient =
                    OClient::new(ClientId::new(client_id)).set_auth_type(AuthType::RequestBody);
                let client = client.set_token_uri(token_url);
                client
                    .exchange_refresh_token(&refresh)
                    .add_scopes(
                        crate::provider::microsoft_scopes(&a.refresh_scope(), true)
                            .into_iter()
                            .map(Scope::new),
                    )
                    .request_async(transport)
                    .await
            }
            Provider::Google => {
                let (client_id, secret) = self
                    .google_credentials(a, sealed_secret)
                    .map_err(RefreshFailure::Setup)?;
                let token_url = TokenUrl::new(self.google.token_url.clone()).map_err(|e| {
                    RefreshFailure::Setup(TokensError::NotConfigured(Setup::BadUrl(format!(
                        "invalid Google token URL: {e}"
                    ))))
                })?;
                let client: OClient = OClient::new(ClientId::new(client_id))
                    .set_client_secret(ClientSecret::new(secret))
                    .set_auth_type(AuthType::RequestBody);
                let client = client.set_token_uri(token_url);
                client
                    .exchange_refresh_token(&refresh)
                    .request_async(transport)
                    .await
            }
        };
        result.map_err(|e| RefreshFailure::Call(CallError::from_request(e)))
    }

    /// Seals and stores a token set atomically (a rotated refresh token in the
    /// same write), then caches the access token with a monotonic deadline.
    pub(crate) async fn store_token_set(
        &self,
        a: &Account,
        access: &str,
        expires_in: Option<Duration>,
        refresh: Option<&str>,
        mailbox: Option<String>,
        authorized: bool,
    ) -> Result<(), TokensError> {
        let id = a.id;
        let lifetime = expires_in
            .unwrap_or(DEFAULT_LIFETIME)
            .min(Duration::from_secs(86_400 * 30));
        let now = self.clock.unix();
        let grant = TokenGrant {
            access_token: self.seal(id, "access_token", access)?,
            access_expires_at: now
                .saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(3600)),
            refresh_token: refresh
                .map(|r| self.seal(id, "refresh_token", r))
                .transpose()?,
            mailbox: mailbox.clone(),
            identity_verified: Some(a.verify_cert),
            refreshed_at: now,
            authorized_at: authorized.then_some(now),
        };
        self.store.store_tokens(id, &grant).await?;
        let mailbox = mailbox.or_else(|| a.mailbox.clone()).unwrap_or_default();
        let deadline = self.clock.monotonic() + lifetime;
        self.with_state(id, |s| {
            s.cached = Some(Cached {
                token: access.to_string(),
                mailbox,
                deadline,
            });
            s.generation += 1;
            s.retry = None;
        });
        Ok(())
    }

    async fn keep_alive_once(&self) {
        let accounts = match self.store.accounts().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "keep-alive: cannot list accounts");
                return;
            }
        };
        let now_mono = self.clock.monotonic();
        let now = self.clock.unix();
        for a in accounts {
            let app = a.credential_kind.is_app_only();
            // An app-only account in Error is tried again (with backoff): its
            // administrator may have fixed the credential or the grant.
            let wanted = if app {
                a.enabled && matches!(a.token_status, TokenStatus::Active | TokenStatus::Error)
            } else {
                a.token_status == TokenStatus::Active
            };
            if !can_renew(&a) || !wanted {
                continue;
            }
            let (deadline, retry) =
                self.with_state(a.id, |s| (s.cached.as_ref().map(|c| c.deadline), s.retry));
            if retry.is_some_and(|(next, _)| next > now_mono) {
                continue;
            }
            let in_error = app && a.token_status == TokenStatus::Error;
            let near_expiry = match deadline {
                Some(d) => d <= now_mono + KEEPALIVE_MARGIN,
                None => a.access_expires_at.is_none_or(|e| {
                    e.saturating_sub(now)
                        <= i64::try_from(KEEPALIVE_MARGIN.as_secs()).unwrap_or(300)
                }),
            };
            let stale = a
                .last_refreshed_at
                .is_none_or(|r| now.saturating_sub(r) >= KEEPALIVE_MAX_AGE_SECS);
            if !(near_expiry || stale || in_error) {
                continue;
            }
            match self.force_refresh(a.id).await {
                Ok(()) => {}
                Err(e) if e.is_temporary() || app => {
                    let delay = retry.map_or(RETRY_FIRST, |(_, d)| (d * 2).min(RETRY_MAX));
                    self.with_state(a.id, |s| {
                        s.retry = Some((self.clock.monotonic() + delay, delay))
                    });
                    tracing::warn!(
                        account = a.id,
                        retry_secs = delay.as_secs(),
                        "keep-alive refresh failed temporarily"
                    );
                }
                Err(_) => tracing::warn!(account = a.id, "keep-alive refresh failed"),
            }
        }
    }

    pub(crate) async fn keep_alive_loop(self: Arc<Self>) {
        loop {
            if !sleep_or_cancel(&self.cancel, KEEPALIVE_TICK).await {
                return;
            }
            self.keep_alive_once().await;
        }
    }

    /// Client ID and the opened client secret of a Google account.
    pub(crate) fn google_credentials(
        &self,
        a: &Account,
        sealed_secret: Option<&[u8]>,
    ) -> Result<(String, String), TokensError> {
        if a.provider != Provider::Google {
            return Err(TokensError::NotConfigured(Setup::WrongProvider(
                Provider::Google,
            )));
        }
        let client_id = a
            .client_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| TokensError::NotConfigured(Setup::GoogleClientId))?
            .to_string();
        let blob =
            sealed_secret.ok_or_else(|| TokensError::NotConfigured(Setup::GoogleClientSecret))?;
        let secret = self.open(a.id, "client_secret", blob)?;
        Ok((client_id, secret))
    }

    /// Best-effort revocation of a Google grant (the refresh token ends the whole grant).
    async fn revoke_google(&self, a: &Account) {
        let Ok(sealed) = self.store.sealed_secrets(a.id).await else {
            return;
        };
        let Some(blob) = sealed.refresh_token else {
            return;
        };
        let Ok(token) = self.open(a.id, "refresh_token", &blob) else {
            return;
        };
        let Ok(transport) = self.transport(a) else {
            return;
        };
        match transport
            .reqwest()
            .post(&self.google.revoke_url)
            .form(&[("token", token.as_str())])
            .send()
            .await
        {
            Ok(r) => tracing::info!(
                account = a.id,
                http_status = r.status().as_u16(),
                "Google grant revoked"
            ),
            Err(_) => tracing::warn!(
                account = a.id,
                "Google revocation failed; tokens are forgotten anyway"
            ),
        }
    }
}

enum RefreshFailure {
    Setup(TokensError),
    Call(CallError),
}
