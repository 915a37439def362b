//! An account's settings and authorization: Basic Settings (validated;
//! switching off or pointing at another tenant or client discards the
//! tokens, as the seed's note says), E-mail Settings, the connection check,
//! a new device code, Google's authorization URL and code, Refresh Token
//! Now, and Send Test E-mail.

use super::{Admin, AdminError, Live, Problem};
use crate::i18n::{Reason, Tr};
use crate::provider::Provider;
use crate::queue::JobStore as _;
use crate::roles::Permission;
use crate::store::accounts::{Account, BasicSettings, EmailSettings};
use crate::store::audit::Action;
use crate::tokens::{DeviceCode, GoogleAuthorization, validate_microsoft_endpoint};

/// Basic Settings as entered, before validation.
#[derive(Debug, Clone, Default)]
pub struct BasicInput {
    pub enabled: bool,
    pub verify_cert: bool,
    pub verify_cn: bool,
    pub endpoint: Option<String>,
    pub client_id: Option<String>,
    /// Google only; empty or absent keeps the stored secret.
    pub client_secret: Option<String>,
}

impl BasicInput {
    /// What the store keeps: CN verification only with certificate
    /// verification, the secret sealed.
    fn settings(&self, sealed_secret: Option<Vec<u8>>) -> BasicSettings {
        BasicSettings {
            enabled: self.enabled,
            verify_cert: self.verify_cert,
            verify_cn: self.verify_cn && self.verify_cert,
            endpoint: self.endpoint.clone(),
            client_id: self.client_id.clone(),
            client_secret: sealed_secret,
        }
    }
}

/// Checks Basic Settings against the stored account; returns the endpoint
/// and client id to store (a missing one keeps the stored value).
fn validate_basic(
    provider: Provider,
    input: &BasicInput,
    account: &Account,
) -> Result<(Option<String>, Option<String>), Vec<Problem>> {
    let mut problems = Vec::new();
    let mut endpoint = None;
    let mut client_id = input.client_id.clone();
    match provider {
        Provider::Microsoft => {
            match input.endpoint.as_deref() {
                Some(text) => match validate_microsoft_endpoint(text) {
                    Ok(check) => endpoint = Some(check.normalized),
                    Err(reason) => problems.push(Problem::Endpoint(reason)),
                },
                None if input.enabled => problems.push(Problem::EndpointMissing),
                None => endpoint = account.endpoint.clone(),
            }
            if input.enabled && client_id.is_none() {
                problems.push(Problem::MicrosoftClientIdMissing);
            }
        }
        Provider::Google => {
            if input.enabled && client_id.is_none() {
                problems.push(Problem::GoogleClientIdMissing);
            }
            if input.enabled && input.client_secret.is_none() && !account.has_client_secret {
                problems.push(Problem::GoogleClientSecretMissing);
            }
            if let Some(id) = &client_id
                && (id.contains(char::is_whitespace) || id.len() > 256)
            {
                problems.push(Problem::ClientIdSpaces);
            }
        }
    }
    if let Some(id) = &client_id {
        if id.len() > 256 || id.chars().any(|c| c.is_control()) {
            problems.push(Problem::ClientIdInvalid);
        }
    } else {
        client_id = account.client_id.clone();
    }
    if problems.is_empty() {
        Ok((endpoint, client_id))
    } else {
        Err(problems)
    }
}

/// E-mail Settings as entered, before validation.
#[derive(Debug, Clone, Default)]
pub struct EmailInput {
    pub smtp_host: String,
    pub smtp_port: String,
    pub smtp_security: String,
    pub sender: String,
    pub is_default: bool,
}

/// Validates E-mail Settings; each problem says what to correct.
fn validate_email(input: &EmailInput) -> Result<EmailSettings, Vec<Problem>> {
    let mut problems = Vec::new();
    let host = input.smtp_host.trim().to_ascii_lowercase();
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !host_ok && host.parse::<std::net::IpAddr>().is_err() {
        problems.push(Problem::SmtpHost(host.clone()));
    }
    let port = match input.smtp_port.trim().parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            problems.push(Problem::SmtpPort);
            0
        }
    };
    if !matches!(input.smtp_security.as_str(), "starttls" | "implicit") {
        problems.push(Problem::SmtpSecurity);
    }
    let sender = input.sender.trim();
    if !sender.is_empty()
        && (!sender.contains('@')
            || sender
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>'))
    {
        problems.push(Problem::Sender(sender.to_string()));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(EmailSettings {
        smtp_host: host,
        smtp_port: port,
        smtp_security: input.smtp_security.clone(),
        sender: Some(sender.to_string()).filter(|s| !s.is_empty()),
        is_default: input.is_default,
    })
}

impl Admin<'_> {
    /// The default delegated account of `provider` (the one the printer
    /// manual's pages and the old API routes name), after checking that the
    /// actor may manage it (the seed: Google is the Administrator's).
    pub async fn default_account(&self, provider: Provider) -> Result<i64, AdminError> {
        self.require(Permission::manage(provider))?;
        Ok(self.store.account_for(provider).await?.id)
    }

    /// Account `id`, after checking that the actor may manage it.
    async fn managed_account(&self, id: i64) -> Result<Account, AdminError> {
        self.manageable_account(id).await
    }

    /// The enabled account `id`, for starting an authorization.
    async fn enabled_account(&self, id: i64) -> Result<Account, AdminError> {
        let account = self.managed_account(id).await?;
        if !account.enabled {
            return Err(AdminError::invalid(match account.provider {
                Provider::Microsoft => Problem::MicrosoftOff,
                Provider::Google => Problem::GoogleOff,
            }));
        }
        Ok(account)
    }

    /// Validates and saves Basic Settings; returns the account as saved.
    pub async fn save_basic(
        &self,
        live: &Live<'_>,
        id: i64,
        input: &BasicInput,
    ) -> Result<Account, AdminError> {
        let account = self.managed_account(id).await?;
        let provider = account.provider;
        let (endpoint, client_id) =
            validate_basic(provider, input, &account).map_err(AdminError::Invalid)?;
        let sealed = match &input.client_secret {
            Some(secret) if provider == Provider::Google => Some(
                live.key
                    .seal_str(&format!("account:{}:client_secret", account.id), secret)?,
            ),
            _ => None,
        };
        let changed_identity =
            account.endpoint != endpoint || account.client_id != client_id || sealed.is_some();
        // Switching off, or pointing at another tenant or client, ends the old
        // authorization: the seed requires the setup to be done again.
        let reset = (!input.enabled && account.enabled)
            || (changed_identity && account.token_status != "not_registered");
        if reset
            && account.has_refresh_token
            && let Err(e) = live.tokens.disable(account.id).await
        {
            tracing::warn!(account = account.id, error = %e, "discarding the tokens did not fully succeed");
        }
        let input = BasicInput {
            endpoint,
            client_id,
            ..input.clone()
        };
        self.store
            .save_basic_settings(
                account.id,
                &input.settings(sealed),
                reset || !input.enabled,
                self.clock.unix(),
            )
            .await?;
        // Settings are arguments (`true`, a URL, `changed`): each language
        // words them.
        let detail = Reason::new("audit-basic-settings")
            .arg("provider", provider.as_str())
            .arg("enabled", input.enabled)
            .arg("verify_cert", input.verify_cert)
            .arg("verify_cn", input.verify_cn && input.verify_cert)
            .arg("endpoint", input.endpoint.as_deref().unwrap_or("-"))
            .arg("client_id", input.client_id.as_deref().unwrap_or("-"))
            .arg(
                "secret",
                if input.client_secret.is_some() {
                    "changed"
                } else {
                    "kept"
                },
            )
            .arg("tokens", if reset { "discarded" } else { "kept" });
        self.audit(Action::OauthBasicSettings, detail).await;
        Ok(self.store.account(account.id).await?)
    }

    /// Validates and saves E-mail Settings; returns the account as saved.
    pub async fn save_email(&self, id: i64, input: &EmailInput) -> Result<Account, AdminError> {
        self.require(Permission::ManageEmail)?;
        let account = self.managed_account(id).await?;
        let provider = account.provider;
        let settings = validate_email(input).map_err(AdminError::Invalid)?;
        self.store
            .save_email_settings(account.id, &settings, self.clock.unix())
            .await?;
        self.audit(
            Action::EmailSettings,
            Reason::new("audit-email-settings")
                .arg("provider", provider.as_str())
                .arg("host", &settings.smtp_host)
                .arg("port", settings.smtp_port)
                .arg("security", &settings.smtp_security)
                .arg("sender", settings.sender.as_deref().unwrap_or("-"))
                .arg("default", settings.is_default),
        )
        .await;
        Ok(self.store.account(account.id).await?)
    }

    /// The seed's Refresh button: checks the connection (which, for
    /// Microsoft, requests a device code once it succeeds).
    pub async fn check_connection(&self, live: &Live<'_>, id: i64) -> Result<Account, AdminError> {
        let account = self.managed_account(id).await?;
        let provider = account.provider;
        if account.enabled {
            live.tokens.check_connection(account.id).await?;
        }
        self.audit(
            Action::OauthConnectionCheck,
            Reason::new("audit-provider").arg("provider", provider.as_str()),
        )
        .await;
        Ok(self.store.account(account.id).await?)
    }

    /// Refresh Token Now.
    pub async fn refresh_token(&self, live: &Live<'_>, id: i64) -> Result<(), AdminError> {
        let account = self.managed_account(id).await?;
        Ok(live.tokens.force_refresh(account.id).await?)
    }

    /// A new Microsoft device code (user code).
    pub async fn new_device_code(
        &self,
        live: &Live<'_>,
        id: i64,
    ) -> Result<DeviceCode, AdminError> {
        let account = self.enabled_account(id).await?;
        if account.provider != Provider::Microsoft {
            return Err(Problem::UnknownProvider(account.provider.as_str().into()).into());
        }
        let code = live.tokens.start_device_authorization(account.id).await?;
        self.audit(Action::OauthDeviceCode, Reason::new("audit-device-code"))
            .await;
        Ok(code)
    }

    /// A new Google authorization URL; returns the account it is for too.
    pub async fn google_authorization(
        &self,
        live: &Live<'_>,
        id: i64,
    ) -> Result<(i64, GoogleAuthorization), AdminError> {
        let account = self.enabled_account(id).await?;
        if account.provider != Provider::Google {
            return Err(Problem::UnknownProvider(account.provider.as_str().into()).into());
        }
        let auth = live.tokens.google_authorization_url(account.id).await?;
        self.audit(Action::OauthGoogleRegister, Reason::new("audit-google-url"))
            .await;
        Ok((account.id, auth))
    }

    /// The authorization code (or the address it came back on) pasted from
    /// Google; returns the authorized account.
    pub async fn google_code(
        &self,
        live: &Live<'_>,
        id: i64,
        pasted: &str,
    ) -> Result<Account, AdminError> {
        let account = self.managed_account(id).await?;
        match live.tokens.google_submit_code(account.id, pasted).await {
            Ok(()) => {
                self.audit(
                    Action::OauthGoogleAuthorized,
                    Reason::new("audit-google-code"),
                )
                .await;
                Ok(self.store.account(account.id).await?)
            }
            Err(e) => {
                // The refusal has no code of its own yet: its English.
                self.audit(
                    Action::OauthGoogleCodeRefused,
                    Reason::new("audit-google-code-refused").nested("error", Reason::text(&e)),
                )
                .await;
                Err(e.into())
            }
        }
    }

    /// Send Test E-mail: queues a short message from the account's mailbox
    /// to `to`, through that account, written in the language of `tr` (the
    /// administrator's page). Returns the job id.
    pub async fn send_test(
        &self,
        live: &Live<'_>,
        id: i64,
        to: &str,
        tr: &Tr,
    ) -> Result<String, AdminError> {
        use crate::intake::local;
        let a = self.managed_account(id).await?;
        let provider = a.provider;
        let Some(mailbox) = a.mailbox.clone().filter(|_| a.token_status == "active") else {
            return Err(Problem::TokenNotActive.into());
        };
        let to = local::check_address(to).map_err(Problem::Message)?;
        let from = a.sender.clone().unwrap_or(mailbox);
        let label = format!(
            "OAuth 2.0 ({})",
            tr.t(&format!("provider-{}", provider.as_str()))
        );
        let request = local::SendRequest {
            from: from.clone(),
            to: vec![to.clone()],
            subject: tr.args("test-email-subject", &[("account", label.clone())]),
            body: format!(
                "{}\r\n{}\r\n",
                tr.args(
                    "test-email-body",
                    &[("account", label), ("from", from.clone())]
                ),
                tr.t("test-email-body-works")
            ),
            ..Default::default()
        };
        // A short text message: no attachment to size.
        let message = local::build_message(&request, usize::MAX).map_err(Problem::Message)?;
        let job = crate::intake::store_sink::new_job(
            &format!("test:{}", self.actor.name),
            &self.actor.source,
            Some(a.id),
            &from,
            vec![to.clone()],
            message,
        );
        self.store.enqueue(&job, self.clock.unix()).await?;
        (live.wake)();
        self.audit(
            Action::SendTest,
            Reason::new("audit-send-test")
                .arg("provider", provider.as_str())
                .arg("to", &to)
                .arg("job", &job.id),
        )
        .await;
        Ok(job.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::testing;
    use crate::roles::Role;

    async fn id(store: &crate::store::Store, p: Provider) -> i64 {
        store.account_for(p).await.expect("account").id
    }

    fn email(host: &str, port: &str, security: &str, sender: &str) -> EmailInput {
        EmailInput {
            smtp_host: host.into(),
            smtp_port: port.into(),
            smtp_security: security.into(),
            sender: sender.into(),
            is_default: false,
        }
    }

    #[test]
    fn email_settings_are_checked() {
        let ok =
            validate_email(&email(" SMTP.Office365.com ", "587", "starttls", "")).expect("valid");
        assert_eq!(ok.smtp_host, "smtp.office365.com");
        assert_eq!(ok.sender, None);
        let bad = validate_email(&email("a b", "0", "ssl", "nobody")).expect_err("invalid");
        assert!(matches!(
            bad[..],
            [
                Problem::SmtpHost(_),
                Problem::SmtpPort,
                Problem::SmtpSecurity,
                Problem::Sender(_)
            ]
        ));
    }

    #[tokio::test]
    async fn basic_settings_are_checked() {
        let (_dir, store) = testing::store().await;
        let ms = store
            .account_for(Provider::Microsoft)
            .await
            .expect("account");
        let on = BasicInput {
            enabled: true,
            ..Default::default()
        };
        let problems = validate_basic(Provider::Microsoft, &on, &ms).expect_err("invalid");
        assert!(matches!(
            problems[..],
            [Problem::EndpointMissing, Problem::MicrosoftClientIdMissing]
        ));
        let google = store.account_for(Provider::Google).await.expect("account");
        let spaced = BasicInput {
            client_id: Some("a b".into()),
            ..on
        };
        let problems = validate_basic(Provider::Google, &spaced, &google).expect_err("invalid");
        assert!(matches!(
            problems[..],
            [Problem::GoogleClientSecretMissing, Problem::ClientIdSpaces]
        ));
    }

    #[tokio::test]
    async fn google_is_the_administrators() {
        let (_dir, store) = testing::store().await;
        let network = testing::admin(&store, Role::NetworkAdmin);
        let input = email("smtp.gmail.com", "587", "starttls", "");
        assert!(matches!(
            network
                .save_email(id(&store, Provider::Google).await, &input)
                .await,
            Err(AdminError::Forbidden)
        ));
        network
            .save_email(
                id(&store, Provider::Microsoft).await,
                &email("smtp.office365.com", "587", "starttls", ""),
            )
            .await
            .expect("NetworkAdmin manages Microsoft");
        let user = testing::admin(&store, Role::GeneralUser);
        assert!(matches!(
            user.save_email(id(&store, Provider::Microsoft).await, &input)
                .await,
            Err(AdminError::Forbidden)
        ));
        let entries = store.audit_entries(10, 0).await.expect("audit");
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].detail.to_string(),
            "microsoft: smtp.office365.com:587 starttls sender=- default=false"
        );
    }

    #[tokio::test]
    async fn changes_of_an_account_check_the_role_first() {
        let (dir, store) = testing::store().await;
        let server = testing::Server::new(dir.path(), &store);
        let live = server.live();
        let network = testing::admin(&store, Role::NetworkAdmin);
        let google = BasicInput {
            enabled: true,
            client_id: Some("id".into()),
            client_secret: Some("secret".into()),
            ..Default::default()
        };
        assert!(matches!(
            network
                .save_basic(&live, id(&store, Provider::Google).await, &google)
                .await,
            Err(AdminError::Forbidden)
        ));
        assert!(matches!(
            network
                .google_authorization(&live, id(&store, Provider::Google).await)
                .await,
            Err(AdminError::Forbidden)
        ));
        assert!(matches!(
            network
                .send_test(
                    &live,
                    id(&store, Provider::Google).await,
                    "a@example.com",
                    &Tr::new(crate::i18n::Locale::En)
                )
                .await,
            Err(AdminError::Forbidden)
        ));
        let user = testing::admin(&store, Role::GeneralUser);
        assert!(matches!(
            user.check_connection(&live, id(&store, Provider::Microsoft).await)
                .await,
            Err(AdminError::Forbidden)
        ));
        // Refused before anything is stored or sealed.
        let g = store.account_for(Provider::Google).await.expect("account");
        assert!(!g.enabled && !g.has_client_secret);
        assert!(store.audit_entries(10, 0).await.expect("audit").is_empty());
    }

    #[tokio::test]
    async fn authorization_needs_the_account_on_and_a_test_an_active_token() {
        let (dir, store) = testing::store().await;
        let server = testing::Server::new(dir.path(), &store);
        let live = server.live();
        let network = testing::admin(&store, Role::NetworkAdmin);
        assert!(testing::refused_for(
            network
                .new_device_code(&live, id(&store, Provider::Microsoft).await)
                .await,
            |p| matches!(p, Problem::MicrosoftOff)
        ));
        assert!(testing::refused_for(
            network
                .send_test(
                    &live,
                    id(&store, Provider::Microsoft).await,
                    "a@example.com",
                    &Tr::new(crate::i18n::Locale::En)
                )
                .await,
            |p| matches!(p, Problem::TokenNotActive)
        ));
        let admin = testing::admin(&store, Role::Administrator);
        assert!(testing::refused_for(
            admin
                .google_authorization(&live, id(&store, Provider::Google).await)
                .await,
            |p| matches!(p, Problem::GoogleOff)
        ));
    }

    #[tokio::test]
    async fn a_google_secret_is_sealed_and_kept_out_of_the_audit_log() {
        let (dir, store) = testing::store().await;
        let server = testing::Server::new(dir.path(), &store);
        let live = server.live();
        let admin = testing::admin(&store, Role::Administrator);
        let input = BasicInput {
            enabled: true,
            verify_cert: true,
            verify_cn: true,
            client_id: Some("client.apps.googleusercontent.com".into()),
            client_secret: Some("very secret".into()),
            ..Default::default()
        };
        let saved = admin
            .save_basic(&live, id(&store, Provider::Google).await, &input)
            .await
            .expect("saved");
        assert!(saved.enabled && saved.has_client_secret);
        let entries = store.audit_entries(10, 0).await.expect("audit");
        assert_eq!(
            entries[0].detail.to_string(),
            "google: enabled=true verify_cert=true verify_cn=true endpoint=- \
             client_id=client.apps.googleusercontent.com client_secret=(changed)"
        );
        assert!(!entries[0].detail.to_json().contains("very secret"));
    }
}
