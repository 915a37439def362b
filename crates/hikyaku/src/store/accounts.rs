//! Accounts: one configured sender each (provider, basic settings, connection
//! status, token status and the sealed tokens). Sealing and opening happen in
//! `tokens`; this module stores the blobs as they are given.

use super::sql::DbRow as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{Conflict, Result, Store, StoreError};
use crate::cloud::Cloud;
use crate::i18n::Reason;
use crate::provider::Provider;

/// How long a read of the accounts is reused at most. Writes through this
/// process invalidate it at once; the bound is for another process writing
/// the same database (`hikyaku oauth … login` while the server runs).
const CACHE_TTL: Duration = Duration::from_secs(1);

/// The accounts as last read. Delivery and the token service look at an
/// account for every message; the rows change rarely. Every write in this
/// module bumps the generation when it ends, and a read is reused only while
/// the generation it was taken under is still current, so a reader that raced
/// a write never keeps what it read.
#[derive(Debug, Default)]
pub(crate) struct AccountsCache {
    generation: AtomicU64,
    last: RwLock<Option<Snapshot>>,
}

#[derive(Debug)]
struct Snapshot {
    generation: u64,
    read_at: Instant,
    accounts: Arc<Vec<Account>>,
}

impl AccountsCache {
    fn get(&self) -> Option<Arc<Vec<Account>>> {
        let generation = self.generation.load(Ordering::Acquire);
        let last = self.last.read().ok()?;
        last.as_ref()
            .filter(|s| s.generation == generation && s.read_at.elapsed() < CACHE_TTL)
            .map(|s| s.accounts.clone())
    }

    fn put(&self, generation: u64, read_at: Instant, accounts: Arc<Vec<Account>>) {
        if let Ok(mut last) = self.last.write() {
            *last = Some(Snapshot {
                generation,
                read_at,
                accounts,
            });
        }
    }

    /// Held for the length of a write; its end invalidates every read.
    fn changing(&self) -> Changing<'_> {
        Changing(self)
    }
}

struct Changing<'a>(&'a AccountsCache);

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Gives a status kept in the store as its name: `as_str`, `Display`, and
/// comparison with that name.
macro_rules! stored_as_name {
    ($t:ident { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The name stored in the database and shown by the API.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $s,)*
                }
            }

            fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($s => Some($t::$v),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    };
}

/// Token status (the Remote UI's Token Status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// No authorization has been done (or it was switched off).
    NotRegistered,
    /// An authorization is running: a device code is shown, or a Google URL waits for its code.
    Authorizing,
    /// Tokens are stored and refresh works (稼働中).
    Active,
    /// The last authorization or refresh failed permanently; the reason says what to do.
    Error,
}

stored_as_name!(TokenStatus {
    NotRegistered => "not_registered",
    Authorizing => "authorizing",
    Active => "active",
    Error => "error",
});

impl TokenStatus {
    /// Reads the store's text; unknown values read as `Error` so that they are noticed.
    pub fn parse(text: &str) -> TokenStatus {
        TokenStatus::from_name(text).unwrap_or(TokenStatus::Error)
    }
}

/// Connection status (the Remote UI's result of Connection Check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    NotChecked,
    Successful,
    Failed,
}

stored_as_name!(ConnectionStatus {
    NotChecked => "not_checked",
    Successful => "successful",
    Failed => "failed",
});

impl ConnectionStatus {
    /// Reads the store's text; an unknown value reads as not checked (the
    /// next check writes a real one).
    pub fn parse(text: &str) -> ConnectionStatus {
        ConnectionStatus::from_name(text).unwrap_or(ConnectionStatus::NotChecked)
    }
}

/// How an account obtains its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A person signs in (the printer manual's flows): Microsoft device code,
    /// Google authorization code. A refresh token keeps it alive.
    Delegated,
    /// Microsoft client credentials grant with a client secret (app-only).
    MicrosoftSecret,
    /// Microsoft client credentials grant with a certificate (app-only).
    MicrosoftCertificate,
    /// Google service account with domain-wide delegation (app-only).
    GoogleServiceAccount,
}

stored_as_name!(CredentialKind {
    Delegated => "delegated",
    MicrosoftSecret => "microsoft_secret",
    MicrosoftCertificate => "microsoft_certificate",
    GoogleServiceAccount => "google_service_account",
});

impl CredentialKind {
    pub const ALL: [CredentialKind; 4] = [
        CredentialKind::Delegated,
        CredentialKind::MicrosoftSecret,
        CredentialKind::MicrosoftCertificate,
        CredentialKind::GoogleServiceAccount,
    ];

    /// Reads the store's text; `None` for a name this version does not know.
    pub fn parse(text: &str) -> Option<CredentialKind> {
        CredentialKind::from_name(text)
    }

    /// No person signs in and there is no refresh token.
    pub fn is_app_only(self) -> bool {
        self != CredentialKind::Delegated
    }

    /// Whether an account of `provider` may use this kind.
    pub fn fits(self, provider: Provider) -> bool {
        match self {
            CredentialKind::Delegated => true,
            CredentialKind::MicrosoftSecret | CredentialKind::MicrosoftCertificate => {
                provider == Provider::Microsoft
            }
            CredentialKind::GoogleServiceAccount => provider == Provider::Google,
        }
    }
}

/// The largest message one Graph `sendMail` request carries: its base64
/// must fit 4 MiB.
pub const GRAPH_MIME_MAX: usize = 4 * 1024 * 1024 / 4 * 3 - 64 * 1024;
/// The largest message hikyaku sends through a Graph draft.
pub const GRAPH_DRAFT_MAX: usize = 35 * 1024 * 1024;

/// How an account hands its messages to the provider.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// SMTP with XOAUTH2 (the printer manual's way).
    #[default]
    Smtp,
    /// Microsoft Graph `sendMail` over HTTPS (Microsoft accounts).
    Graph,
    /// The Gmail API `messages.send` over HTTPS (Google accounts).
    GmailApi,
}

stored_as_name!(Transport {
    Smtp => "smtp",
    Graph => "graph",
    GmailApi => "gmail_api",
});

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Smtp, Transport::Graph, Transport::GmailApi];

    /// Reads a name; `None` for one this version does not know.
    pub fn parse(text: &str) -> Option<Transport> {
        Transport::from_name(text)
    }

    /// The largest message this transport can carry, when it is smaller
    /// than what SMTP takes: Graph takes 35 MB through a draft with upload
    /// sessions (one `sendMail` request holds about 3 MB), the Gmail API
    /// 35 MiB.
    pub fn max_message_size(self) -> Option<usize> {
        match self {
            Transport::Smtp => None,
            Transport::Graph => Some(GRAPH_DRAFT_MAX),
            Transport::GmailApi => Some(35 * 1024 * 1024),
        }
    }

    /// Whether an account of `provider` may use this transport.
    pub fn fits(self, provider: Provider) -> bool {
        match self {
            Transport::Smtp => true,
            Transport::Graph => provider == Provider::Microsoft,
            Transport::GmailApi => provider == Provider::Google,
        }
    }

    /// The transports an account of `provider` may choose.
    pub fn offered_by(provider: Provider) -> [Transport; 2] {
        match provider {
            Provider::Microsoft => [Transport::Smtp, Transport::Graph],
            Provider::Google => [Transport::Smtp, Transport::GmailApi],
        }
    }
}

/// How the TLS of an account's upstream connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SmtpSecurity {
    /// Plain connection, then STARTTLS (required): the default.
    #[serde(rename = "starttls")]
    StartTls,
    /// TLS from the first byte (port 465).
    #[serde(rename = "implicit")]
    Implicit,
}

stored_as_name!(SmtpSecurity {
    StartTls => "starttls",
    Implicit => "implicit",
});

impl SmtpSecurity {
    /// The stored value: "implicit" (any case), else STARTTLS.
    pub fn parse(text: &str) -> SmtpSecurity {
        SmtpSecurity::from_name(&text.to_ascii_lowercase()).unwrap_or(SmtpSecurity::StartTls)
    }
}

/// An account as the pages and services read it. Secrets are not here: see
/// [`SealedSecrets`].
#[derive(Debug, Clone)]
pub struct Account {
    pub id: i64,
    pub provider: Provider,
    pub name: String,
    pub enabled: bool,
    pub verify_cert: bool,
    pub verify_cn: bool,
    pub endpoint: Option<String>,
    pub client_id: Option<String>,
    pub has_client_secret: bool,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_security: SmtpSecurity,
    pub sender: Option<String>,
    pub is_default: bool,
    pub connection_status: ConnectionStatus,
    pub connection_reason: Option<Reason>,
    pub connection_warning: Option<Reason>,
    pub connection_checked_at: Option<i64>,
    pub clock_skew_secs: Option<i64>,
    pub token_status: TokenStatus,
    pub token_reason: Option<Reason>,
    pub token_warning: Option<Reason>,
    pub mailbox: Option<String>,
    pub identity_verified: Option<bool>,
    pub access_expires_at: Option<i64>,
    pub last_refreshed_at: Option<i64>,
    pub authorized_at: Option<i64>,
    pub has_refresh_token: bool,
    pub has_authorization: bool,
    pub updated_at: i64,
    /// Endpoint presets (see [`Cloud::preset`]); `smtp_scope` and
    /// `graph_host` override them when set.
    pub cloud: Cloud,
    pub credential_kind: CredentialKind,
    pub smtp_scope: Option<String>,
    pub graph_host: Option<String>,
    /// Exact addresses and `@domain` entries this account may send as.
    pub send_as: Vec<String>,
    /// Per-mailbox limits; `None` takes the configured default.
    pub rate_per_minute: Option<u32>,
    pub max_connections: Option<u32>,
    /// App-only: a certificate (public, DER) and a sealed private key are stored.
    pub has_certificate: bool,
    pub has_private_key: bool,
    pub has_service_account_key: bool,
    pub service_account_email: Option<String>,
    /// App-only: when the secret or certificate stops working.
    pub credential_expires_at: Option<i64>,
    /// SMTP, Graph or the Gmail API.
    pub transport: Transport,
    /// Delegated Graph: the administrator chose to also request
    /// `Mail.ReadWrite`, so that messages over one `sendMail` request go
    /// through a draft (off by default: least privilege).
    pub graph_large_messages: bool,
    /// The scopes the provider granted at the last authorization, as it
    /// listed them (space-separated); `None` before one.
    pub granted_scope: Option<String>,
}

/// The sealed columns of an account.
#[derive(Debug, Clone, Default)]
pub struct SealedSecrets {
    pub client_secret: Option<Vec<u8>>,
    pub refresh_token: Option<Vec<u8>>,
    pub access_token: Option<Vec<u8>>,
    pub authorization: Option<Vec<u8>>,
    pub private_key: Option<Vec<u8>>,
    pub service_account_key: Option<Vec<u8>>,
}

/// What the Edit Basic Settings page saves.
#[derive(Debug, Clone)]
pub struct BasicSettings {
    pub enabled: bool,
    pub verify_cert: bool,
    pub verify_cn: bool,
    pub endpoint: Option<String>,
    pub client_id: Option<String>,
    /// `Some` replaces the stored secret; `None` keeps it.
    pub client_secret: Option<Vec<u8>>,
}

/// What the E-mail Settings page saves.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_security: String,
    pub sender: Option<String>,
    pub is_default: bool,
}

/// A new account, before any settings or credentials are saved.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub provider: Provider,
    pub name: String,
    pub cloud: Cloud,
    pub credential_kind: CredentialKind,
    /// App-only: the mailbox to send as (XOAUTH2 `user=`, Google's `sub`).
    pub mailbox: Option<String>,
    pub enabled: bool,
}

/// The account-level settings the Accounts page edits (validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSettings {
    pub name: String,
    pub cloud: Cloud,
    /// Microsoft: the authorization server endpoint (authority).
    pub endpoint: Option<String>,
    pub smtp_host: String,
    pub smtp_scope: Option<String>,
    pub graph_host: Option<String>,
    pub send_as: Vec<String>,
    pub rate_per_minute: Option<u32>,
    pub max_connections: Option<u32>,
    pub enabled: bool,
    pub transport: Transport,
    pub graph_large_messages: bool,
}

/// What happens to an account's waiting jobs when it is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobsOnDelete {
    /// Bind them to this other account.
    Move(i64),
    /// Fail them (visible in the job history with the reason).
    Fail,
}

impl Account {
    /// The SMTP scope its delegated tokens are requested for: the override,
    /// else the cloud's preset.
    pub fn delegated_smtp_scope(&self) -> String {
        self.smtp_scope
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| {
                self.cloud
                    .preset(self.provider)
                    .smtp_scope_delegated
                    .to_owned()
            })
    }

    /// The scope delegated tokens are requested for, by transport: SMTP
    /// (the override, else the cloud's preset), Graph `Mail.Send` on the
    /// account's Graph host (with `Mail.ReadWrite` after it, space-separated,
    /// when large messages are turned on), or Gmail's `gmail.send`.
    pub fn delegated_scope(&self) -> String {
        match self.transport {
            Transport::Smtp => self.delegated_smtp_scope(),
            Transport::Graph if self.graph_large_messages => {
                let host = self.effective_graph_host();
                format!("https://{host}/Mail.Send https://{host}/Mail.ReadWrite")
            }
            Transport::Graph => format!("https://{}/Mail.Send", self.effective_graph_host()),
            Transport::GmailApi => GMAIL_SEND_SCOPE.to_owned(),
        }
    }

    /// The scope a refresh asks for: what was asked at authorization, less
    /// a `Mail.ReadWrite` the grant did not hold (Microsoft refuses a
    /// refresh that asks for a permission nobody consented to).
    pub fn refresh_scope(&self) -> String {
        if self.transport == Transport::Graph
            && self.graph_large_messages
            && self.granted_scope.is_some()
            && !self.granted_mail_read_write()
        {
            format!("https://{}/Mail.Send", self.effective_graph_host())
        } else {
            self.delegated_scope()
        }
    }

    /// Whether the last authorization granted Graph's `Mail.ReadWrite`
    /// (Microsoft lists Graph scopes short, `Mail.ReadWrite`, or with the
    /// resource, `https://graph.microsoft.com/Mail.ReadWrite`).
    pub fn granted_mail_read_write(&self) -> bool {
        self.granted_scope.as_deref().is_some_and(|scope| {
            scope.split_whitespace().any(|s| {
                let name = s.rsplit('/').next().unwrap_or(s);
                name.eq_ignore_ascii_case("Mail.ReadWrite")
            })
        })
    }

    /// Whether this account sends through Graph drafts with a person's
    /// token: large messages are on and the grant holds `Mail.ReadWrite`.
    pub fn delegated_graph_drafts(&self) -> bool {
        self.transport == Transport::Graph
            && !self.credential_kind.is_app_only()
            && self.graph_large_messages
            && self.granted_mail_read_write()
    }

    /// The largest message this account can send, when smaller than what
    /// SMTP takes. A delegated Graph token with `Mail.Send` only allows one
    /// `sendMail` request (about 3 MB) but no draft; with `Mail.ReadWrite`
    /// granted too (large messages turned on) it takes what drafts take.
    pub fn max_message_size(&self) -> Option<usize> {
        match self.transport {
            Transport::Graph
                if !self.credential_kind.is_app_only() && !self.delegated_graph_drafts() =>
            {
                Some(GRAPH_MIME_MAX)
            }
            t => t.max_message_size(),
        }
    }

    /// Why a delegated Graph account with large messages turned on still
    /// takes only about 3 MB: its authorization did not grant
    /// `Mail.ReadWrite` (consent refused). Shown beside Token Status.
    pub fn large_messages_not_granted(&self) -> Option<Reason> {
        let refused = self.transport == Transport::Graph
            && !self.credential_kind.is_app_only()
            && self.graph_large_messages
            && self.token_status == TokenStatus::Active
            && self.granted_scope.is_some()
            && !self.granted_mail_read_write();
        refused.then(|| {
            Reason::new("token-graph-read-write-not-granted")
                .arg("granted", self.granted_scope.clone().unwrap_or_default())
                .arg("max", GRAPH_MIME_MAX)
        })
    }

    /// The host of the HTTP sending API: the override, else the preset.
    pub fn effective_graph_host(&self) -> String {
        self.graph_host
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| self.cloud.preset(self.provider).api_host.to_owned())
    }

    /// Whether this account may send as `address`: its mailbox, its Sender
    /// setting, or an entry of its send-as list (exact, or `@domain`).
    /// Compared without regard to case.
    pub fn may_send_as(&self, address: &str) -> bool {
        let address = address.trim().to_ascii_lowercase();
        if address.is_empty() {
            return false;
        }
        let same = |a: &Option<String>| {
            a.as_deref()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(&address))
        };
        same(&self.mailbox)
            || same(&self.sender)
            || send_as_match(&self.send_as, &address).is_some()
    }
}

/// The Gmail API's scope for sending only.
pub const GMAIL_SEND_SCOPE: &str = "https://www.googleapis.com/auth/gmail.send";

/// How an address matches a send-as list: `Some(true)` for an exact entry,
/// `Some(false)` for an `@domain` entry, `None` for no match.
pub fn send_as_match(list: &[String], address: &str) -> Option<bool> {
    let address = address.trim().to_ascii_lowercase();
    let domain = address.rsplit_once('@').map(|(_, d)| d)?;
    let mut found = None;
    for entry in list {
        let entry = entry.trim().to_ascii_lowercase();
        if entry == address {
            return Some(true);
        }
        if entry.strip_prefix('@') == Some(domain) {
            found = Some(false);
        }
    }
    found
}

/// Tokens from a successful authorization or refresh, already sealed.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub access_token: Vec<u8>,
    pub access_expires_at: i64,
    /// `None` keeps the stored refresh token (Google usually does not rotate).
    pub refresh_token: Option<Vec<u8>>,
    pub mailbox: Option<String>,
    pub identity_verified: Option<bool>,
    pub refreshed_at: i64,
    /// Set on a new authorization (not on a refresh).
    pub authorized_at: Option<i64>,
}

/// The warning left when a new authorization beside an Active token fails
/// ([`Store::set_authorization`]).
pub fn new_authorization_ended(reason: Option<&Reason>) -> Reason {
    let reason = reason
        .cloned()
        .unwrap_or_else(|| Reason::new("no-reason-given"));
    Reason::new("new-authorization-ended").nested("reason", reason)
}

/// A reason column as stored: JSON, or prose from an older version.
fn reason(row: &impl super::sql::DbRow, column: &str) -> Result<Option<Reason>> {
    Ok(row
        .col::<Option<String>>(column)?
        .map(|text| Reason::from_stored(&text)))
}

const COLUMNS: &str = "id, provider, name, enabled, verify_cert, verify_cn, endpoint, client_id, client_secret IS NOT NULL AS has_client_secret, smtp_host, smtp_port, smtp_security, sender, is_default, connection_status, connection_reason, connection_warning, connection_checked_at, clock_skew_secs, token_status, token_reason, token_warning, mailbox, identity_verified, access_expires_at, last_refreshed_at, authorized_at, refresh_token IS NOT NULL AS has_refresh_token, authorization IS NOT NULL AS has_authorization, updated_at, cloud, credential_kind, smtp_scope, graph_host, send_as, rate_per_minute, max_connections, certificate IS NOT NULL AS has_certificate, private_key IS NOT NULL AS has_private_key, service_account_key IS NOT NULL AS has_service_account_key, service_account_email, credential_expires_at, transport, graph_large_messages, granted_scope";

/// A per-account limit; a stored value out of range reads as unset.
fn limit(row: &impl super::sql::DbRow, column: &str) -> Result<Option<u32>> {
    Ok(row
        .col::<Option<i64>>(column)?
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0))
}

fn account_from_row(row: &impl super::sql::DbRow) -> Result<Account> {
    let mut a = account_columns(row)?;
    // A grant without Mail.ReadWrite is kept (it sends up to 3 MB), so the
    // refusal is no token status: it shows as the warning, computed here
    // because every refresh clears the stored one.
    if a.token_warning.is_none() {
        a.token_warning = a.large_messages_not_granted();
    }
    Ok(a)
}

fn account_columns(row: &impl super::sql::DbRow) -> Result<Account> {
    let provider: String = row.col("provider")?;
    let port: i64 = row.col::<Option<i64>>("smtp_port")?.unwrap_or(587);
    Ok(Account {
        id: row.col("id")?,
        provider: Provider::parse(&provider).ok_or_else(|| {
            StoreError::Conflict(Conflict::Corrupt(format!("unknown provider {provider}")))
        })?,
        name: row.col("name")?,
        enabled: row.col("enabled")?,
        verify_cert: row.col("verify_cert")?,
        verify_cn: row.col("verify_cn")?,
        endpoint: row.col("endpoint")?,
        client_id: row.col("client_id")?,
        has_client_secret: row.col("has_client_secret")?,
        smtp_host: row.col::<Option<String>>("smtp_host")?.unwrap_or_default(),
        smtp_port: u16::try_from(port).unwrap_or(587),
        smtp_security: row
            .col::<Option<String>>("smtp_security")?
            .map_or(SmtpSecurity::StartTls, |s| SmtpSecurity::parse(&s)),
        sender: row.col("sender")?,
        is_default: row.col("is_default")?,
        connection_status: ConnectionStatus::parse(&row.col::<String>("connection_status")?),
        connection_reason: reason(row, "connection_reason")?,
        connection_warning: reason(row, "connection_warning")?,
        connection_checked_at: row.col("connection_checked_at")?,
        clock_skew_secs: row.col("clock_skew_secs")?,
        token_status: TokenStatus::parse(&row.col::<String>("token_status")?),
        token_reason: reason(row, "token_reason")?,
        token_warning: reason(row, "token_warning")?,
        mailbox: row.col("mailbox")?,
        identity_verified: row.col("identity_verified")?,
        access_expires_at: row.col("access_expires_at")?,
        last_refreshed_at: row.col("last_refreshed_at")?,
        authorized_at: row.col("authorized_at")?,
        has_refresh_token: row.col("has_refresh_token")?,
        has_authorization: row.col("has_authorization")?,
        updated_at: row.col("updated_at")?,
        cloud: {
            let cloud: String = row.col("cloud")?;
            Cloud::parse(&cloud).ok_or_else(|| {
                StoreError::Conflict(Conflict::Corrupt(format!("unknown cloud {cloud}")))
            })?
        },
        credential_kind: {
            let kind: String = row.col("credential_kind")?;
            CredentialKind::parse(&kind).ok_or_else(|| {
                StoreError::Conflict(Conflict::Corrupt(format!("unknown credential kind {kind}")))
            })?
        },
        smtp_scope: row.col("smtp_scope")?,
        graph_host: row.col("graph_host")?,
        send_as: {
            let text: String = row.col("send_as")?;
            serde_json::from_str(&text).map_err(|e| {
                StoreError::Conflict(Conflict::Corrupt(format!(
                    "send_as is not a JSON list: {e}"
                )))
            })?
        },
        rate_per_minute: limit(row, "rate_per_minute")?,
        max_connections: limit(row, "max_connections")?,
        has_certificate: row.col("has_certificate")?,
        has_private_key: row.col("has_private_key")?,
        has_service_account_key: row.col("has_service_account_key")?,
        service_account_email: row.col("service_account_email")?,
        credential_expires_at: row.col("credential_expires_at")?,
        // An unknown name (a newer version's) reads as SMTP, which every
        // account can do.
        transport: Transport::parse(&row.col::<String>("transport")?).unwrap_or_default(),
        graph_large_messages: row.col("graph_large_messages")?,
        granted_scope: row.col("granted_scope")?,
    })
}

impl Store {
    /// Every account, by id (from [`AccountsCache`] when it is current).
    async fn all_accounts(&self) -> Result<Arc<Vec<Account>>> {
        crate::on_pool!(self, |p, q| {
            if let Some(list) = self.accounts.get() {
                return Ok(list);
            }
            let generation = self.accounts.generation.load(Ordering::Acquire);
            let read_at = Instant::now();
            static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let sql = SQL.get_or_init(|| format!("SELECT {COLUMNS} FROM accounts ORDER BY id"));
            let rows = sqlx::query(q(sql.as_str())).fetch_all(p).await?;
            let list = Arc::new(
                rows.iter()
                    .map(account_from_row)
                    .collect::<Result<Vec<_>>>()?,
            );
            self.accounts.put(generation, read_at, list.clone());
            Ok(list)
        })
    }

    /// Forgets the accounts as last read, so that the next read sees what
    /// another instance sharing the database wrote a moment ago.
    pub fn forget_cached_accounts(&self) {
        self.accounts.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub async fn accounts(&self) -> Result<Vec<Account>> {
        Ok(self.all_accounts().await?.as_ref().clone())
    }

    pub async fn account(&self, id: i64) -> Result<Account> {
        self.all_accounts()
            .await?
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    /// The default delegated account of a provider: the one with the lowest
    /// id (the seed's one setting per provider; the old pages and API routes
    /// name it).
    pub async fn account_for(&self, provider: Provider) -> Result<Account> {
        self.all_accounts()
            .await?
            .iter()
            .find(|a| a.provider == provider && a.credential_kind == CredentialKind::Delegated)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    /// The account named `name` (names are unique).
    pub async fn account_by_name(&self, name: &str) -> Result<Account> {
        self.all_accounts()
            .await?
            .iter()
            .find(|a| a.name == name)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    /// Saves the account-level settings of the Accounts page. The overrides
    /// are stored as given (`None` takes the cloud's preset when read).
    pub async fn update_account(&self, id: i64, s: &AccountSettings, now: i64) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            let send_as = serde_json::to_string(&s.send_as).map_err(|e| {
                StoreError::Conflict(Conflict::Corrupt(format!("send_as cannot be written: {e}")))
            })?;
            let _changing = self.accounts.changing();
            let done = sqlx::query(q("UPDATE accounts SET name = ?2, cloud = ?3, endpoint = ?4, smtp_host = ?5, smtp_scope = ?6, graph_host = ?7, send_as = ?8, rate_per_minute = ?9, max_connections = ?10, enabled = ?11, updated_at = ?12, transport = ?13, graph_large_messages = ?14 WHERE id = ?1"))
            .bind(id)
            .bind(&s.name)
            .bind(s.cloud.as_str())
            .bind(&s.endpoint)
            .bind(&s.smtp_host)
            .bind(&s.smtp_scope)
            .bind(&s.graph_host)
            .bind(send_as)
            .bind(s.rate_per_minute.map(i64::from))
            .bind(s.max_connections.map(i64::from))
            .bind(s.enabled)
            .bind(now)
            .bind(s.transport.as_str())
            .bind(s.graph_large_messages)
            .execute(p)
            .await;
            match done {
                Ok(d) if d.rows_affected() == 0 => Err(StoreError::NotFound),
                Ok(_) => Ok(()),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(
                    StoreError::Conflict(Conflict::AccountExists(s.name.clone())),
                ),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// How many jobs bound to `id` still wait to go out (queued, deferred
    /// or being sent).
    pub async fn pending_jobs_of(&self, id: i64) -> Result<i64> {
        crate::on_pool!(self, |p, q| {
            Ok(sqlx::query_scalar(q("SELECT COUNT(*) FROM jobs WHERE account_id = ?1 AND state IN ('queued', 'deferred', 'sending')"))
        .bind(id)
        .fetch_one(p)
        .await?)
        })
    }

    /// Deletes an account and, in the same transaction, moves its waiting
    /// jobs to another account or fails them with `failed_reply`. A job being
    /// sent right now keeps its attempt; when moving it is rebound too. The
    /// submitters and allowlist entries bound to it fall back to the default
    /// account (the schema's `ON DELETE SET NULL`). Returns how many jobs
    /// were moved or failed.
    pub async fn delete_account(
        &self,
        id: i64,
        jobs: JobsOnDelete,
        failed_reply: &Reason,
        now: i64,
    ) -> Result<u64> {
        let _changing = self.accounts.changing();
        crate::on_write!(self, |tx, q| {
            let changed = match jobs {
            JobsOnDelete::Move(to) => sqlx::query(q("UPDATE jobs SET account_id = ?2, updated_at = ?3 WHERE account_id = ?1 AND state IN ('queued', 'deferred', 'sending')"))
                .bind(id)
                .bind(to)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            JobsOnDelete::Fail => sqlx::query(q("UPDATE jobs SET state = 'failed', last_reply = ?2, lease_until = NULL, updated_at = ?3 WHERE account_id = ?1 AND state IN ('queued', 'deferred')"))
                .bind(id)
                .bind(failed_reply.to_json())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
        };
            let deleted = sqlx::query(q("DELETE FROM accounts WHERE id = ?1"))
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await?;
            Ok(changed)
        })
    }

    /// Adds an account with its cloud's defaults (login endpoint with tenant
    /// `common`, SMTP host on port 587 with STARTTLS, certificate checks on).
    pub async fn create_account(&self, new: &NewAccount, now: i64) -> Result<i64> {
        crate::on_pool!(self, |p, q| {
            let preset = new.cloud.preset(new.provider);
            let endpoint = (new.provider == Provider::Microsoft)
                .then(|| new.cloud.microsoft_endpoint("common"));
            let _changing = self.accounts.changing();
            let inserted: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(q("INSERT INTO accounts (provider, name, enabled, verify_cert, verify_cn, endpoint, smtp_host, smtp_port, smtp_security, cloud, credential_kind, mailbox, updated_at) VALUES (?1, ?2, ?3, TRUE, FALSE, ?4, ?5, 587, 'starttls', ?6, ?7, ?8, ?9) RETURNING id"))
        .bind(new.provider.as_str())
        .bind(&new.name)
        .bind(new.enabled)
        .bind(endpoint)
        .bind(preset.smtp_host)
        .bind(new.cloud.as_str())
        .bind(new.credential_kind.as_str())
        .bind(&new.mailbox)
        .bind(now)
        .fetch_one(p)
        .await;
            match inserted {
                Ok(id) => Ok(id),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(
                    StoreError::Conflict(Conflict::AccountExists(new.name.clone())),
                ),
                Err(e) => Err(e.into()),
            }
        })
    }

    pub async fn sealed_secrets(&self, id: i64) -> Result<SealedSecrets> {
        crate::on_pool!(self, |p, q| {
            let row = sqlx::query(q("SELECT client_secret, refresh_token, access_token, authorization, private_key, service_account_key FROM accounts WHERE id = ?1"))
            .bind(id)
            .fetch_optional(p)
            .await?
            .ok_or(StoreError::NotFound)?;
            Ok(SealedSecrets {
                client_secret: row.col("client_secret")?,
                refresh_token: row.col("refresh_token")?,
                access_token: row.col("access_token")?,
                authorization: row.col("authorization")?,
                private_key: row.col("private_key")?,
                service_account_key: row.col("service_account_key")?,
            })
        })
    }

    /// Saves the Basic Settings. Switching the account off (or changing where
    /// it authorizes) discards tokens, authorization and statuses: the seed
    /// requires the setup to be done again.
    pub async fn save_basic_settings(
        &self,
        id: i64,
        s: &BasicSettings,
        reset: bool,
        now: i64,
    ) -> Result<()> {
        let _changing = self.accounts.changing();
        crate::on_write!(self, |tx, q| {
            sqlx::query(q("UPDATE accounts SET enabled = ?2, verify_cert = ?3, verify_cn = ?4, endpoint = ?5, client_id = ?6, client_secret = COALESCE(?7, client_secret), updated_at = ?8 WHERE id = ?1"))
            .bind(id)
            .bind(s.enabled)
            .bind(s.verify_cert)
            .bind(s.verify_cn && s.verify_cert)
            .bind(&s.endpoint)
            .bind(&s.client_id)
            .bind(&s.client_secret)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if reset {
                sqlx::query(q("UPDATE accounts SET refresh_token = NULL, access_token = NULL, access_expires_at = NULL, authorization = NULL, mailbox = NULL, identity_verified = NULL, last_refreshed_at = NULL, authorized_at = NULL, granted_scope = NULL, token_status = 'not_registered', token_reason = NULL, token_warning = NULL, connection_status = 'not_checked', connection_reason = NULL, connection_warning = NULL, connection_checked_at = NULL WHERE id = ?1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn save_email_settings(&self, id: i64, s: &EmailSettings, now: i64) -> Result<()> {
        let _changing = self.accounts.changing();
        crate::on_write!(self, |tx, q| {
            if s.is_default {
                sqlx::query(q("UPDATE accounts SET is_default = FALSE"))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(q("UPDATE accounts SET smtp_host = ?2, smtp_port = ?3, smtp_security = ?4, sender = ?5, is_default = ?6, updated_at = ?7 WHERE id = ?1"))
            .bind(id)
            .bind(&s.smtp_host)
            .bind(i64::from(s.smtp_port))
            .bind(&s.smtp_security)
            .bind(&s.sender)
            .bind(s.is_default)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn set_connection_status(
        &self,
        id: i64,
        status: &str,
        reason: Option<&Reason>,
        warning: Option<&Reason>,
        checked_at: i64,
        skew: Option<i64>,
    ) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            let _changing = self.accounts.changing();
            sqlx::query(q("UPDATE accounts SET connection_status = ?2, connection_reason = ?3, connection_warning = ?4, connection_checked_at = ?5, clock_skew_secs = ?6 WHERE id = ?1"))
            .bind(id)
            .bind(status)
            .bind(reason.map(Reason::to_json))
            .bind(warning.map(Reason::to_json))
            .bind(checked_at)
            .bind(skew)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    pub async fn set_token_status(
        &self,
        id: i64,
        status: &str,
        reason: Option<&Reason>,
        warning: Option<&Reason>,
    ) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            let _changing = self.accounts.changing();
            sqlx::query(q("UPDATE accounts SET token_status = ?2, token_reason = ?3, token_warning = ?4 WHERE id = ?1"))
            .bind(id)
            .bind(status)
            .bind(reason.map(Reason::to_json))
            .bind(warning.map(Reason::to_json))
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Stores a pending authorization (sealed) and sets the token status to
    /// `authorizing`, or clears it (`None`) with the status it ended in.
    ///
    /// While the account's token is Active, a new authorization runs beside
    /// it: the status stays Active, so that delivery goes on with the grant
    /// in use (merely opening Google's Register page must not stop the
    /// mail), and a new authorization that fails leaves that grant in place,
    /// with the reason as a warning instead of an Error.
    pub async fn set_authorization(
        &self,
        id: i64,
        sealed: Option<&[u8]>,
        status: &str,
        reason: Option<&Reason>,
    ) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            let _changing = self.accounts.changing();
            let ended = new_authorization_ended(reason).to_json();
            // SET expressions read the row as it was before the UPDATE.
            sqlx::query(q("UPDATE accounts SET authorization = ?2, \
             token_status = CASE WHEN token_status = 'active' AND refresh_token IS NOT NULL THEN 'active' ELSE ?3 END, \
             token_reason = CASE WHEN token_status = 'active' AND refresh_token IS NOT NULL THEN NULL ELSE ?4 END, \
             token_warning = CASE WHEN token_status = 'active' AND refresh_token IS NOT NULL AND ?3 = 'error' THEN ?5 \
                 WHEN token_status = 'active' AND refresh_token IS NOT NULL THEN token_warning ELSE NULL END \
             WHERE id = ?1"))
            .bind(id)
            .bind(sealed)
            .bind(status)
            .bind(reason.map(Reason::to_json))
            .bind(ended)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Stores new tokens atomically (a rotated refresh token replaces the old
    /// one in the same write) and marks the token status active.
    pub async fn store_tokens(&self, id: i64, g: &TokenGrant) -> Result<()> {
        let _changing = self.accounts.changing();
        crate::on_write!(self, |tx, q| {
            sqlx::query(q("UPDATE accounts SET access_token = ?2, access_expires_at = ?3, refresh_token = COALESCE(?4, refresh_token), mailbox = COALESCE(?5, mailbox), identity_verified = COALESCE(?6, identity_verified), last_refreshed_at = ?7, authorized_at = COALESCE(?8, authorized_at), token_status = 'active', token_reason = NULL, token_warning = NULL WHERE id = ?1"))
            .bind(id)
            .bind(&g.access_token)
            .bind(g.access_expires_at)
            .bind(&g.refresh_token)
            .bind(&g.mailbox)
            .bind(g.identity_verified)
            .bind(g.refreshed_at)
            .bind(g.authorized_at)
            .execute(&mut *tx)
            .await?;
            if g.authorized_at.is_some() {
                sqlx::query(q("UPDATE accounts SET authorization = NULL WHERE id = ?1"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Records the scopes the provider granted to a new authorization (its
    /// token response's `scope`), before its tokens are stored.
    pub async fn set_granted_scope(&self, id: i64, scope: Option<&str>) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            let _changing = self.accounts.changing();
            sqlx::query(q("UPDATE accounts SET granted_scope = ?2 WHERE id = ?1"))
                .bind(id)
                .bind(scope)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// Forgets every token of an account and returns it to "not registered".
    pub async fn clear_tokens(&self, id: i64) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            let _changing = self.accounts.changing();
            sqlx::query(q("UPDATE accounts SET refresh_token = NULL, access_token = NULL, access_expires_at = NULL, authorization = NULL, mailbox = NULL, identity_verified = NULL, last_refreshed_at = NULL, authorized_at = NULL, granted_scope = NULL, token_status = 'not_registered', token_reason = NULL, token_warning = NULL WHERE id = ?1"))
            .bind(id)
            .execute(p)
            .await?;
            Ok(())
        })
    }
}

/// App-only credentials as the store keeps them: secrets already sealed.
/// A `None` secret keeps the stored one when the kind stays the same;
/// columns of other kinds are cleared.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    pub credential_kind: CredentialKind,
    /// Microsoft: the token endpoint base with the tenant; `None` keeps it.
    pub endpoint: Option<String>,
    /// Microsoft: the application (client) ID; Google: the service
    /// account's numeric client ID (for the Admin console).
    pub client_id: Option<String>,
    pub client_secret: Option<Vec<u8>>,
    pub certificate: Option<Vec<u8>>,
    pub private_key: Option<Vec<u8>>,
    pub service_account_key: Option<Vec<u8>>,
    pub service_account_email: Option<String>,
    pub mailbox: String,
    /// `Some(v)` sets the expiry to `v` (`None` inside: unknown); `None` keeps it.
    pub expires_at: Option<Option<i64>>,
}

impl Store {
    /// The certificate (public, DER) of an app-only account.
    pub async fn account_certificate(&self, id: i64) -> Result<Option<Vec<u8>>> {
        crate::on_pool!(self, |p, q| {
            let row = sqlx::query(q("SELECT certificate FROM accounts WHERE id = ?1"))
                .bind(id)
                .fetch_optional(p)
                .await?
                .ok_or(StoreError::NotFound)?;
            Ok(row.col("certificate")?)
        })
    }

    /// Saves an app-only account's credentials and forgets its tokens: the
    /// next token is requested with the new credentials.
    pub async fn set_app_credentials(&self, id: i64, c: &AppCredentials, now: i64) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            let _changing = self.accounts.changing();
            let done = sqlx::query(q("UPDATE accounts SET credential_kind = ?2, endpoint = COALESCE(?3, endpoint), client_id = COALESCE(?4, client_id), \
             client_secret = CASE WHEN ?2 = 'microsoft_secret' AND credential_kind = ?2 THEN COALESCE(?5, client_secret) WHEN ?2 = 'microsoft_secret' THEN ?5 ELSE NULL END, \
             certificate = CASE WHEN ?2 = 'microsoft_certificate' AND credential_kind = ?2 THEN COALESCE(?6, certificate) WHEN ?2 = 'microsoft_certificate' THEN ?6 ELSE NULL END, \
             private_key = CASE WHEN ?2 = 'microsoft_certificate' AND credential_kind = ?2 THEN COALESCE(?7, private_key) WHEN ?2 = 'microsoft_certificate' THEN ?7 ELSE NULL END, \
             service_account_key = CASE WHEN ?2 = 'google_service_account' THEN COALESCE(?8, service_account_key) ELSE NULL END, \
             service_account_email = CASE WHEN ?2 = 'google_service_account' THEN COALESCE(?9, service_account_email) ELSE NULL END, \
             mailbox = ?10, credential_expires_at = CASE WHEN ?11 THEN ?12 ELSE credential_expires_at END, \
             refresh_token = NULL, access_token = NULL, access_expires_at = NULL, authorization = NULL, identity_verified = NULL, \
             last_refreshed_at = NULL, authorized_at = NULL, granted_scope = NULL, token_status = 'not_registered', token_reason = NULL, token_warning = NULL, updated_at = ?13 \
             WHERE id = ?1"))
        .bind(id)
        .bind(c.credential_kind.as_str())
        .bind(&c.endpoint)
        .bind(&c.client_id)
        .bind(&c.client_secret)
        .bind(&c.certificate)
        .bind(&c.private_key)
        .bind(&c.service_account_key)
        .bind(&c.service_account_email)
        .bind(&c.mailbox)
        .bind(c.expires_at.is_some())
        .bind(c.expires_at.flatten())
        .bind(now)
        .execute(p)
        .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::i18n::{Locale, Reason, Tr};
    use crate::provider::Provider;
    use crate::store::Store;

    #[tokio::test]
    async fn a_write_is_seen_at_once_here_and_soon_by_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let here = Store::open(dir.path()).await.unwrap();
        let id = here.account_for(Provider::Microsoft).await.unwrap().id;
        assert_eq!(
            here.account(id).await.unwrap().token_status,
            "not_registered"
        );
        // A write through this store: the next read sees it, cache or not.
        let revoked = Reason::text("revoked");
        here.set_token_status(id, "error", Some(&revoked), None)
            .await
            .unwrap();
        let a = here.account(id).await.unwrap();
        assert_eq!(
            (a.token_status.as_str(), a.token_reason.as_ref()),
            ("error", Some(&revoked))
        );
        assert_eq!(
            here.accounts()
                .await
                .unwrap()
                .iter()
                .find(|a| a.id == id)
                .unwrap()
                .token_status,
            "error"
        );
        // Another store on the same file stands for another process (the
        // CLI): its write shows here within the cache's lifetime.
        let other = Store::open(dir.path()).await.unwrap();
        other
            .set_token_status(id, "active", None, None)
            .await
            .unwrap();
        let start = Instant::now();
        loop {
            if here.account(id).await.unwrap().token_status == "active" {
                break;
            }
            assert!(
                start.elapsed() < super::CACHE_TTL + Duration::from_secs(2),
                "another process's write was not seen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(matches!(
            here.account(9999).await,
            Err(crate::store::StoreError::NotFound)
        ));
    }

    /// A row written before reasons were data holds English prose: it is
    /// read as legacy text and shown as it is, in every language.
    #[tokio::test]
    async fn prose_of_an_older_version_is_shown_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let id = store.account_for(Provider::Microsoft).await.unwrap().id;
        let prose = "declined by the user — get a new code";
        {
            let _changing = store.accounts.changing();
            sqlx::query("UPDATE accounts SET token_status = 'error', token_reason = ?2, connection_warning = ?2 WHERE id = ?1")
                .bind(id)
                .bind(prose)
                .execute(store.pool())
                .await
                .unwrap();
        }
        let a = store.account(id).await.unwrap();
        let reason = a.token_reason.unwrap();
        assert_eq!(reason, Reason::legacy(prose));
        assert_eq!(reason.to_string(), prose);
        assert_eq!(reason.render(&Tr::new(Locale::Ja)), prose);
        assert_eq!(a.connection_warning, Some(Reason::legacy(prose)));
        // What this version writes reads back as the same reason.
        let declined = Reason::new("declined");
        store
            .set_token_status(id, "error", Some(&declined), None)
            .await
            .unwrap();
        let a = store.account(id).await.unwrap();
        assert_eq!(a.token_reason, Some(declined));
    }
}

#[cfg(test)]
mod create_tests {
    use super::*;

    #[tokio::test]
    async fn a_new_account_takes_its_clouds_defaults_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let new = NewAccount {
            provider: Provider::Microsoft,
            name: "scans".into(),
            cloud: Cloud::GccHigh,
            credential_kind: CredentialKind::MicrosoftSecret,
            mailbox: Some("scan@example.us".into()),
            enabled: true,
        };
        let id = store.create_account(&new, 10).await.unwrap();
        let a = store.account(id).await.unwrap();
        assert_eq!(a.cloud, Cloud::GccHigh);
        assert_eq!(a.credential_kind, CredentialKind::MicrosoftSecret);
        assert_eq!(a.smtp_host, "smtp.office365.us");
        assert_eq!(
            a.endpoint.as_deref(),
            Some("https://login.microsoftonline.us/common/oauth2/v2.0")
        );
        assert_eq!(a.mailbox.as_deref(), Some("scan@example.us"));
        assert!(a.send_as.is_empty());
        assert_eq!(
            store
                .create_account(&new, 11)
                .await
                .unwrap_err()
                .to_string(),
            "an account named scans already exists"
        );
    }
}

#[cfg(test)]
mod graph_large_tests {
    use super::*;

    /// A delegated Graph account takes drafts (35 MB) only when large
    /// messages are on and the grant lists Mail.ReadWrite, in either of
    /// the forms Microsoft uses; otherwise one request's 3 MB, and a
    /// refused grant says so as the warning.
    #[tokio::test]
    async fn the_limit_follows_the_opt_in_and_the_granted_scope() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let mut a = store.account_for(Provider::Microsoft).await.unwrap();
        a.transport = Transport::Graph;
        a.token_status = TokenStatus::Active;
        a.granted_scope = Some("Mail.Send Mail.ReadWrite openid".into());
        assert_eq!(a.max_message_size(), Some(GRAPH_MIME_MAX), "off");
        assert!(!a.delegated_scope().contains("Mail.ReadWrite"));
        a.graph_large_messages = true;
        assert!(
            a.delegated_scope()
                .ends_with("/Mail.Send https://graph.microsoft.com/Mail.ReadWrite")
        );
        assert_eq!(a.max_message_size(), Some(GRAPH_DRAFT_MAX));
        a.granted_scope = Some("https://graph.microsoft.com/mail.readwrite".into());
        assert_eq!(a.max_message_size(), Some(GRAPH_DRAFT_MAX));
        assert!(a.large_messages_not_granted().is_none());
        a.granted_scope = Some("https://graph.microsoft.com/Mail.Send offline_access".into());
        assert_eq!(a.max_message_size(), Some(GRAPH_MIME_MAX));
        assert_eq!(a.refresh_scope(), "https://graph.microsoft.com/Mail.Send");
        assert!(
            a.delegated_scope().contains("Mail.ReadWrite"),
            "asked again"
        );
        assert_eq!(
            a.large_messages_not_granted().map(|r| r.code),
            Some("token-graph-read-write-not-granted".to_owned())
        );
        // Stored and read back, the warning is there without being stored.
        let settings = AccountSettings {
            name: a.name.clone(),
            cloud: a.cloud,
            endpoint: a.endpoint.clone(),
            smtp_host: a.smtp_host.clone(),
            smtp_scope: None,
            graph_host: None,
            send_as: Vec::new(),
            rate_per_minute: None,
            max_connections: None,
            enabled: true,
            transport: Transport::Graph,
            graph_large_messages: true,
        };
        store.update_account(a.id, &settings, 1).await.unwrap();
        store
            .set_granted_scope(a.id, a.granted_scope.as_deref())
            .await
            .unwrap();
        store
            .set_token_status(a.id, "active", None, None)
            .await
            .unwrap();
        let read = store.account(a.id).await.unwrap();
        assert!(read.graph_large_messages);
        assert!(read.token_warning.is_some());
        store.clear_tokens(a.id).await.unwrap();
        assert_eq!(store.account(a.id).await.unwrap().granted_scope, None);
    }
}

#[cfg(test)]
mod upgrade_tests {
    use std::borrow::Cow;

    use super::*;
    use crate::queue::JobStore as _;

    /// A database as the release before accounts were many left it: the
    /// migrations up to 0003, two accounts with tokens, a bound submitter and
    /// allowlist entry, and a waiting job. This version keeps all of it.
    #[tokio::test]
    async fn a_database_of_the_previous_release_keeps_its_accounts_tokens_and_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::store::DB_FILE);
        {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            let mut previous = sqlx::migrate!("migrations/sqlite");
            previous.migrations = Cow::Owned(
                previous
                    .migrations
                    .iter()
                    .filter(|m| m.version < 4)
                    .cloned()
                    .collect(),
            );
            previous.run(&pool).await.unwrap();
            for sql in [
                "UPDATE accounts SET enabled = 1, client_id = 'cid', refresh_token = x'0102', access_token = x'0304', access_expires_at = 99, mailbox = 'printer@contoso.example', token_status = 'active', is_default = 1 WHERE provider = 'microsoft'",
                "UPDATE accounts SET enabled = 1, client_id = 'gid', client_secret = x'05', refresh_token = x'0607', mailbox = 'scanner@example.com', token_status = 'active' WHERE provider = 'google'",
                "INSERT INTO submitters (name, password_hash, account_id, created_at) VALUES ('mfp', 'hash', (SELECT id FROM accounts WHERE provider = 'google'), 1)",
                "INSERT INTO allowlist (cidr, account_id, created_at) VALUES ('192.0.2.0/24', (SELECT id FROM accounts WHERE provider = 'microsoft'), 1)",
                "INSERT INTO jobs (id, account_id, submitter, source, mail_from, rcpt_to, size, state, next_attempt_at, created_at, updated_at) VALUES ('0190-old', (SELECT id FROM accounts WHERE provider = 'google'), 'mfp', '192.0.2.7', 'a@example.com', '[\"b@example.com\"]', 5, 'deferred', 10, 1, 1)",
                "INSERT INTO messages (job_id, body) VALUES ('0190-old', x'6869')",
            ] {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        let store = Store::open(dir.path()).await.unwrap();
        let ms = store.account_for(Provider::Microsoft).await.unwrap();
        let google = store.account_for(Provider::Google).await.unwrap();
        assert_eq!(
            (ms.name.as_str(), ms.cloud, ms.credential_kind),
            ("microsoft", Cloud::Worldwide, CredentialKind::Delegated)
        );
        assert!(ms.enabled && ms.is_default && ms.has_refresh_token);
        assert_eq!(ms.token_status, TokenStatus::Active);
        assert_eq!(ms.mailbox.as_deref(), Some("printer@contoso.example"));
        assert_eq!(
            ms.delegated_smtp_scope(),
            crate::provider::MICROSOFT_SCOPES[0]
        );
        assert!(ms.send_as.is_empty() && ms.rate_per_minute.is_none());
        assert!(google.has_client_secret && google.has_refresh_token);
        let sealed = store.sealed_secrets(ms.id).await.unwrap();
        assert_eq!(sealed.refresh_token.as_deref(), Some(&[1u8, 2][..]));
        let submitter = store.submitter("mfp").await.unwrap().unwrap();
        assert_eq!(submitter.account_id, Some(google.id));
        let allow = store.allowlist().await.unwrap();
        assert_eq!(allow[0].account_id, Some(ms.id));
        let job = store.job("0190-old").await.unwrap();
        assert_eq!(job.account_id, Some(google.id));
        assert_eq!(store.pending_jobs_of(google.id).await.unwrap(), 1);
        assert_eq!(store.job_body("0190-old").await.unwrap(), b"hi");
        // Routing keeps the bindings the older version made.
        let accounts = store.accounts().await.unwrap();
        assert_eq!(
            crate::intake::routing::route(&accounts, Some(google.id), "a@x.example", None, true),
            Ok(Some(google.id))
        );
        assert_eq!(
            crate::intake::routing::route(&accounts, None, "a@x.example", None, true),
            Ok(Some(ms.id))
        );
    }
}
