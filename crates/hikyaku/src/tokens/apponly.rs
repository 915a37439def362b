//! App-only access tokens (protocols.md §8, §9): Microsoft's client
//! credentials grant with a client secret or a certificate's client
//! assertion, and Google's JWT bearer grant for a service account with
//! domain-wide delegation. There is no refresh token: a new access token is
//! requested before the current one expires, under the account's lock (one
//! request at a time), by the caller that needs it or by the keep-alive
//! loop, also after a restart, with nobody signing in.

use std::time::Duration;

use super::appkeys::{self, CredentialError};
use super::status::{self, TokenStatus};
use super::wire::{CallError, FormOutcome, Transport, post_token_form};
use super::{AccessToken, Inner, Setup, TokensError, sleep_or_cancel};
use crate::i18n::Reason;
use crate::provider::Provider;
use crate::store::accounts::{Account, CredentialKind};

/// Renew an app-only token at least this long before it expires (the HVE
/// endpoint refuses tokens near their end: protocols.md §8).
pub const RENEW_EARLY: Duration = Duration::from_secs(600);
/// A warning appears this long before a secret or certificate expires.
pub const EXPIRY_WARNING_SECS: i64 = 30 * 86_400;
/// Pause before the one retry of a temporary failure inside a request.
const IN_CALL_RETRY: Duration = Duration::from_millis(500);

/// Whether the account has every credential its kind needs, and a mailbox.
pub fn app_configured(a: &Account) -> bool {
    let has_mailbox = a.mailbox.as_deref().is_some_and(|m| !m.trim().is_empty());
    let client_id = a.client_id.as_deref().is_some_and(|c| !c.trim().is_empty());
    has_mailbox
        && match a.credential_kind {
            CredentialKind::Delegated => false,
            CredentialKind::MicrosoftSecret => client_id && a.has_client_secret,
            CredentialKind::MicrosoftCertificate => {
                client_id && a.has_certificate && a.has_private_key
            }
            CredentialKind::GoogleServiceAccount => a.has_service_account_key,
        }
}

/// The scope an app-only token is requested for: for SMTP the account's
/// override, else its cloud's preset (`…/.default` for Microsoft); for Graph
/// `.default` on the account's Graph host; for the Gmail API `gmail.send`.
pub fn app_scope(a: &Account) -> String {
    use crate::store::accounts::{GMAIL_SEND_SCOPE, Transport as Via};
    match a.transport {
        Via::Smtp => {}
        Via::Graph => return format!("https://{}/.default", a.effective_graph_host()),
        Via::GmailApi => return GMAIL_SEND_SCOPE.to_string(),
    }
    a.smtp_scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| a.cloud.preset(a.provider).smtp_scope_app.to_string())
}

/// The lifetime to count with: `expires_in` less [`RENEW_EARLY`] (half of
/// it for a token shorter than 20 minutes), so the token is replaced in time.
pub fn usable_lifetime(expires_in: Option<Duration>) -> Duration {
    let life = expires_in.unwrap_or(Duration::from_secs(3600));
    if life > RENEW_EARLY * 2 {
        life - RENEW_EARLY
    } else {
        life / 2
    }
}

/// The warning about a secret or certificate that expires within 30 days
/// or has expired, for Token Status and the Portal.
pub fn credential_expiry_warning(a: &Account, now: i64) -> Option<Reason> {
    if !a.credential_kind.is_app_only() {
        return None;
    }
    let at = a.credential_expires_at?;
    let what = match a.credential_kind {
        CredentialKind::MicrosoftCertificate => "certificate",
        _ => "secret",
    };
    let date = time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|d| {
            d.format(&time::macros::format_description!("[year]-[month]-[day]"))
                .ok()
        })
        .unwrap_or_default();
    if at <= now {
        Some(
            Reason::new("app-credential-expired")
                .arg("what", what)
                .arg("date", date),
        )
    } else if at - now <= EXPIRY_WARNING_SECS {
        let days = (at - now + 86_399) / 86_400;
        Some(
            Reason::new("app-credential-expires-soon")
                .arg("what", what)
                .arg("date", date)
                .arg("days", days),
        )
    } else {
        None
    }
}

/// The advice for an app-only token request the provider refused.
pub fn app_failure_reason(provider: Provider, error: &str, description: Option<&str>) -> Reason {
    let desc = description.unwrap_or("");
    let advice = match provider {
        Provider::Microsoft => match status::aadsts_code(desc) {
            Some(7_000_215) => "app-ms-secret-wrong",
            Some(7_000_222) => "app-ms-secret-expired",
            Some(700_027) => "app-ms-certificate-unknown",
            Some(700_024) => "app-ms-assertion-time",
            Some(700_016) => "app-ms-app-not-found",
            Some(90_002) => "app-ms-tenant-not-found",
            Some(1_002_012 | 70_011 | 500_011) => "app-ms-scope",
            _ => "app-ms-other",
        },
        Provider::Google => {
            let lower = desc.to_ascii_lowercase();
            match error {
                "unauthorized_client" => "app-google-unauthorized-client",
                "access_denied" => "app-google-access-denied",
                "invalid_grant" if lower.contains("email") || lower.contains("user id") => {
                    "app-google-invalid-user"
                }
                "invalid_grant"
                    if lower.contains("short-lived")
                        || lower.contains("iat")
                        || lower.contains("timeframe") =>
                {
                    "app-google-jwt-time"
                }
                "invalid_grant" if lower.contains("signature") => "app-google-bad-signature",
                "invalid_grant" => "app-google-invalid-grant",
                _ => "app-google-other",
            }
        }
    };
    let cut = desc.find(" Trace ID:").unwrap_or(desc.len());
    let detail: String = desc[..cut].trim().chars().take(300).collect();
    let reason = if detail.is_empty() {
        Reason::new("app-token-refused-bare")
    } else {
        Reason::new("app-token-refused").arg("detail", detail)
    };
    reason
        .arg("error", error)
        .nested("advice", Reason::new(advice))
}

/// The Token Status reason for an SMTP refusal of an app-only token, when
/// the reply is one an administrator must act on.
pub fn app_smtp_reason(reply: &str) -> Option<Reason> {
    let upper = reply.to_ascii_uppercase();
    let advice = if upper.contains("5.7.139") {
        "app-smtp-auth-disabled"
    } else if upper.contains("SENDASDENIED") || upper.contains("5.2.252") {
        "app-smtp-send-as"
    } else if upper.starts_with("535") {
        "app-smtp-not-granted"
    } else {
        return None;
    };
    let reply: String = reply.chars().take(300).collect();
    Some(
        Reason::new("app-smtp-refused")
            .arg("reply", reply)
            .nested("advice", Reason::new(advice)),
    )
}

/// How long the keep-alive leaves an account alone after the upstream
/// refused its app-only token at SMTP (the fix is in Exchange or Google).
const SMTP_REFUSED_PAUSE: Duration = Duration::from_secs(600);

impl super::TokenService {
    /// Delivery reports that the upstream SMTP server refused an app-only
    /// account's fresh token (or its sender): the Token Status becomes Error
    /// with what to do. The keep-alive tries again after a pause; the page's
    /// Check button at once.
    pub async fn app_smtp_refused(&self, account_id: i64, reply: &str) {
        let inner = &self.inner;
        let Ok(a) = inner.account(account_id).await else {
            return;
        };
        if !a.credential_kind.is_app_only() {
            return;
        }
        let Some(reason) = app_smtp_reason(reply) else {
            return;
        };
        // A From the mailbox may not use is about messages, not the token:
        // a warning, and the account goes on sending.
        let send_as = reply.to_ascii_uppercase().contains("SENDASDENIED");
        let written = if send_as {
            inner
                .store
                .set_token_status(
                    account_id,
                    a.token_status.as_str(),
                    a.token_reason.as_ref(),
                    Some(&reason),
                )
                .await
        } else {
            let next = inner.clock.monotonic() + SMTP_REFUSED_PAUSE;
            inner.with_state(account_id, |s| s.retry = Some((next, SMTP_REFUSED_PAUSE)));
            inner
                .store
                .set_token_status(account_id, TokenStatus::Error.as_str(), Some(&reason), None)
                .await
        };
        if let Err(e) = written {
            tracing::warn!(account = account_id, error = %e, "cannot record the SMTP refusal");
        }
        tracing::warn!(
            account = account_id,
            status = "error",
            "upstream refused the app-only token"
        );
    }
}

/// What went wrong getting an app-only token.
enum Failure {
    Setup(TokensError),
    Call(CallError),
}

impl Inner {
    /// Requests a new app-only access token with the account lock held,
    /// stores it and sets the Token Status (Active, or Error with advice).
    pub(crate) async fn app_token_locked(&self, a: &Account) -> Result<AccessToken, TokensError> {
        let id = a.id;
        if !app_configured(a) {
            return Err(TokensError::NotConfigured(Setup::AppCredentials));
        }
        let transport = self.transport(a)?;
        let mut outcome = self.app_request(a, &transport).await;
        if matches!(outcome, Err(Failure::Call(CallError::Temporary(_))))
            && sleep_or_cancel(&self.cancel, IN_CALL_RETRY).await
        {
            outcome = self.app_request(a, &transport).await;
        }
        match outcome {
            Ok((access, expires_in)) => {
                let mailbox = a.mailbox.clone();
                self.store_token_set(
                    a,
                    &access,
                    Some(usable_lifetime(expires_in)),
                    None,
                    mailbox,
                    false,
                )
                .await?;
                tracing::info!(
                    account = id,
                    status = "active",
                    "app-only access token issued"
                );
                self.cached_valid(id).ok_or_else(|| {
                    TokensError::Provider(
                        "the provider issued an access token that expires within a minute".into(),
                    )
                })
            }
            Err(Failure::Setup(e)) => {
                let reason = match &e {
                    TokensError::NotConfigured(Setup::AppCredentials) => {
                        Reason::new("app-incomplete")
                    }
                    other => Reason::text(other),
                };
                self.store
                    .set_token_status(id, TokenStatus::Error.as_str(), Some(&reason), None)
                    .await?;
                Err(e)
            }
            Err(Failure::Call(CallError::Temporary(detail))) => {
                if a.token_status == TokenStatus::Active {
                    self.store
                        .set_token_status(
                            id,
                            a.token_status.as_str(),
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
            Err(Failure::Call(CallError::Oauth { error, description })) => {
                let reason = app_failure_reason(a.provider, &error, description.as_deref());
                self.with_state(id, |s| s.cached = None);
                self.store
                    .set_token_status(id, TokenStatus::Error.as_str(), Some(&reason), None)
                    .await?;
                tracing::warn!(account = id, error = %error, status = "error", "app-only token refused");
                Err(TokensError::AppRefused(reason))
            }
        }
    }

    /// One token request: `(access token, expires_in)`.
    async fn app_request(
        &self,
        a: &Account,
        transport: &Transport,
    ) -> Result<(String, Option<Duration>), Failure> {
        let sealed = self
            .store
            .sealed_secrets(a.id)
            .await
            .map_err(|e| Failure::Setup(e.into()))?;
        let scope = app_scope(a);
        let now = self.clock.unix();
        let bad_key = |e: CredentialError| {
            Failure::Setup(TokensError::NotConfigured(Setup::AppKey(e.to_string())))
        };
        let (url, form): (String, Vec<(&str, String)>) =
            match a.credential_kind {
                CredentialKind::MicrosoftSecret | CredentialKind::MicrosoftCertificate => {
                    let (endpoint, client_id) =
                        super::microsoft::microsoft_settings(a).map_err(Failure::Setup)?;
                    let url = format!("{endpoint}/token");
                    let mut form = vec![
                        ("grant_type", "client_credentials".to_string()),
                        ("client_id", client_id.clone()),
                        ("scope", scope),
                    ];
                    if a.credential_kind == CredentialKind::MicrosoftSecret {
                        let blob = sealed.client_secret.ok_or(Failure::Setup(
                            TokensError::NotConfigured(Setup::AppCredentials),
                        ))?;
                        let secret = self
                            .open(a.id, "client_secret", &blob)
                            .map_err(Failure::Setup)?;
                        form.push(("client_secret", secret));
                    } else {
                        let cert = self
                            .store
                            .account_certificate(a.id)
                            .await
                            .map_err(|e| Failure::Setup(e.into()))?
                            .ok_or(Failure::Setup(TokensError::NotConfigured(
                                Setup::AppCredentials,
                            )))?;
                        let blob = sealed.private_key.ok_or(Failure::Setup(
                            TokensError::NotConfigured(Setup::AppCredentials),
                        ))?;
                        let key = self
                            .key
                            .open(&super::aad(a.id, "private_key"), &blob)
                            .map_err(|e| Failure::Setup(e.into()))?;
                        let assertion =
                            appkeys::client_assertion(&url, &client_id, &cert, &key, now)
                                .map_err(bad_key)?;
                        form.push((
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
                        ));
                        form.push(("client_assertion", assertion));
                    }
                    (url, form)
                }
                CredentialKind::GoogleServiceAccount => {
                    let blob = sealed.service_account_key.ok_or(Failure::Setup(
                        TokensError::NotConfigured(Setup::AppCredentials),
                    ))?;
                    let json = self
                        .open(a.id, "service_account_key", &blob)
                        .map_err(Failure::Setup)?;
                    let key = appkeys::read_service_account(json.as_bytes()).map_err(bad_key)?;
                    let mailbox = a.mailbox.clone().unwrap_or_default();
                    let assertion = key.assertion(&mailbox, &scope, now).map_err(bad_key)?;
                    (
                        key.token_uri.clone(),
                        vec![
                            (
                                "grant_type",
                                "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                            ),
                            ("assertion", assertion),
                        ],
                    )
                }
                CredentialKind::Delegated => {
                    return Err(Failure::Setup(TokensError::NotConfigured(
                        Setup::AppCredentials,
                    )));
                }
            };
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match post_token_form(transport, &url, &pairs).await {
            FormOutcome::Tokens(t) => {
                use oauth2::TokenResponse as _;
                Ok((t.access_token().secret().clone(), t.expires_in()))
            }
            FormOutcome::Error(e) => Err(Failure::Call(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_ten_minutes_early() {
        assert_eq!(
            usable_lifetime(Some(Duration::from_secs(3599))),
            Duration::from_secs(2999)
        );
        assert_eq!(
            usable_lifetime(Some(Duration::from_secs(600))),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn microsoft_codes_get_their_advice() {
        for (code, advice) in [
            ("AADSTS7000215", "app-ms-secret-wrong"),
            ("AADSTS7000222", "app-ms-secret-expired"),
            ("AADSTS700027", "app-ms-certificate-unknown"),
            ("AADSTS700024", "app-ms-assertion-time"),
            ("AADSTS700016", "app-ms-app-not-found"),
            ("AADSTS90002", "app-ms-tenant-not-found"),
            ("AADSTS1002012", "app-ms-scope"),
            ("AADSTS500011", "app-ms-scope"),
        ] {
            let r = app_failure_reason(
                Provider::Microsoft,
                "invalid_client",
                Some(&format!("{code}: words. Trace ID: 1")),
            );
            let json = r.to_json();
            assert!(json.contains(advice), "{code}: {json}");
            assert!(!json.contains("Trace ID"), "{json}");
        }
    }

    #[test]
    fn google_errors_get_their_advice() {
        for (error, desc, advice) in [
            (
                "unauthorized_client",
                "Client is unauthorized",
                "app-google-unauthorized-client",
            ),
            ("access_denied", "", "app-google-access-denied"),
            (
                "invalid_grant",
                "Invalid email or User ID",
                "app-google-invalid-user",
            ),
            (
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values",
                "app-google-jwt-time",
            ),
            (
                "invalid_grant",
                "Invalid JWT Signature.",
                "app-google-bad-signature",
            ),
        ] {
            let json = app_failure_reason(Provider::Google, error, Some(desc)).to_json();
            assert!(json.contains(advice), "{error} {desc}: {json}");
        }
    }

    #[test]
    fn smtp_refusals_of_app_tokens_are_explained() {
        let r = |s| app_smtp_reason(s).map(|r| r.to_json()).unwrap_or_default();
        assert!(r("535 5.7.3 Authentication unsuccessful").contains("app-smtp-not-granted"));
        assert!(r("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox").contains("app-smtp-auth-disabled"));
        assert!(r("554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied").contains("app-smtp-send-as"));
        assert!(app_smtp_reason("451 4.4.0 later").is_none());
    }
}
