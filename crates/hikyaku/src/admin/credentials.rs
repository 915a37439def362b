//! App-only credentials of an account (protocols.md §8, §9): a Microsoft
//! client secret (with its expiry), a Microsoft certificate (PEM with its
//! key, or PKCS#12 with a password; the key sealed, the certificate's
//! expiry read from it), or a Google service account's JSON key (sealed)
//! with the mailbox it acts as. Microsoft accounts are managed by an
//! Administrator or NetworkAdmin, Google accounts by an Administrator only.
//! Secrets and keys are write-only: no operation returns them and the audit
//! entry names only the kind, ids, mailbox and expiry.

use super::{Admin, AdminError, Live, Problem};
use crate::i18n::Reason;
use crate::provider::Provider;
use crate::roles::Permission;
use crate::store::accounts::{Account, AppCredentials, CredentialKind};
use crate::store::audit::Action;
use crate::tokens::appkeys::{self, CredentialError};
use crate::tokens::validate_microsoft_endpoint;

/// The credential as entered. `None` keeps what is stored (the same kind only).
#[derive(Clone, Default)]
pub enum CredentialInput {
    /// Only the mailbox, ids or tenant change.
    #[default]
    Keep,
    MicrosoftSecret {
        secret: Option<String>,
        /// `YYYY-MM-DD`, as Entra shows it beside the secret.
        expires: Option<String>,
    },
    MicrosoftCertificate {
        /// A PEM file (certificate and private key) or PKCS#12 (.pfx/.p12).
        file: Option<Vec<u8>>,
        password: Option<String>,
    },
    GoogleServiceAccount {
        /// The JSON key file as downloaded.
        key_json: Option<Vec<u8>>,
    },
}

impl std::fmt::Debug for CredentialInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CredentialInput::Keep => "Keep",
            CredentialInput::MicrosoftSecret { .. } => "MicrosoftSecret([redacted])",
            CredentialInput::MicrosoftCertificate { .. } => "MicrosoftCertificate([redacted])",
            CredentialInput::GoogleServiceAccount { .. } => "GoogleServiceAccount([redacted])",
        })
    }
}

/// App-only settings as entered, before validation.
#[derive(Debug, Clone, Default)]
pub struct AppInput {
    /// Microsoft: the tenant ID or a verified domain of the tenant.
    pub tenant: Option<String>,
    /// Microsoft: the whole authorization server endpoint instead of the
    /// tenant (private clouds, tests); its tenant is used.
    pub endpoint: Option<String>,
    /// Microsoft: the application (client) ID.
    pub client_id: Option<String>,
    /// The mailbox to send as (XOAUTH2 `user=`, Google's `sub`); `None` keeps it.
    pub mailbox: Option<String>,
    pub credential: CredentialInput,
}

/// What is wrong with app-only settings; the Remote UI shows its translation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppProblem {
    #[error(
        "this account signs in as a person (delegated): app-only credentials belong to an app-only account"
    )]
    NotAppOnly,
    #[error(
        "a Microsoft account takes a client secret or a certificate, a Google account a service account key"
    )]
    KindMismatch,
    #[error(
        "enter the tenant: its Directory (tenant) ID or a verified domain (not common, organizations or consumers)"
    )]
    Tenant,
    #[error("enter the Application (client) ID: Entra admin center → App registrations → your app")]
    ClientId,
    #[error("paste the client secret's Value (Certificates & secrets → Client secrets)")]
    SecretMissing,
    #[error(
        "this is the client secret's ID, not its Value: copy the Value column (it is shown only when the secret is created)"
    )]
    SecretIsId,
    #[error("the expiry date must be written YYYY-MM-DD")]
    Expiry,
    #[error("upload the certificate with its private key (PEM or .pfx)")]
    CertificateMissing,
    #[error("upload the service account's JSON key")]
    KeyMissing,
    #[error("enter the mailbox to send as (an address such as scan@example.com)")]
    Mailbox,
    #[error("{0}")]
    Credential(CredentialError),
}

impl AppProblem {
    /// The Fluent message id of the text.
    pub fn code(&self) -> &'static str {
        match self {
            AppProblem::NotAppOnly => "app-err-not-app-only",
            AppProblem::KindMismatch => "app-err-kind",
            AppProblem::Tenant => "app-err-tenant",
            AppProblem::ClientId => "app-err-client-id",
            AppProblem::SecretMissing => "app-err-secret-missing",
            AppProblem::SecretIsId => "app-err-secret-is-id",
            AppProblem::Expiry => "app-err-expiry",
            AppProblem::CertificateMissing => "app-err-certificate-missing",
            AppProblem::KeyMissing => "app-err-key-missing",
            AppProblem::Mailbox => "app-err-mailbox",
            AppProblem::Credential(e) => e.code(),
        }
    }
}

fn problem(p: AppProblem) -> Problem {
    Problem::App(p)
}

/// A GUID as Entra writes ids (8-4-4-4-12 hex digits).
fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A tenant ID or a domain name; the multi-tenant aliases do not fit the
/// client credentials grant.
fn valid_tenant(t: &str) -> bool {
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), "common" | "organizations" | "consumers") {
        return false;
    }
    is_guid(t)
        || (t.contains('.')
            && t.len() <= 253
            && t.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}

fn valid_mailbox(m: &str) -> bool {
    let Some((local, domain)) = m.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && m.len() <= 254
        && !m
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ','))
}

/// `YYYY-MM-DD` → Unix seconds at 00:00 UTC.
fn parse_date(text: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text.trim(), &format)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp())
}

fn trimmed(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The Microsoft endpoint with `tenant`, on the host the account uses now
/// (its cloud's, or one an administrator set).
fn endpoint_for_tenant(current: Option<&str>, account: &Account, tenant: &str) -> String {
    let host = current.and_then(|e| url::Url::parse(e).ok()).and_then(|u| {
        u.host_str().map(|h| match u.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        })
    });
    match host {
        Some(h) => format!("https://{h}/{tenant}/oauth2/v2.0"),
        None => account.cloud.microsoft_endpoint(tenant),
    }
}

impl Admin<'_> {
    /// An account the actor may manage (Google: Administrator only).
    async fn app_account(&self, id: i64) -> Result<Account, AdminError> {
        let a = self.store.account(id).await?;
        self.require(Permission::manage(a.provider))?;
        Ok(a)
    }

    /// Validates, seals and saves an account's app-only credentials, then
    /// asks for a token at once so the Token Status says whether they work.
    pub async fn set_app_credentials(
        &self,
        live: &Live<'_>,
        id: i64,
        input: &AppInput,
    ) -> Result<Account, AdminError> {
        let a = self.app_account(id).await?;
        if !a.credential_kind.is_app_only() {
            return Err(problem(AppProblem::NotAppOnly).into());
        }
        let mut problems = Vec::new();
        let kind = match (&input.credential, a.provider) {
            (CredentialInput::Keep, _) => a.credential_kind,
            (CredentialInput::MicrosoftSecret { .. }, Provider::Microsoft) => {
                CredentialKind::MicrosoftSecret
            }
            (CredentialInput::MicrosoftCertificate { .. }, Provider::Microsoft) => {
                CredentialKind::MicrosoftCertificate
            }
            (CredentialInput::GoogleServiceAccount { .. }, Provider::Google) => {
                CredentialKind::GoogleServiceAccount
            }
            _ => return Err(problem(AppProblem::KindMismatch).into()),
        };
        let same_kind = kind == a.credential_kind;
        let mailbox = trimmed(&input.mailbox).or_else(|| a.mailbox.clone());
        let mailbox = match mailbox {
            Some(m) if valid_mailbox(&m) => m,
            _ => {
                problems.push(problem(AppProblem::Mailbox));
                String::new()
            }
        };
        let mut creds = AppCredentials {
            credential_kind: kind,
            endpoint: None,
            client_id: None,
            client_secret: None,
            certificate: None,
            private_key: None,
            service_account_key: None,
            service_account_email: None,
            mailbox,
            expires_at: None,
        };
        if a.provider == Provider::Microsoft {
            if let Some(text) = trimmed(&input.endpoint) {
                match validate_microsoft_endpoint(&text) {
                    Ok(c) if valid_tenant(&c.tenant) => creds.endpoint = Some(c.normalized),
                    Ok(_) => problems.push(problem(AppProblem::Tenant)),
                    Err(e) => problems.push(Problem::Endpoint(e)),
                }
            } else if let Some(t) = trimmed(&input.tenant) {
                if valid_tenant(&t) {
                    creds.endpoint = Some(endpoint_for_tenant(a.endpoint.as_deref(), &a, &t));
                } else {
                    problems.push(problem(AppProblem::Tenant));
                }
            } else {
                let stored_ok = a
                    .endpoint
                    .as_deref()
                    .and_then(|e| validate_microsoft_endpoint(e).ok())
                    .is_some_and(|c| valid_tenant(&c.tenant));
                if !stored_ok {
                    problems.push(problem(AppProblem::Tenant));
                }
            }
            match trimmed(&input.client_id) {
                Some(c) if c.len() <= 256 && !c.contains(char::is_whitespace) => {
                    creds.client_id = Some(c)
                }
                Some(_) => problems.push(problem(AppProblem::ClientId)),
                None if a.client_id.is_none() => problems.push(problem(AppProblem::ClientId)),
                None => {}
            }
        }
        let aad = |field: &str| format!("account:{id}:{field}");
        match &input.credential {
            CredentialInput::Keep => {}
            CredentialInput::MicrosoftSecret { secret, expires } => {
                match trimmed(secret) {
                    Some(s) if is_guid(&s) => problems.push(problem(AppProblem::SecretIsId)),
                    Some(s) => {
                        creds.client_secret = Some(live.key.seal_str(&aad("client_secret"), &s)?)
                    }
                    None if !(same_kind && a.has_client_secret) => {
                        problems.push(problem(AppProblem::SecretMissing))
                    }
                    None => {}
                }
                match trimmed(expires) {
                    Some(d) => match parse_date(&d) {
                        Some(t) => creds.expires_at = Some(Some(t)),
                        None => problems.push(problem(AppProblem::Expiry)),
                    },
                    // A new secret without a date: its expiry is unknown.
                    None if creds.client_secret.is_some() => creds.expires_at = Some(None),
                    None => {}
                }
            }
            CredentialInput::MicrosoftCertificate { file, password } => match file {
                Some(bytes) if !bytes.is_empty() => {
                    match appkeys::read_certificate(bytes, password.as_deref()) {
                        Ok(b) => {
                            creds.private_key =
                                Some(live.key.seal(&aad("private_key"), &b.private_key_pkcs8)?);
                            creds.certificate = Some(b.certificate_der);
                            creds.expires_at = Some(Some(b.not_after));
                        }
                        Err(e) => problems.push(problem(AppProblem::Credential(e))),
                    }
                }
                _ if !(same_kind && a.has_certificate && a.has_private_key) => {
                    problems.push(problem(AppProblem::CertificateMissing))
                }
                _ => {}
            },
            CredentialInput::GoogleServiceAccount { key_json } => match key_json {
                Some(bytes) if !bytes.is_empty() => match appkeys::read_service_account(bytes) {
                    Ok(k) => {
                        // Sealed as the UTF-8 text it is (read_service_account parsed it).
                        let text = String::from_utf8_lossy(bytes);
                        creds.service_account_key =
                            Some(live.key.seal_str(&aad("service_account_key"), &text)?);
                        creds.service_account_email = Some(k.client_email);
                        creds.client_id = k.client_id;
                        creds.expires_at = Some(None);
                    }
                    Err(e) => problems.push(problem(AppProblem::Credential(e))),
                },
                _ if !(same_kind && a.has_service_account_key) => {
                    problems.push(problem(AppProblem::KeyMissing))
                }
                _ => {}
            },
        }
        if !problems.is_empty() {
            return Err(AdminError::Invalid(problems));
        }
        // The old tokens were issued for the old credentials.
        if let Err(e) = live.tokens.disable(id).await {
            tracing::warn!(account = id, error = %e, "forgetting the old tokens did not fully succeed");
        }
        self.store
            .set_app_credentials(id, &creds, self.clock.unix())
            .await?;
        let saved = self.store.account(id).await?;
        let expires = saved
            .credential_expires_at
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|d| {
                d.format(&time::macros::format_description!("[year]-[month]-[day]"))
                    .ok()
            })
            .unwrap_or_else(|| "-".into());
        self.audit(
            Action::OauthBasicSettings,
            Reason::new("audit-app-credentials")
                .arg("account", &saved.name)
                .arg("kind", saved.credential_kind.as_str())
                .arg("client_id", saved.client_id.as_deref().unwrap_or("-"))
                .arg("mailbox", saved.mailbox.as_deref().unwrap_or("-"))
                .arg("expires", expires),
        )
        .await;
        self.check_app(live, id).await
    }

    /// Asks for a new app-only token now; the Token Status records the
    /// outcome (Active, or Error with what to do). Returns the account.
    pub async fn check_app(&self, live: &Live<'_>, id: i64) -> Result<Account, AdminError> {
        let a = self.app_account(id).await?;
        if !a.credential_kind.is_app_only() {
            return Err(problem(AppProblem::NotAppOnly).into());
        }
        match live.tokens.force_refresh(id).await {
            Ok(()) => {}
            Err(e) => tracing::info!(account = id, error = %e, "app-only token check failed"),
        }
        Ok(self.store.account(id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, Server};
    use super::*;
    use crate::cloud::Cloud;
    use crate::roles::Role;
    use crate::store::accounts::NewAccount;

    async fn app_account(
        store: &crate::store::Store,
        provider: Provider,
        kind: CredentialKind,
    ) -> i64 {
        store
            .create_account(
                &NewAccount {
                    provider,
                    name: format!("{}-app", provider.as_str()),
                    cloud: Cloud::Worldwide,
                    credential_kind: kind,
                    mailbox: Some("scan@example.com".into()),
                    enabled: true,
                },
                1,
            )
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_secret_is_sealed_checked_and_never_audited() {
        let (dir, store) = testing::store().await;
        let server = Server::new(dir.path(), &store);
        let id = app_account(&store, Provider::Microsoft, CredentialKind::MicrosoftSecret).await;
        let admin = testing::admin(&store, Role::NetworkAdmin);
        let mut input = AppInput {
            tenant: Some("common".into()),
            client_id: Some("11111111-2222-3333-4444-555555555555".into()),
            mailbox: Some("scan@example.com".into()),
            credential: CredentialInput::MicrosoftSecret {
                secret: Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".into()),
                expires: Some("2030-13-01".into()),
            },
            ..Default::default()
        };
        let Err(AdminError::Invalid(p)) =
            admin.set_app_credentials(&server.live(), id, &input).await
        else {
            panic!("accepted")
        };
        assert_eq!(
            p.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                AppProblem::Tenant.to_string(),
                AppProblem::SecretIsId.to_string(),
                AppProblem::Expiry.to_string()
            ]
        );
        input.tenant = Some("contoso.onmicrosoft.com".into());
        input.credential = CredentialInput::MicrosoftSecret {
            secret: Some("Abc8Q~very.secret.value".into()),
            expires: Some("2030-01-31".into()),
        };
        let a = admin
            .set_app_credentials(&server.live(), id, &input)
            .await
            .unwrap();
        assert!(a.has_client_secret);
        assert_eq!(
            a.endpoint.as_deref(),
            Some("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0")
        );
        assert_eq!(a.credential_expires_at, parse_date("2030-01-31"));
        let sealed = store
            .sealed_secrets(id)
            .await
            .unwrap()
            .client_secret
            .unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("very.secret"));
        let audit = store.audit_entries(10, 0).await.unwrap();
        let text = format!("{audit:?}");
        assert!(text.contains("audit-app-credentials"), "{text}");
        assert!(!text.contains("very.secret"), "{text}");
    }

    #[tokio::test]
    async fn a_network_admin_may_not_touch_a_google_service_account() {
        let (dir, store) = testing::store().await;
        let server = Server::new(dir.path(), &store);
        let id = app_account(
            &store,
            Provider::Google,
            CredentialKind::GoogleServiceAccount,
        )
        .await;
        let admin = testing::admin(&store, Role::NetworkAdmin);
        let input = AppInput {
            credential: CredentialInput::GoogleServiceAccount {
                key_json: Some(b"{}".to_vec()),
            },
            ..Default::default()
        };
        assert!(matches!(
            admin.set_app_credentials(&server.live(), id, &input).await,
            Err(AdminError::Forbidden)
        ));
        let admin = testing::admin(&store, Role::Administrator);
        assert!(testing::refused_for(
            admin.set_app_credentials(&server.live(), id, &input).await,
            |p| matches!(
                p,
                Problem::App(AppProblem::Credential(CredentialError::NotServiceAccount))
            )
        ));
    }
}
