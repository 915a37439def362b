//! `hikyaku account add` with app-only flags: an app-only account set up
//! entirely from the command line, with nobody signing in: a Microsoft app
//! with a client secret or a certificate, or a Google service account.
//! Running it again with the same name replaces that account's credentials.

use std::path::{Path, PathBuf};

use crate::admin::credentials::{AppInput, CredentialInput};
use crate::admin::{Actor, Admin, AdminError, Live};
use crate::clock::Clock;
use crate::cloud::Cloud;
use crate::provider::Provider;
use crate::store::accounts::{Account, CredentialKind, NewAccount, Transport};
use crate::store::{Store, StoreError};

/// The app-only flags of `hikyaku account add` (flattened into its
/// arguments): given, they make the account app-only and set up its
/// credential too.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AppFlags {
    /// App-only: a Microsoft Entra app (client credentials grant); needs
    /// --tenant, --client-id, --mailbox and --client-secret-file or --certificate.
    #[arg(long, requires_all = ["tenant", "client_id", "mailbox"])]
    pub microsoft_app: bool,
    /// App-only: the Directory (tenant) ID or a verified domain of the tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// App-only: the Application (client) ID.
    #[arg(long)]
    pub client_id: Option<String>,
    /// App-only: a file holding the client secret's Value (not its ID).
    #[arg(long, conflicts_with = "certificate")]
    pub client_secret_file: Option<PathBuf>,
    /// App-only: the secret's expiry, YYYY-MM-DD (warned 30 days before).
    #[arg(long, requires = "client_secret_file")]
    pub secret_expires: Option<String>,
    /// App-only: the certificate with its private key, PKCS#12 (.pfx/.p12) or PEM.
    #[arg(long)]
    pub certificate: Option<PathBuf>,
    /// App-only: a file holding the PKCS#12 password.
    #[arg(long, requires = "certificate")]
    pub certificate_password_file: Option<PathBuf>,
    /// App-only: a Google service account's JSON key file (domain-wide delegation).
    #[arg(long, conflicts_with_all = ["microsoft_app", "tenant", "client_id"], requires = "mailbox")]
    pub google_service_account: Option<PathBuf>,
    /// App-only: the mailbox to send as (Microsoft: the XOAUTH2 user; Google:
    /// the user impersonated).
    #[arg(long)]
    pub mailbox: Option<String>,
    /// App-only: the authorization server endpoint instead of the cloud's
    /// (https://host/TENANT/oauth2/v2.0).
    #[arg(long, requires = "microsoft_app")]
    pub endpoint: Option<String>,
}

/// An app-only account to set up: what [`AppFlags`] and the account's
/// name, cloud and transport flags describe.
#[derive(Debug, Clone)]
pub struct AppAccountArgs {
    pub microsoft_app: bool,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub secret_expires: Option<String>,
    pub certificate: Option<PathBuf>,
    pub certificate_password_file: Option<PathBuf>,
    pub google_service_account: Option<PathBuf>,
    /// The mailbox to send as (Microsoft: XOAUTH2 user; Google: the user impersonated).
    pub mailbox: String,
    /// The account's name (default: the mailbox).
    pub name: Option<String>,
    /// worldwide, gcc_high, dod or china.
    pub cloud: String,
    pub endpoint: Option<String>,
    /// smtp (default), graph (Microsoft) or gmail_api (Google).
    pub transport: Option<String>,
}

impl AppFlags {
    /// The app-only account these flags describe with the account's name,
    /// cloud and transport, if they describe one.
    pub fn account(
        &self,
        name: Option<String>,
        cloud: Option<String>,
        transport: Option<String>,
    ) -> Option<AppAccountArgs> {
        (self.microsoft_app || self.google_service_account.is_some()).then(|| AppAccountArgs {
            microsoft_app: self.microsoft_app,
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            client_secret_file: self.client_secret_file.clone(),
            secret_expires: self.secret_expires.clone(),
            certificate: self.certificate.clone(),
            certificate_password_file: self.certificate_password_file.clone(),
            google_service_account: self.google_service_account.clone(),
            mailbox: self.mailbox.clone().unwrap_or_default(),
            name,
            cloud: cloud.unwrap_or_else(|| "worldwide".into()),
            endpoint: self.endpoint.clone(),
            transport,
        })
    }
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
pub enum AddAppError {
    #[error(
        "unknown or unfitting transport {0:?}: Microsoft apps use smtp or graph, Google service accounts smtp or gmail_api"
    )]
    Transport(String),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown cloud {0:?}: use worldwide, gcc_high, dod or china")]
    Cloud(String),
    #[error("a Microsoft app needs --client-secret-file or --certificate")]
    NoCredential,
    #[error(
        "an account named {0:?} exists and is not an app-only account of this provider: choose another --name"
    )]
    NameTaken(String),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn read(path: &Path) -> Result<Vec<u8>, AddAppError> {
    std::fs::read(path).map_err(|source| AddAppError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The first line of a secret file, without its line end.
fn read_secret(path: &Path) -> Result<String, AddAppError> {
    let bytes = read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// [`add_app_account`] from the command line: the server's shared parts
/// that the operation touches are made here (no trust set or proxy change).
pub async fn add_app_account_cli(
    store: &Store,
    key: &crate::secrets::MasterKey,
    tokens: &crate::tokens::TokenService,
    clock: &dyn Clock,
    args: &AppAccountArgs,
) -> Result<Account, AddAppError> {
    let detached = crate::admin::Detached::default();
    add_app_account(store, &detached.live(key, tokens), clock, args).await
}

/// Creates (or updates, by name) the app-only account and sets its
/// credentials; the returned account carries the Token Status of the first
/// token request.
pub async fn add_app_account(
    store: &Store,
    live: &Live<'_>,
    clock: &dyn Clock,
    args: &AppAccountArgs,
) -> Result<Account, AddAppError> {
    let cloud = Cloud::parse(&args.cloud).ok_or_else(|| AddAppError::Cloud(args.cloud.clone()))?;
    // Every file is read before anything is written.
    let (provider, kind, credential) = if let Some(key) = &args.google_service_account {
        (
            Provider::Google,
            CredentialKind::GoogleServiceAccount,
            CredentialInput::GoogleServiceAccount {
                key_json: Some(read(key)?),
            },
        )
    } else if let Some(cert) = &args.certificate {
        let password = args
            .certificate_password_file
            .as_deref()
            .map(read_secret)
            .transpose()?;
        (
            Provider::Microsoft,
            CredentialKind::MicrosoftCertificate,
            CredentialInput::MicrosoftCertificate {
                file: Some(read(cert)?),
                password,
            },
        )
    } else if let Some(secret) = &args.client_secret_file {
        (
            Provider::Microsoft,
            CredentialKind::MicrosoftSecret,
            CredentialInput::MicrosoftSecret {
                secret: Some(read_secret(secret)?),
                expires: args.secret_expires.clone(),
            },
        )
    } else {
        return Err(AddAppError::NoCredential);
    };
    let transport = match args.transport.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => match Transport::parse(t) {
            Some(t) if t.fits(provider) => Some(t),
            _ => return Err(AddAppError::Transport(t.to_owned())),
        },
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| args.mailbox.trim().to_string());
    let existing = store.accounts().await?.into_iter().find(|a| a.name == name);
    let id = match existing {
        Some(a) if a.provider == provider && a.credential_kind.is_app_only() => a.id,
        Some(_) => return Err(AddAppError::NameTaken(name)),
        None => {
            store
                .create_account(
                    &NewAccount {
                        provider,
                        name,
                        cloud,
                        credential_kind: kind,
                        mailbox: Some(args.mailbox.trim().to_string()),
                        enabled: true,
                    },
                    clock.unix(),
                )
                .await?
        }
    };
    let input = AppInput {
        tenant: args.tenant.clone(),
        endpoint: args.endpoint.clone(),
        client_id: args.client_id.clone(),
        mailbox: Some(args.mailbox.clone()),
        credential,
    };
    let admin = Admin::new(store, clock, Actor::cli());
    // The transport first: the first token is requested for its scope.
    if let Some(t) = transport {
        let a = store.account(id).await?;
        if a.transport != t {
            let input = crate::admin::account_setup::input_of(&a, a.enabled);
            let input = crate::admin::account_setup::AccountInput {
                transport: t.as_str().to_owned(),
                ..input
            };
            admin.update_account(live, id, &input).await?;
        }
    }
    Ok(admin.set_app_credentials(live, id, &input).await?)
}
