//! Every change an administrator can make, written once: users and API
//! tokens, accounts (Basic and E-mail Settings, authorization, test e-mail),
//! submitters and the address allowlist, trust anchors, the network (proxy,
//! display time zone) and jobs. Each operation checks the caller's
//! permission, validates its input, seals secrets, and writes its audit
//! entry. The Remote UI pages, the JSON API and the CLI only parse their
//! input, call an operation here and render its result.
//!
//! Nothing here knows about HTTP or languages: refusals are typed
//! ([`AdminError`], [`Problem`]) with English `Display` texts for the CLI and
//! logs; the web layer maps them to its translated messages.

pub mod account_setup;
pub mod accounts;
pub mod credentials;
pub mod jobs;
pub mod network;
pub mod submitters;
pub mod trust;
pub mod users;

use crate::clock::Clock;
use crate::i18n::Reason;
use crate::intake::cidr::CidrError;
use crate::intake::local::LocalError;
use crate::proxy::{ProxyError, ProxyProblem, SharedProxy};
use crate::roles::{Permission, Role};
use crate::secrets::{MasterKey, SecretsError};
use crate::store::audit::Action;
use crate::store::{Store, StoreError};
use crate::tls::TlsError;
use crate::tokens::{EndpointError, TokensError};

/// Who asks for a change: the name and source the audit log records, and
/// the role whose permissions are checked.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub source: String,
    pub role: Role,
}

impl Actor {
    pub fn new(name: impl Into<String>, source: impl Into<String>, role: Role) -> Self {
        Self {
            name: name.into(),
            source: source.into(),
            role,
        }
    }

    /// The local command line: whoever can read the data directory is the
    /// Administrator already.
    pub fn cli() -> Self {
        Self::new("cli", "local", Role::Administrator)
    }
}

/// Why a change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The actor's role may not make this change.
    #[error("forbidden: this role may not make this change")]
    Forbidden,
    /// The input has problems the administrator must correct, one per item.
    #[error("{}", join(.0))]
    Invalid(Vec<Problem>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tokens(#[from] TokensError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Hash(#[from] crate::passwords::HashError),
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl AdminError {
    /// One problem to correct.
    pub fn invalid(problem: Problem) -> Self {
        AdminError::Invalid(vec![problem])
    }
}

impl From<Problem> for AdminError {
    fn from(p: Problem) -> Self {
        AdminError::invalid(p)
    }
}

/// One thing the administrator must correct. The texts are the English
/// messages; the Remote UI shows its translation of each.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("unknown role {0:?}: use administrator, network-admin or general-user")]
    UnknownRole(String),
    #[error("unknown account {0:?}: choose microsoft or google")]
    UnknownProvider(String),
    #[error("the user name must be 1 to 64 letters, digits, dots, dashes or underscores")]
    NameInvalid,
    #[error("the password must be at least 10 characters long")]
    PasswordTooShort,
    #[error("the Microsoft Entra ID endpoint: {0}")]
    Endpoint(EndpointError),
    #[error("enter the Microsoft Entra ID authorization server endpoint")]
    EndpointMissing,
    #[error("enter the Microsoft application (client) ID")]
    MicrosoftClientIdMissing,
    #[error("enter the Google client ID")]
    GoogleClientIdMissing,
    #[error("enter the Google client secret")]
    GoogleClientSecretMissing,
    #[error("the client ID must not contain spaces and may be at most 256 characters")]
    ClientIdSpaces,
    #[error("the client ID may be at most 256 characters, without control characters")]
    ClientIdInvalid,
    #[error("OAuth 2.0 (Microsoft) is not switched on")]
    MicrosoftOff,
    #[error("OAuth 2.0 (Google) is not switched on")]
    GoogleOff,
    #[error("the token is not Active yet: finish the authorization first")]
    TokenNotActive,
    #[error(transparent)]
    Message(LocalError),
    #[error("invalid SMTP server host {0:?}")]
    SmtpHost(String),
    #[error("the SMTP port must be 1 to 65535")]
    SmtpPort,
    #[error("the SMTP security must be starttls or implicit")]
    SmtpSecurity,
    #[error("invalid sender address {0:?}")]
    Sender(String),
    #[error(transparent)]
    Proxy(ProxyProblem),
    #[error(transparent)]
    Cidr(CidrError),
    #[error(transparent)]
    Ca(TlsError),
    #[error(
        "the PEM text is larger than {limit} bytes — paste the CA certificates a few at a time"
    )]
    CaTextTooLarge { limit: usize },
    #[error("at most {limit} CA certificates can be trusted — delete ones no longer needed first")]
    TooManyCas { limit: usize },
    #[error("unknown time zone {0:?}")]
    UnknownTimeZone(String),
    #[error("the current password is wrong")]
    CurrentPasswordWrong,
    #[error("no user named {0:?}")]
    UnknownUser(String),
    #[error("the API token name must be 1 to 64 letters, digits, dots, dashes or underscores")]
    TokenNameInvalid,
    #[error(
        "the token's role ({role}) may not exceed its user's role ({user_role}): choose {user_role} or less"
    )]
    TokenRoleAboveUser {
        role: &'static str,
        user_role: &'static str,
    },
    #[error(
        "invalid expiry {0:?}: give a number and a unit, e.g. 90d (days), 12h (hours), 2w (weeks), at most 3650 days; empty for none"
    )]
    ExpiresIn(String),
    #[error(
        "name the user the token belongs to with --user NAME (there is not exactly one Administrator to give it to)"
    )]
    TokenOwnerMissing,
    #[error(
        "the account name must be 1 to 64 characters, not only digits, without control characters or spaces at either end"
    )]
    AccountNameInvalid,
    #[error("unknown account {0:?}: give its name or id (hikyaku account list)")]
    UnknownAccount(String),
    #[error("unknown cloud {0:?}: choose worldwide, gcc_high, dod or china")]
    UnknownCloud(String),
    #[error("the cloud {0} is not offered for this provider: Google has only worldwide")]
    CloudNotOffered(String),
    #[error("unknown transport {0:?}: choose smtp, graph (Microsoft) or gmail_api (Google)")]
    UnknownTransport(String),
    #[error(
        "the transport {0} is not offered for this provider: Microsoft accounts use smtp or graph, Google accounts smtp or gmail_api"
    )]
    TransportNotFor(String),
    #[error(
        "large messages over Graph are for Microsoft accounts: the Gmail API takes up to 35 MiB without it"
    )]
    GraphLargeNotFor,
    #[error(
        "unknown credential kind {0:?}: choose delegated, microsoft_secret, microsoft_certificate or google_service_account"
    )]
    UnknownCredentialKind(String),
    #[error("the credential kind {0} is not for this provider")]
    CredentialKindNotFor(String),
    #[error("invalid mailbox address {0:?}")]
    MailboxInvalid(String),
    #[error("enter the mailbox this account sends as")]
    MailboxMissing,
    #[error(
        "invalid send-as entry {0:?}: give an address (name@example.com) or a domain (@example.com)"
    )]
    SendAsInvalid(String),
    #[error("at most {limit} send-as entries — use @domain entries for whole domains")]
    SendAsTooMany { limit: usize },
    #[error(
        "the rate must be a whole number of messages per minute from 1 to {max}, or empty for the default"
    )]
    RateInvalid { max: u32 },
    #[error(
        "the connection limit must be a whole number from 1 to {max}, or empty for the default"
    )]
    ConnectionsInvalid { max: u32 },
    #[error(
        "the SMTP scope must be at most 256 characters without spaces, or empty for the cloud's"
    )]
    SmtpScopeInvalid,
    #[error("invalid Graph host {0:?}")]
    GraphHostInvalid(String),
    #[error(
        "{count} jobs still wait for this account: choose to move them to another account or to fail them"
    )]
    JobsWaiting { count: i64 },
    #[error("the jobs cannot move to the account being deleted: choose another account")]
    MoveToSameAccount,
    #[error(transparent)]
    App(credentials::AppProblem),
}

/// The administrator's extra CA certificates as every outbound TLS client
/// shares them.
pub use crate::tls::ExtraCas as LiveCas;

/// The running server's shared parts that some changes touch besides the
/// store: the master key, the token service, the live trust set and proxy,
/// and the delivery workers' wake-up.
pub struct Live<'a> {
    pub key: &'a MasterKey,
    pub tokens: &'a crate::tokens::TokenService,
    pub cas: &'a LiveCas,
    /// The CAs that also anchor the Google account's connections.
    pub google_cas: &'a LiveCas,
    pub proxy: &'a SharedProxy,
    pub wake: &'a (dyn Fn() + Send + Sync),
}

/// The shared parts for a change made outside the server (the command
/// line): trust sets and proxy of its own, nothing to wake. The running
/// server reads what was stored when it next loads it.
#[derive(Default)]
pub struct Detached {
    cas: LiveCas,
    google_cas: LiveCas,
    proxy: SharedProxy,
}

impl Detached {
    pub fn live<'a>(
        &'a self,
        key: &'a MasterKey,
        tokens: &'a crate::tokens::TokenService,
    ) -> Live<'a> {
        Live {
            key,
            tokens,
            cas: &self.cas,
            google_cas: &self.google_cas,
            proxy: &self.proxy,
            wake: &no_wake,
        }
    }
}

fn no_wake() {}

/// A change in the making: where it is stored, when, and by whom.
pub struct Admin<'a> {
    pub store: &'a Store,
    pub clock: &'a dyn Clock,
    pub actor: Actor,
}

impl<'a> Admin<'a> {
    pub fn new(store: &'a Store, clock: &'a dyn Clock, actor: Actor) -> Self {
        Self {
            store,
            clock,
            actor,
        }
    }

    /// Refuses the change unless the actor's role allows `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), AdminError> {
        if self.actor.role.allows(permission) {
            Ok(())
        } else {
            Err(AdminError::Forbidden)
        }
    }

    /// Appends this actor's audit entry. A failure to write it is logged,
    /// never hidden and never undoing the change already made.
    pub async fn audit(&self, action: Action, detail: Reason) {
        record(
            self.store,
            self.clock,
            &self.actor.name,
            &self.actor.source,
            action,
            &detail,
        )
        .await;
    }
}

/// Appends an audit entry for anyone (also before sign-in: a failed login).
pub async fn record(
    store: &Store,
    clock: &dyn Clock,
    actor: &str,
    source: &str,
    action: Action,
    detail: &Reason,
) {
    if let Err(e) = store
        .audit(clock.unix(), actor, source, action, detail)
        .await
    {
        tracing::error!(error = %e, action = action.as_str(), "cannot write the audit log");
    }
}

/// Hashes a password with Argon2id.
pub(crate) async fn hash_password(password: String) -> Result<String, AdminError> {
    Ok(crate::passwords::hash(password).await?)
}

#[cfg(test)]
pub(crate) mod testing {
    //! A store in a temporary directory for the operations' tests.

    use super::*;
    use crate::clock::SystemClock;
    use std::sync::Arc;

    pub async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path()).await.expect("store");
        (dir, store)
    }

    pub fn admin<'a>(store: &'a Store, role: Role) -> Admin<'a> {
        Admin::new(store, &SystemClock, Actor::new("tester", "test", role))
    }

    /// The running server's parts, as a server without listeners has them.
    pub struct Server {
        pub key: Arc<MasterKey>,
        pub tokens: crate::tokens::TokenService,
        pub cas: LiveCas,
        pub google_cas: LiveCas,
        pub proxy: SharedProxy,
    }

    impl Server {
        pub fn new(dir: &std::path::Path, store: &Store) -> Self {
            let key = Arc::new(MasterKey::load_or_create(dir).expect("master key"));
            let cas = LiveCas::default();
            let google_cas = LiveCas::default();
            let proxy = SharedProxy::default();
            let tokens = crate::tokens::TokenService::with_trust(
                store.clone(),
                key.clone(),
                Arc::new(SystemClock),
                crate::config::Config::default().google,
                cas.clone(),
                google_cas.clone(),
                proxy.clone(),
            );
            Self {
                key,
                tokens,
                cas,
                google_cas,
                proxy,
            }
        }

        pub fn live(&self) -> Live<'_> {
            Live {
                key: &self.key,
                tokens: &self.tokens,
                cas: &self.cas,
                google_cas: &self.google_cas,
                proxy: &self.proxy,
                wake: &|| {},
            }
        }
    }

    /// Whether the result is a refusal for exactly this one problem.
    pub fn refused_for<T>(result: Result<T, AdminError>, want: fn(&Problem) -> bool) -> bool {
        matches!(result, Err(AdminError::Invalid(p)) if p.len() == 1 && want(&p[0]))
    }
}
