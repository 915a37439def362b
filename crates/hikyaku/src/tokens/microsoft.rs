//! Microsoft: the device authorization grant (RFC 8628, protocols.md §1).
//!
//! `POST {endpoint}/devicecode` goes through oauth2; the response is sealed
//! and persisted as the account's authorization, and a poller posts
//! `{endpoint}/token` every `interval` seconds (never faster; `slow_down` adds
//! 5 s) until the user approves, declines, or the code expires. The poll loop
//! is ours rather than oauth2's one long future, so that it can resume after a
//! restart from the persisted device code and its remaining lifetime.

use std::sync::Arc;
use std::time::Duration;

use oauth2::{AuthType, ClientId, DeviceAuthorizationUrl, Scope};
use serde::{Deserialize, Serialize};

use super::status::{self, TokenStatus};
use super::wire::{self, CallError, FormOutcome, MsDeviceExtra, OClient, TokenResp};
use super::{Inner, Pending, Setup, TokenService, TokensError, sleep_or_cancel};
use crate::i18n::Reason;
use crate::provider::Provider;
use crate::store::accounts::Account;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Longest wait between polls after transport failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the Microsoft settings page shows while the user authorizes:
/// `[メッセージ] / Message`, `[ユーザーコード] / User Code`,
/// `[ユーザーコードの有効期限] / User Code Expiration`, and the link.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCode {
    pub verification_uri: String,
    pub user_code: String,
    pub message: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Seconds between polls.
    pub interval: u64,
}

impl std::fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCode")
            .field("verification_uri", &self.verification_uri)
            .field("user_code", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("interval", &self.interval)
            .finish()
    }
}

/// The persisted device authorization (sealed).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PendingDevice {
    pub device_code: String,
    pub shown: DeviceCode,
    /// The normalized endpoint and client id the code was issued for.
    pub endpoint: String,
    pub client_id: String,
}

impl std::fmt::Debug for PendingDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingDevice([redacted])")
    }
}

/// The normalized endpoint and client id of a Microsoft account.
pub(crate) fn microsoft_settings(a: &Account) -> Result<(String, String), TokensError> {
    if a.provider != Provider::Microsoft {
        return Err(TokensError::NotConfigured(Setup::WrongProvider(
            Provider::Microsoft,
        )));
    }
    let raw = a
        .endpoint
        .as_deref()
        .filter(|e| !e.trim().is_empty())
        .map_or_else(|| a.cloud.microsoft_endpoint("common"), str::to_owned);
    let endpoint = super::validate_microsoft_endpoint(&raw)
        .map_err(|reason| TokensError::NotConfigured(Setup::Endpoint(reason)))?
        .normalized;
    let client_id = a
        .client_id
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| TokensError::NotConfigured(Setup::MicrosoftClientId))?
        .to_string();
    Ok((endpoint, client_id))
}

impl TokenService {
    /// Requests a device code, persists it (sealed) as the account's
    /// authorization, sets the token status to Authorizing, and starts polling.
    pub async fn start_device_authorization(
        &self,
        account_id: i64,
    ) -> Result<DeviceCode, TokensError> {
        let inner = &self.inner;
        let a = inner.account(account_id).await?;
        let (endpoint, client_id) = microsoft_settings(&a)?;
        if !a.enabled {
            return Err(TokensError::NotConfigured(Setup::MicrosoftOff));
        }
        let transport = inner.transport(&a)?;
        let device_url =
            DeviceAuthorizationUrl::new(format!("{endpoint}/devicecode")).map_err(|e| {
                TokensError::NotConfigured(Setup::BadUrl(format!(
                    "the device code URL is invalid: {e}"
                )))
            })?;
        let client: OClient =
            OClient::new(ClientId::new(client_id.clone())).set_auth_type(AuthType::RequestBody);
        let client = client.set_device_authorization_url(device_url);
        // The SMTP scope of the account's cloud (or its override).
        let request = client.exchange_device_code().add_scopes(
            crate::provider::microsoft_scopes(&a.delegated_scope(), false)
                .into_iter()
                .map(Scope::new),
        );
        let details: oauth2::DeviceAuthorizationResponse<MsDeviceExtra> =
            match request.request_async(&transport).await {
                Ok(d) => d,
                Err(e) => {
                    let err = match CallError::from_request(e) {
                        CallError::Temporary(t) => TokensError::Temporary(format!(
                            "the device code endpoint cannot be reached: {t}"
                        )),
                        CallError::Oauth { error, description } => {
                            let reason = status::provider_error_reason(
                                Provider::Microsoft,
                                &error,
                                description.as_deref(),
                            );
                            inner
                                .store
                                .set_authorization(
                                    account_id,
                                    None,
                                    TokenStatus::Error.as_str(),
                                    Some(&reason),
                                )
                                .await?;
                            TokensError::Provider(reason.to_string())
                        }
                    };
                    tracing::warn!(
                        account = account_id,
                        temporary = err.is_temporary(),
                        "device authorization request failed"
                    );
                    return Err(err);
                }
            };
        let now = inner.clock.unix();
        let expires_in = i64::try_from(details.expires_in().as_secs())
            .unwrap_or(900)
            .clamp(1, 86_400);
        let interval = details.interval().as_secs().clamp(1, 300);
        let verification_uri = details.verification_uri().to_string();
        let user_code = details.user_code().secret().to_string();
        let message = details
            .extra_fields()
            .message
            .clone()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| format!("To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to authenticate."));
        let shown = DeviceCode {
            verification_uri,
            user_code,
            message,
            expires_at: now.saturating_add(expires_in),
            interval,
        };
        let pending = PendingDevice {
            device_code: details.device_code().secret().to_string(),
            shown: shown.clone(),
            endpoint,
            client_id,
        };
        inner.stop_task(account_id);
        inner
            .save_pending(account_id, &Pending::Device(pending.clone()))
            .await?;
        inner.spawn_poller(account_id, pending);
        tracing::info!(account = account_id, "device authorization started");
        Ok(shown)
    }

    /// The device code the page shows while authorizing (none once expired).
    pub async fn pending_device_code(
        &self,
        account_id: i64,
    ) -> Result<Option<DeviceCode>, TokensError> {
        match self.inner.pending(account_id).await? {
            Some(Pending::Device(p)) if p.shown.expires_at > self.inner.clock.unix() => {
                Ok(Some(p.shown))
            }
            _ => Ok(None),
        }
    }
}

impl Inner {
    pub(crate) fn spawn_poller(self: &Arc<Self>, id: i64, pending: PendingDevice) {
        let task_id = self.new_task_id();
        let inner = self.clone();
        let handle = tokio::spawn(async move {
            let cancel = inner.cancel.clone();
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = inner.poll_device(id, task_id, pending) => {}
            }
            inner.task_done(id, task_id);
        });
        self.set_task(id, task_id, handle.abort_handle());
    }

    /// Resumes a persisted device authorization after a restart.
    pub(crate) async fn resume_device(
        self: &Arc<Self>,
        a: &Account,
        p: PendingDevice,
    ) -> Result<(), TokensError> {
        if p.shown.expires_at <= self.clock.unix() {
            self.store
                .set_authorization(
                    a.id,
                    None,
                    TokenStatus::Error.as_str(),
                    Some(&status::code_expired()),
                )
                .await?;
            return Ok(());
        }
        tracing::info!(account = a.id, "resuming device authorization");
        self.spawn_poller(a.id, p);
        Ok(())
    }

    async fn poll_device(self: &Arc<Self>, id: i64, task_id: u64, p: PendingDevice) {
        let mut base = Duration::from_secs(p.shown.interval.max(1));
        let mut wait = base;
        let remaining =
            u64::try_from(p.shown.expires_at.saturating_sub(self.clock.unix())).unwrap_or(0);
        let deadline = self.clock.monotonic() + Duration::from_secs(remaining);
        let token_url = format!("{}/token", p.endpoint);
        let form = [
            ("grant_type", DEVICE_GRANT),
            ("client_id", p.client_id.as_str()),
            ("device_code", p.device_code.as_str()),
        ];
        loop {
            // Wait first: a resumed poller must not poll sooner than the interval either.
            if !sleep_or_cancel(&self.cancel, wait).await {
                return;
            }
            if self.clock.monotonic() >= deadline || self.clock.unix() >= p.shown.expires_at {
                self.device_failed(id, task_id, status::code_expired())
                    .await;
                return;
            }
            let a = match self.account(id).await {
                Ok(a) => a,
                Err(TokensError::NoAccount(_)) => return,
                Err(_) => {
                    wait = (wait * 2).min(MAX_BACKOFF.max(base));
                    continue;
                }
            };
            if !a.has_authorization {
                // Reset or switched off meanwhile.
                return;
            }
            let transport = match self.transport(&a) {
                Ok(t) => t,
                Err(e) => {
                    self.device_failed(id, task_id, Reason::text(e)).await;
                    return;
                }
            };
            match wire::post_token_form(&transport, &token_url, &form).await {
                FormOutcome::Tokens(t) => {
                    if !self.is_current(id, task_id) {
                        return;
                    }
                    match self.complete_authorization(&a, &t).await {
                        Ok(()) => tracing::info!(account = id, "device authorization completed"),
                        Err(e) => {
                            tracing::warn!(
                                account = id,
                                "storing the tokens of the device authorization failed"
                            );
                            self.device_failed(id, task_id, Reason::text(e)).await;
                        }
                    }
                    return;
                }
                FormOutcome::Error(CallError::Temporary(_)) => {
                    tracing::debug!(account = id, "device poll failed temporarily");
                    wait = (wait * 2).min(MAX_BACKOFF.max(base));
                }
                FormOutcome::Error(CallError::Oauth { error, description }) => match error.as_str()
                {
                    "authorization_pending" => wait = base,
                    "slow_down" => {
                        base += Duration::from_secs(5);
                        wait = base;
                    }
                    "authorization_declined" | "access_denied" => {
                        self.device_failed(id, task_id, status::declined()).await;
                        return;
                    }
                    "expired_token" => {
                        self.device_failed(id, task_id, status::code_expired())
                            .await;
                        return;
                    }
                    "bad_verification_code" => {
                        let reason = Reason::new("device-code-rejected");
                        self.device_failed(id, task_id, reason).await;
                        return;
                    }
                    _ => {
                        let reason = status::provider_error_reason(
                            Provider::Microsoft,
                            &error,
                            description.as_deref(),
                        );
                        self.device_failed(id, task_id, reason).await;
                        return;
                    }
                },
            }
        }
    }

    /// Ends a device authorization with token status Error and `reason`.
    async fn device_failed(&self, id: i64, task_id: u64, reason: Reason) {
        if !self.is_current(id, task_id) {
            return;
        }
        tracing::info!(account = id, status = "error", "device authorization ended");
        if let Err(e) = self
            .store
            .set_authorization(id, None, TokenStatus::Error.as_str(), Some(&reason))
            .await
        {
            tracing::warn!(account = id, error = %e, "cannot store the token status");
        }
    }

    /// Stores the tokens of a completed authorization (either provider):
    /// sealed, atomically, with the mailbox from the id_token.
    pub(crate) async fn complete_authorization(
        &self,
        a: &Account,
        t: &TokenResp,
    ) -> Result<(), TokensError> {
        use oauth2::TokenResponse as _;
        let id = a.id;
        let Some(refresh) = t.refresh_token() else {
            let reason = Reason::new("no-refresh-token");
            self.store
                .set_authorization(id, None, TokenStatus::Error.as_str(), Some(&reason))
                .await?;
            return Err(TokensError::Provider(reason.to_string()));
        };
        let mailbox = t
            .extra_fields()
            .id_token
            .as_deref()
            .and_then(super::mailbox_from_id_token);
        // What was granted decides what the account may send (Graph's
        // Mail.ReadWrite: large messages). A response without `scope`
        // granted what was asked (RFC 6749 §5.1).
        let granted = t.scopes().map_or_else(
            || a.delegated_scope(),
            |s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        );
        self.store.set_granted_scope(id, Some(&granted)).await?;
        self.store_token_set(
            a,
            t.access_token().secret(),
            t.expires_in(),
            Some(refresh.secret()),
            mailbox,
            true,
        )
        .await
    }
}

impl DeviceCode {
    /// Whether `verification_uri` may be offered as a link: `https:`, or
    /// `http:` to this host (local test servers). Any other scheme
    /// (`javascript:`, `data:`) from a configured endpoint is shown as text.
    pub fn is_browser_link(&self) -> bool {
        is_browser_link(&self.verification_uri)
    }
}

fn is_browser_link(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}
