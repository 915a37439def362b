//! `hikyaku oauth microsoft|google login`: the seed's authorization steps for
//! hosts without a browser. The same token service as the Remote UI does the
//! work; this module only talks to the terminal.

use std::io::{BufRead, Write};
use std::time::Duration;

use crate::provider::Provider;
use crate::store::Store;
use crate::tokens::TokenService;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "OAuth 2.0 ({0}) is not switched on: enable it in the Remote UI (Settings/Registration → Send) or with PUT /api/v1/oauth/{1} first"
    )]
    Disabled(&'static str, &'static str),
    #[error("the server connection check failed: {0}")]
    Connection(String),
    #[error("no account named {0:?}: see hikyaku account list")]
    UnknownAccount(String),
    #[error(
        "the account {0:?} is not a delegated {1} account: choose one from hikyaku account list"
    )]
    NotDelegated(String, &'static str),
    #[error(transparent)]
    Tokens(#[from] crate::tokens::TokensError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("authorization did not complete: {0}")]
    Failed(String),
    // The I/O error is part of the message, not a chained source: said once.
    #[error("cannot read the terminal: {0}")]
    Io(std::io::Error),
}

/// The account to authorize: the one named (by name or id), else the
/// provider's default delegated account.
async fn chosen(
    store: &Store,
    provider: Provider,
    name: Option<&str>,
) -> Result<crate::store::accounts::Account, LoginError> {
    let Some(name) = name else {
        return Ok(store.account_for(provider).await?);
    };
    let found = match name.parse::<i64>() {
        Ok(id) => store.account(id).await,
        Err(_) => store.account_by_name(name).await,
    };
    let a = match found {
        Ok(a) => a,
        Err(crate::store::StoreError::NotFound) => {
            return Err(LoginError::UnknownAccount(name.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    if a.provider != provider || a.credential_kind.is_app_only() {
        return Err(LoginError::NotDelegated(
            name.to_string(),
            provider.as_str(),
        ));
    }
    Ok(a)
}

impl From<std::io::Error> for LoginError {
    fn from(e: std::io::Error) -> Self {
        LoginError::Io(e)
    }
}

pub async fn microsoft(
    store: &Store,
    tokens: &TokenService,
    account: Option<&str>,
) -> Result<(), LoginError> {
    let account = chosen(store, Provider::Microsoft, account).await?;
    if !account.enabled {
        return Err(LoginError::Disabled("Microsoft", "microsoft"));
    }
    let report = tokens.check_connection(account.id).await?;
    if report.status != crate::connection::ConnectionStatus::Successful {
        return Err(LoginError::Connection(
            report.reason.map(|r| r.to_string()).unwrap_or_default(),
        ));
    }
    let code = match tokens.pending_device_code(account.id).await? {
        Some(c) => c,
        None => tokens.start_device_authorization(account.id).await?,
    };
    println!("{}", code.message);
    println!("  Link:      {}", code.verification_uri);
    println!("  User code: {}", code.user_code);
    println!("  Expires:   {}", crate::clock::from_unix(code.expires_at));
    let spinner = ['|', '/', '-', '\\'];
    let mut i = 0usize;
    loop {
        let a = store.account(account.id).await?;
        match a.token_status.as_str() {
            "active" => {
                println!("\rToken Status: Active — {}", a.mailbox.unwrap_or_default());
                return Ok(());
            }
            "error" | "not_registered" => {
                println!();
                return Err(LoginError::Failed(
                    a.token_reason
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "stopped".into()),
                ));
            }
            _ => {}
        }
        print!(
            "\rWaiting for you to sign in {} ",
            spinner[i % spinner.len()]
        );
        let _ = std::io::stdout().flush();
        i += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn google(
    store: &Store,
    tokens: &TokenService,
    account: Option<&str>,
) -> Result<(), LoginError> {
    let account = chosen(store, Provider::Google, account).await?;
    if !account.enabled {
        return Err(LoginError::Disabled("Google", "google"));
    }
    let auth = tokens.google_authorization_url(account.id).await?;
    println!(
        "Open this URL in a browser, allow access, then paste the address of the page you land on (or just its code):"
    );
    println!("{}", auth.url);
    print!("Authorization code or URL: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    tokens.google_submit_code(account.id, line.trim()).await?;
    let a = store.account(account.id).await?;
    println!("Token Status: Active — {}", a.mailbox.unwrap_or_default());
    Ok(())
}
