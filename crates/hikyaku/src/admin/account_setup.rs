//! Accounts as objects: add, change the account-level settings (name, cloud
//! and its overrides, send-as list, limits, enabled) and delete (the caller
//! chooses what becomes of the jobs still waiting). The printer manual's
//! screens (Basic and E-mail Settings, authorization) are `accounts.rs`.
//!
//! Roles as the manual says: a Microsoft account is the Administrator's or
//! the NetworkAdmin's, a Google account only the Administrator's.

use super::{Admin, AdminError, Live, Problem};
use crate::cloud::Cloud;
use crate::i18n::Reason;
use crate::provider::Provider;
use crate::roles::Permission;
use crate::store::accounts::{
    Account, AccountSettings, CredentialKind, JobsOnDelete, NewAccount, Transport,
};
use crate::store::audit::Action;
use crate::tokens::validate_microsoft_endpoint;

/// Longest account name.
const NAME_MAX: usize = 64;
/// Most entries of a send-as list.
const SEND_AS_MAX: usize = 200;
/// Highest rate per minute and connection cap an account may be given.
const RATE_MAX: u32 = 100_000;
const CONNECTIONS_MAX: u32 = 100;

/// An account as the add or edit form (or the API, or the CLI) gives it.
/// Empty texts mean "not given": the cloud's preset, no limit of its own.
#[derive(Debug, Clone, Default)]
pub struct AccountInput {
    pub name: String,
    /// `microsoft` or `google` (only when adding).
    pub provider: String,
    /// Empty: worldwide.
    pub cloud: String,
    /// Empty: delegated (only when adding).
    pub credential_kind: String,
    /// App-only: the mailbox to send as (only when adding).
    pub mailbox: String,
    /// Microsoft: the authorization server endpoint; empty takes the cloud's.
    pub endpoint: String,
    pub smtp_host: String,
    pub smtp_scope: String,
    pub graph_host: String,
    /// Exact addresses and `@domain` entries, separated by commas, spaces or
    /// line breaks.
    pub send_as: String,
    pub rate_per_minute: String,
    pub max_connections: String,
    pub enabled: bool,
    /// `smtp`, `graph` or `gmail_api`; empty keeps the account's (new: smtp).
    pub transport: String,
    /// Microsoft, delegated Graph: also request `Mail.ReadWrite`, so that
    /// messages over about 3 MB go through a draft.
    pub graph_large_messages: bool,
}

/// Whether `host` is a DNS name or an IP address.
pub(crate) fn valid_host(host: &str) -> bool {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    ok || host.parse::<std::net::IpAddr>().is_ok()
}

/// A host with an optional `:port`.
fn valid_api_host(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            valid_host(host) && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        _ => valid_host(text),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= NAME_MAX
        && !name.chars().any(|c| c.is_control())
        && name.trim() == name
        // A name of digits only would read as an id in the CLI and forms.
        && !name.chars().all(|c| c.is_ascii_digit())
}

fn valid_address(a: &str) -> bool {
    crate::address::is_safe_address(a) && a.contains('@')
}

/// Splits and checks a send-as list; entries are kept in lower case.
fn parse_send_as(text: &str, problems: &mut Vec<Problem>) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    for entry in text
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|e| !e.is_empty())
    {
        let entry = entry.to_ascii_lowercase();
        let ok = match entry.strip_prefix('@') {
            Some(domain) => valid_host(domain) && domain.contains('.'),
            None => valid_address(&entry),
        };
        if !ok {
            problems.push(Problem::SendAsInvalid(entry));
        } else if !list.contains(&entry) {
            list.push(entry);
        }
    }
    if list.len() > SEND_AS_MAX {
        problems.push(Problem::SendAsTooMany { limit: SEND_AS_MAX });
    }
    list
}

fn parse_limit(text: &str, max: u32, problem: Problem, problems: &mut Vec<Problem>) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Some(n),
        _ => {
            problems.push(problem);
            None
        }
    }
}

fn optional(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|s| !s.is_empty())
}

/// Checks the account-level settings of `input` for an account of
/// `provider`. `old`: the account as stored (when editing), whose values
/// still equal its old cloud's presets follow a change of cloud.
fn validate(
    provider: Provider,
    input: &AccountInput,
    old: Option<&Account>,
) -> Result<AccountSettings, Vec<Problem>> {
    let mut problems = Vec::new();
    let name = input.name.trim().to_string();
    // The limit holds for the name as sent too (the API's schema says so),
    // not only once the spaces around it are gone.
    if input.name.chars().count() > NAME_MAX || !valid_name(&name) {
        problems.push(Problem::AccountNameInvalid);
    }
    let cloud = match input.cloud.trim() {
        "" => old.map_or(Cloud::Worldwide, |a| a.cloud),
        text => Cloud::parse(text).unwrap_or_else(|| {
            problems.push(Problem::UnknownCloud(text.to_string()));
            Cloud::Worldwide
        }),
    };
    if !Cloud::offered_by(provider).contains(&cloud) {
        problems.push(Problem::CloudNotOffered(cloud.as_str().to_string()));
    }
    let preset = cloud.preset(provider);
    // A value left at the old cloud's preset is no override: it follows
    // the cloud.
    let old_preset = old.map(|a| (a.cloud.preset(provider), a.cloud));
    let follows = |given: &str, old_value: Option<&str>| -> bool {
        given.is_empty() || old_value.is_some_and(|v| v == given)
    };
    let endpoint = match provider {
        Provider::Microsoft => {
            let given = input.endpoint.trim();
            let old_default = old_preset.map(|(_, c)| c.microsoft_endpoint("common"));
            if follows(given, old_default.as_deref()) {
                Some(cloud.microsoft_endpoint("common"))
            } else {
                match validate_microsoft_endpoint(given) {
                    Ok(check) => Some(check.normalized),
                    Err(reason) => {
                        problems.push(Problem::Endpoint(reason));
                        None
                    }
                }
            }
        }
        Provider::Google => None,
    };
    let given_host = input.smtp_host.trim().to_ascii_lowercase();
    let smtp_host = if follows(&given_host, old_preset.map(|(p, _)| p.smtp_host)) {
        preset.smtp_host.to_string()
    } else {
        if !valid_host(&given_host) {
            problems.push(Problem::SmtpHost(given_host.clone()));
        }
        given_host
    };
    let smtp_scope = optional(&input.smtp_scope)
        .filter(|s| Some(s.as_str()) != old_preset.map(|(p, _)| p.smtp_scope_delegated));
    if let Some(scope) = &smtp_scope
        && (scope.len() > 256 || scope.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        problems.push(Problem::SmtpScopeInvalid);
    }
    let graph_host = optional(&input.graph_host)
        .map(|h| h.to_ascii_lowercase())
        .filter(|h| Some(h.as_str()) != old_preset.map(|(p, _)| p.api_host));
    // A port is allowed: an API behind another port (a gateway, tests).
    if let Some(host) = &graph_host
        && !valid_api_host(host)
    {
        problems.push(Problem::GraphHostInvalid(host.clone()));
    }
    let transport = match input.transport.trim() {
        "" => old.map_or(Transport::Smtp, |a| a.transport),
        text => Transport::parse(text).unwrap_or_else(|| {
            problems.push(Problem::UnknownTransport(text.to_string()));
            Transport::Smtp
        }),
    };
    if !transport.fits(provider) {
        problems.push(Problem::TransportNotFor(transport.as_str().to_string()));
    }
    if input.graph_large_messages && provider != Provider::Microsoft {
        problems.push(Problem::GraphLargeNotFor);
    }
    let send_as = parse_send_as(&input.send_as, &mut problems);
    let rate_per_minute = parse_limit(
        &input.rate_per_minute,
        RATE_MAX,
        Problem::RateInvalid { max: RATE_MAX },
        &mut problems,
    );
    let max_connections = parse_limit(
        &input.max_connections,
        CONNECTIONS_MAX,
        Problem::ConnectionsInvalid {
            max: CONNECTIONS_MAX,
        },
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(AccountSettings {
        name,
        cloud,
        endpoint,
        smtp_host,
        smtp_scope,
        graph_host,
        send_as,
        rate_per_minute,
        max_connections,
        enabled: input.enabled,
        transport,
        graph_large_messages: input.graph_large_messages,
    })
}

/// The audit detail of an account's settings (no secrets: there are none here).
fn settings_detail(code: &str, provider: Provider, s: &AccountSettings) -> Reason {
    let limit = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
    Reason::new(code)
        .arg("name", &s.name)
        .arg("provider", provider.as_str())
        .arg("cloud", s.cloud.as_str())
        .arg("enabled", s.enabled)
        .arg("send_as", s.send_as.join(" "))
        .arg("rate", limit(s.rate_per_minute))
        .arg("connections", limit(s.max_connections))
        .arg("transport", s.transport.as_str())
        .arg("graph_large_messages", s.graph_large_messages)
}

impl Admin<'_> {
    /// The account `id` after checking that the actor may manage it.
    pub async fn manageable_account(&self, id: i64) -> Result<Account, AdminError> {
        let a = self.store.account(id).await?;
        self.require(Permission::manage(a.provider))?;
        Ok(a)
    }

    /// The account a person names: its id, its name, or `microsoft` /
    /// `google` for that provider's default delegated account.
    pub async fn find_account(&self, text: &str) -> Result<Account, AdminError> {
        let text = text.trim();
        if let Ok(id) = text.parse::<i64>() {
            return match self.store.account(id).await {
                Ok(a) => Ok(a),
                Err(crate::store::StoreError::NotFound) => {
                    Err(Problem::UnknownAccount(text.to_string()).into())
                }
                Err(e) => Err(e.into()),
            };
        }
        match self.store.account_by_name(text).await {
            Ok(a) => return Ok(a),
            Err(crate::store::StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        // A provider names its default delegated account, when one is left.
        match Provider::parse(text).map(|p| self.store.account_for(p)) {
            Some(found) => match found.await {
                Ok(a) => Ok(a),
                Err(crate::store::StoreError::NotFound) => {
                    Err(Problem::UnknownAccount(text.to_string()).into())
                }
                Err(e) => Err(e.into()),
            },
            None => Err(Problem::UnknownAccount(text.to_string()).into()),
        }
    }

    /// Adds an account; returns it as stored.
    pub async fn add_account(&self, input: &AccountInput) -> Result<Account, AdminError> {
        let provider = Provider::parse(input.provider.trim())
            .ok_or_else(|| Problem::UnknownProvider(input.provider.clone()))?;
        self.require(Permission::manage(provider))?;
        let kind = match input.credential_kind.trim() {
            "" => CredentialKind::Delegated,
            text => CredentialKind::parse(text)
                .ok_or_else(|| Problem::UnknownCredentialKind(text.to_string()))?,
        };
        let mut problems = Vec::new();
        if !kind.fits(provider) {
            problems.push(Problem::CredentialKindNotFor(kind.as_str().to_string()));
        }
        let mailbox = optional(&input.mailbox).map(|m| m.to_ascii_lowercase());
        match &mailbox {
            Some(m) if !valid_address(m) => problems.push(Problem::MailboxInvalid(m.clone())),
            None if kind.is_app_only() => problems.push(Problem::MailboxMissing),
            _ => {}
        }
        let settings = match validate(provider, input, None) {
            Ok(s) if problems.is_empty() => s,
            Ok(_) => return Err(AdminError::Invalid(problems)),
            Err(more) => {
                problems.extend(more);
                return Err(AdminError::Invalid(problems));
            }
        };
        let now = self.clock.unix();
        let id = self
            .store
            .create_account(
                &NewAccount {
                    provider,
                    name: settings.name.clone(),
                    cloud: settings.cloud,
                    credential_kind: kind,
                    mailbox,
                    enabled: settings.enabled,
                },
                now,
            )
            .await?;
        self.store.update_account(id, &settings, now).await?;
        self.audit(
            Action::AccountAdd,
            settings_detail("audit-account-add", provider, &settings).arg("kind", kind.as_str()),
        )
        .await;
        Ok(self.store.account(id).await?)
    }

    /// Changes the account-level settings of account `id`. A new cloud or
    /// authorization endpoint ends its delegated authorization: tokens of
    /// one cloud or tenant do not work in another.
    pub async fn update_account(
        &self,
        live: &Live<'_>,
        id: i64,
        input: &AccountInput,
    ) -> Result<Account, AdminError> {
        let a = self.manageable_account(id).await?;
        let settings = validate(a.provider, input, Some(&a)).map_err(AdminError::Invalid)?;
        let elsewhere = settings.cloud != a.cloud
            || (a.provider == Provider::Microsoft && settings.endpoint != a.endpoint)
            || settings.smtp_scope != a.smtp_scope;
        // Another transport needs a token for another scope: a person
        // authorizes again (delegated); app-only tokens are fetched anew.
        let transport_changed = settings.transport != a.transport;
        // So does Graph's Mail.ReadWrite for large messages, on or off: a
        // token keeps no permission the account no longer asks for.
        let large_changed = settings.graph_large_messages != a.graph_large_messages
            && settings.transport == Transport::Graph
            && !transport_changed;
        let elsewhere =
            elsewhere || ((transport_changed || large_changed) && !a.credential_kind.is_app_only());
        let reset =
            (elsewhere || (a.enabled && !settings.enabled)) && a.token_status != "not_registered";
        if reset && let Err(e) = live.tokens.disable(a.id).await {
            tracing::warn!(account = a.id, error = %e, "discarding the tokens did not fully succeed");
        }
        let settings = AccountSettings {
            // Google keeps what its Basic Settings hold.
            endpoint: settings.endpoint.clone().or(a.endpoint.clone()),
            ..settings
        };
        self.store
            .update_account(a.id, &settings, self.clock.unix())
            .await?;
        if reset {
            self.store.clear_tokens(a.id).await?;
        }
        if transport_changed && reset {
            // Token Status says why the authorization ended.
            let why = Reason::new("token-transport-changed")
                .arg("transport", settings.transport.as_str());
            self.store
                .set_token_status(a.id, "error", Some(&why), None)
                .await?;
        } else if large_changed && reset {
            let why = Reason::new(if settings.graph_large_messages {
                "token-graph-large-on"
            } else {
                "token-graph-large-off"
            });
            self.store
                .set_token_status(a.id, "error", Some(&why), None)
                .await?;
        } else if transport_changed
            && a.credential_kind.is_app_only()
            && settings.enabled
            && a.token_status == "active"
            && let Err(e) = live.tokens.force_refresh(a.id).await
        {
            // The status shows the provider's refusal of the new scope.
            tracing::warn!(account = a.id, error = %e, "no token for the new transport yet");
        }
        self.audit(
            Action::AccountUpdate,
            settings_detail("audit-account-update", a.provider, &settings)
                .arg("tokens", if reset { "discarded" } else { "kept" }),
        )
        .await;
        (live.wake)();
        Ok(self.store.account(a.id).await?)
    }

    /// Switches account `id` on or off, keeping every other setting.
    pub async fn set_account_enabled(
        &self,
        live: &Live<'_>,
        id: i64,
        enabled: bool,
    ) -> Result<Account, AdminError> {
        let a = self.manageable_account(id).await?;
        let input = input_of(&a, enabled);
        self.update_account(live, id, &input).await
    }

    /// Deletes account `id`. Jobs still waiting for it need a decision:
    /// `jobs` moves them to another account (which the actor must be
    /// allowed to manage) or fails them; without one the delete is refused
    /// and says how many wait. Returns how many jobs were moved or failed.
    pub async fn delete_account(
        &self,
        live: &Live<'_>,
        id: i64,
        jobs: Option<JobsOnDelete>,
    ) -> Result<u64, AdminError> {
        let a = self.manageable_account(id).await?;
        let waiting = self.store.pending_jobs_of(a.id).await?;
        let jobs = match jobs {
            Some(JobsOnDelete::Move(to)) => {
                if to == a.id {
                    return Err(Problem::MoveToSameAccount.into());
                }
                let target = match self.store.account(to).await {
                    Ok(t) => t,
                    Err(crate::store::StoreError::NotFound) => {
                        return Err(Problem::UnknownAccount(to.to_string()).into());
                    }
                    Err(e) => return Err(e.into()),
                };
                self.require(Permission::manage(target.provider))?;
                JobsOnDelete::Move(to)
            }
            Some(JobsOnDelete::Fail) => JobsOnDelete::Fail,
            None if waiting > 0 => {
                return Err(Problem::JobsWaiting { count: waiting }.into());
            }
            None => JobsOnDelete::Fail,
        };
        if a.token_status != "not_registered"
            && let Err(e) = live.tokens.disable(a.id).await
        {
            tracing::warn!(account = a.id, error = %e, "discarding the tokens did not fully succeed");
        }
        let failed = Reason::new("job-account-deleted").arg("name", &a.name);
        let changed = self
            .store
            .delete_account(a.id, jobs, &failed, self.clock.unix())
            .await?;
        let what = match jobs {
            JobsOnDelete::Move(to) => format!("moved:{to}"),
            JobsOnDelete::Fail => "failed".to_string(),
        };
        self.audit(
            Action::AccountDelete,
            Reason::new("audit-account-delete")
                .arg("name", &a.name)
                .arg("provider", a.provider.as_str())
                .arg("jobs", changed)
                .arg("disposal", what),
        )
        .await;
        (live.wake)();
        Ok(changed)
    }
}

/// The form input that saves `a` as it is (with `enabled` as given).
pub fn input_of(a: &Account, enabled: bool) -> AccountInput {
    AccountInput {
        name: a.name.clone(),
        provider: a.provider.as_str().to_string(),
        cloud: a.cloud.as_str().to_string(),
        credential_kind: a.credential_kind.as_str().to_string(),
        mailbox: a.mailbox.clone().unwrap_or_default(),
        endpoint: a.endpoint.clone().unwrap_or_default(),
        smtp_host: a.smtp_host.clone(),
        smtp_scope: a.smtp_scope.clone().unwrap_or_default(),
        graph_host: a.graph_host.clone().unwrap_or_default(),
        send_as: a.send_as.join("\n"),
        rate_per_minute: a.rate_per_minute.map(|n| n.to_string()).unwrap_or_default(),
        max_connections: a.max_connections.map(|n| n.to_string()).unwrap_or_default(),
        enabled,
        transport: a.transport.as_str().to_string(),
        graph_large_messages: a.graph_large_messages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::testing;
    use crate::queue::JobStore as _;
    use crate::roles::Role;

    fn input(provider: &str, name: &str) -> AccountInput {
        AccountInput {
            name: name.into(),
            provider: provider.into(),
            enabled: true,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn an_account_is_added_checked_changed_and_audited() {
        let (dir, store) = testing::store().await;
        let server = testing::Server::new(dir.path(), &store);
        let live = server.live();
        let admin = testing::admin(&store, Role::Administrator);
        let mut new = input("microsoft", "scans");
        new.cloud = "gcc_high".into();
        new.send_as = "Scan@Example.us, @corp.example.us scan@example.us".into();
        new.rate_per_minute = "10".into();
        let a = admin.add_account(&new).await.expect("added");
        assert_eq!(a.cloud, Cloud::GccHigh);
        assert_eq!(a.smtp_host, "smtp.office365.us");
        assert_eq!(
            a.endpoint.as_deref(),
            Some("https://login.microsoftonline.us/common/oauth2/v2.0")
        );
        assert_eq!(a.send_as, vec!["scan@example.us", "@corp.example.us"]);
        assert_eq!(a.rate_per_minute, Some(10));
        assert!(a.may_send_as("x@CORP.example.us") && !a.may_send_as("x@example.com"));
        // Back to worldwide: the values left at the GCC High presets follow.
        let mut edit = input_of(&a, true);
        edit.cloud = "worldwide".into();
        let b = admin
            .update_account(&live, a.id, &edit)
            .await
            .expect("saved");
        assert_eq!(b.smtp_host, "smtp.office365.com");
        assert_eq!(
            b.endpoint.as_deref(),
            Some(crate::provider::MICROSOFT_DEFAULT_ENDPOINT)
        );
        // Bad input: every problem at once, nothing stored.
        let mut bad = input("microsoft", " ");
        bad.send_as = "nobody, @".into();
        bad.rate_per_minute = "0".into();
        bad.cloud = "mars".into();
        let Err(AdminError::Invalid(problems)) = admin.add_account(&bad).await else {
            panic!("refused");
        };
        assert_eq!(problems.len(), 5, "{problems:?}");
        let mut google = input("google", "g2");
        google.cloud = "china".into();
        assert!(testing::refused_for(
            admin.add_account(&google).await,
            |p| { matches!(p, Problem::CloudNotOffered(_)) }
        ));
        assert!(matches!(
            admin.add_account(&input("microsoft", "scans")).await,
            Err(AdminError::Store(crate::store::StoreError::Conflict(_)))
        ));
        let entries = store.audit_entries(10, 0).await.expect("audit");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].action, "account_add");
        assert_eq!(entries[0].action, "account_update");
    }

    #[tokio::test]
    async fn google_accounts_are_the_administrators() {
        let (dir, store) = testing::store().await;
        let server = testing::Server::new(dir.path(), &store);
        let live = server.live();
        let network = testing::admin(&store, Role::NetworkAdmin);
        assert!(matches!(
            network.add_account(&input("google", "g2")).await,
            Err(AdminError::Forbidden)
        ));
        let google = store.account_for(Provider::Google).await.expect("google");
        assert!(matches!(
            network
                .update_account(&live, google.id, &input_of(&google, true))
                .await,
            Err(AdminError::Forbidden)
        ));
        assert!(matches!(
            network.delete_account(&live, google.id, None).await,
            Err(AdminError::Forbidden)
        ));
        let ms = network
            .add_account(&input("microsoft", "m2"))
            .await
            .expect("NetworkAdmin adds Microsoft accounts");
        // Nor may it move Microsoft's jobs onto the Google account.
        assert!(matches!(
            network
                .delete_account(&live, ms.id, Some(JobsOnDelete::Move(google.id)))
                .await,
            Err(AdminError::Forbidden)
        ));
        assert!(store.account(ms.id).await.is_ok());
    }

    #[tokio::test]
    async fn deleting_asks_about_waiting_jobs_then_moves_or_fails_them() {
        let (dir, store) = testing::store().await;
        let server = testing::Server::new(dir.path(), &store);
        let live = server.live();
        let admin = testing::admin(&store, Role::Administrator);
        let a = admin.add_account(&input("microsoft", "a")).await.unwrap();
        let b = admin.add_account(&input("microsoft", "b")).await.unwrap();
        let other = admin.add_account(&input("microsoft", "c")).await.unwrap();
        for account in [a.id, a.id, b.id] {
            let job = crate::intake::store_sink::new_job(
                "t",
                "test",
                Some(account),
                "x@example.com",
                vec!["y@example.com".into()],
                b"Subject: s\r\n\r\nbody\r\n".to_vec(),
            );
            store.enqueue(&job, 1).await.unwrap();
        }
        assert!(testing::refused_for(
            admin.delete_account(&live, a.id, None).await,
            |p| matches!(p, Problem::JobsWaiting { count: 2 })
        ));
        assert!(testing::refused_for(
            admin
                .delete_account(&live, a.id, Some(JobsOnDelete::Move(a.id)))
                .await,
            |p| matches!(p, Problem::MoveToSameAccount)
        ));
        let moved = admin
            .delete_account(&live, a.id, Some(JobsOnDelete::Move(other.id)))
            .await
            .unwrap();
        assert_eq!(moved, 2);
        assert_eq!(store.pending_jobs_of(other.id).await.unwrap(), 2);
        let failed = admin
            .delete_account(&live, b.id, Some(JobsOnDelete::Fail))
            .await
            .unwrap();
        assert_eq!(failed, 1);
        let counts = store.job_counts().await.unwrap();
        let failed_count = counts
            .iter()
            .find(|(s, _)| *s == crate::queue::JobState::Failed)
            .map(|(_, n)| *n);
        assert_eq!(failed_count, Some(1));
        assert!(store.account(a.id).await.is_err() && store.account(b.id).await.is_err());
    }
}
