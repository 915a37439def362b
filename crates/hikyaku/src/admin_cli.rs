//! `hikyaku admin …`: users and API tokens from the terminal, for
//! headless set-up and recovery. The command line acts as the
//! Administrator (whoever can read the data directory is one already); each
//! command is one operation of `hikyaku::admin::users`.

use anyhow::Context;
use clap::Subcommand;

use hikyaku::admin::users::{TokenRequest, parse_role};
use hikyaku::admin::{Actor, Admin};
use hikyaku::clock::{Clock, SystemClock};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create a Remote UI user.
    AddUser {
        name: String,
        /// administrator, network-admin or general-user
        #[arg(long)]
        role: String,
        /// Read the password from standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Manage Remote UI users: set a password, change a role.
    #[command(subcommand)]
    User(UserCommand),
    /// Create an API token (`api-token NAME`; printed once, stored hashed),
    /// or list and revoke them.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    ApiToken {
        #[command(subcommand)]
        action: Option<TokenCommand>,
        #[command(flatten)]
        create: TokenArgs,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Set a user's password (every session of theirs ends).
    Passwd {
        name: String,
        /// Read the password from standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a user another role (never leaving no Administrator).
    Role {
        name: String,
        /// administrator, network-admin or general-user
        role: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token (the same as `api-token NAME`).
    Create(TokenArgs),
    /// List the API tokens: user, role, expiry, last use, state.
    List,
    /// Revoke an API token: requests with it are refused from now on.
    Revoke { name: String },
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The token's name.
    #[arg(required = true)]
    name: Option<String>,
    /// What the token may do, at most its user's role (default: the user's role).
    #[arg(long)]
    role: Option<String>,
    /// The user the token belongs to (default: the only Administrator).
    /// It acts with at most that user's current role; deleting the user
    /// revokes it.
    #[arg(long)]
    user: Option<String>,
    /// Expire the token after this long, e.g. 90d, 12h, 2w (default: never).
    #[arg(long)]
    expires_in: Option<String>,
}

/// Runs one `admin` command against the data directory.
pub async fn run(config: &hikyaku::config::Config, cmd: AdminCommand) -> anyhow::Result<()> {
    let (store, _key) = hikyaku::app::open_data(config).await?;
    let admin = Admin::new(&store, &SystemClock, Actor::cli());
    let result = dispatch(&admin, cmd).await;
    store.close().await;
    result
}

async fn dispatch(admin: &Admin<'_>, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::AddUser {
            name,
            role,
            password_stdin,
        } => {
            // Before the prompt: a misspelt role costs no typing.
            parse_role(&role)?;
            let password = crate::read_password(password_stdin)?;
            let role = admin.add_user(&name, password, &role).await?;
            println!("created user {name} with role {}", role.as_str());
        }
        AdminCommand::User(UserCommand::Passwd {
            name,
            password_stdin,
        }) => {
            if admin.store.user_by_name(&name).await?.is_none() {
                anyhow::bail!("no user named {name}: `hikyaku admin add-user` creates one");
            }
            let password = crate::read_password(password_stdin)?;
            admin.reset_password(&name, password).await?;
            println!("password of {name} set; their sessions have ended");
        }
        AdminCommand::User(UserCommand::Role { name, role }) => {
            let role = admin.set_user_role(&name, &role).await?;
            println!("{name} is now {}", role.as_str());
        }
        AdminCommand::ApiToken { action, create } => match action {
            None => create_token(admin, create).await?,
            Some(TokenCommand::Create(args)) => create_token(admin, args).await?,
            Some(TokenCommand::List) => list_tokens(admin).await?,
            Some(TokenCommand::Revoke { name }) => {
                admin.revoke_api_token(&name).await?;
                println!("API token {name} revoked");
            }
        },
    }
    Ok(())
}

async fn create_token(admin: &Admin<'_>, args: TokenArgs) -> anyhow::Result<()> {
    let name = args.name.context("give the token's name: api-token NAME")?;
    let made = admin
        .add_api_token(&TokenRequest {
            name,
            role: args.role,
            user: args.user,
            expires_in: args.expires_in,
        })
        .await?;
    let expires = made.expires_at.map_or_else(
        || "never expires".to_string(),
        |at| format!("expires {}", when(at)),
    );
    eprintln!(
        "API token {} of user {} ({}, {expires}) created. It is shown only this once:",
        made.name,
        made.user,
        made.role.as_str()
    );
    println!("{}", made.token);
    Ok(())
}

async fn list_tokens(admin: &Admin<'_>) -> anyhow::Result<()> {
    let tokens = admin.api_tokens().await?;
    let now = SystemClock.unix();
    println!(
        "{:<20} {:<16} {:<14} {:<8} {:<20} {:<20} CREATED",
        "NAME", "USER", "ROLE", "STATE", "EXPIRES", "LAST USED"
    );
    for t in tokens {
        println!(
            "{:<20} {:<16} {:<14} {:<8} {:<20} {:<20} {}",
            t.name,
            t.user.as_deref().unwrap_or("-"),
            t.effective_role().as_str(),
            t.state(now).as_str(),
            t.expires_at.map_or_else(|| "never".into(), when),
            t.last_used_at.map_or_else(|| "never".into(), when),
            when(t.created_at),
        );
    }
    Ok(())
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC`.
fn when(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    hikyaku::clock::from_unix(unix)
        .format(&format)
        .unwrap_or_else(|_| unix.to_string())
}
