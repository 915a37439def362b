//! `hikyaku account list|show|add|remove`: accounts from a terminal, for
//! headless set-up. The operations are `crate::admin`'s, acting as the local
//! Administrator (whoever can read the data directory is one already).

use std::sync::Arc;

use crate::admin::account_setup::{AccountInput, input_of};
use crate::admin::{Actor, Admin, AdminError, Detached};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::store::accounts::{Account, JobsOnDelete};

/// The subcommands of `hikyaku account`.
#[derive(Debug, clap::Subcommand)]
pub enum AccountCommand {
    /// List every account.
    List,
    /// Show one account's settings and statuses.
    Show {
        /// The account's name or id.
        name: String,
    },
    /// Add an account (delegated: authorize it afterwards with `hikyaku oauth … login --account NAME`).
    Add(Box<AddArgs>),
    /// Change an account's transport or its large messages over Graph (a
    /// delegated account must then be authorized again).
    Set {
        /// The account's name or id.
        name: String,
        /// smtp, graph (Microsoft) or gmail_api (Google).
        #[arg(long)]
        transport: Option<String>,
        /// on: also request Mail.ReadWrite, so that messages over about
        /// 3 MB go through a Graph draft (up to 35 MB); off: Mail.Send only.
        #[arg(long, value_parser = ["on", "off"])]
        graph_large_messages: Option<String>,
    },
    /// Delete an account. Jobs still waiting for it need --move-jobs-to or --fail-jobs.
    Remove {
        /// The account's name or id.
        name: String,
        /// Move the waiting jobs to this account (name or id).
        #[arg(long, conflicts_with = "fail_jobs")]
        move_jobs_to: Option<String>,
        /// Fail the waiting jobs (they stay in the job history).
        #[arg(long)]
        fail_jobs: bool,
    },
}

/// `hikyaku account add`'s arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AddArgs {
    /// microsoft or google.
    #[arg(long)]
    pub provider: Option<String>,
    /// A name for the account (unique; app-only accounts default to the mailbox).
    #[arg(long)]
    pub name: Option<String>,
    /// worldwide (default), gcc_high, dod or china.
    #[arg(long)]
    pub cloud: Option<String>,
    /// An address or @domain this account may send as (repeatable).
    #[arg(long = "send-as")]
    pub send_as: Vec<String>,
    /// Messages per minute (default: delivery.rate_per_minute).
    #[arg(long)]
    pub rate_per_minute: Option<u32>,
    /// Upstream connections at most (default: delivery.connections_per_account).
    #[arg(long)]
    pub max_connections: Option<u32>,
    /// Add the account switched off.
    #[arg(long)]
    pub disabled: bool,
    /// smtp (default), graph (Microsoft Graph sendMail) or gmail_api (the
    /// Gmail API), for delegated and app-only accounts alike.
    #[arg(long)]
    pub transport: Option<String>,
    /// Microsoft, delegated, --transport graph: also request Mail.ReadWrite,
    /// so that messages over about 3 MB go through a draft (up to 35 MB).
    #[arg(long, conflicts_with_all = ["microsoft_app", "google_service_account"])]
    pub graph_large_messages: bool,
    #[command(flatten)]
    pub app: crate::cli_app::AppFlags,
}

impl AddArgs {
    /// The app-only account these flags describe, if they describe one.
    pub fn app_only(&self) -> Option<crate::cli_app::AppAccountArgs> {
        self.app.account(
            self.name.clone(),
            self.cloud.clone(),
            self.transport.clone(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountCliError {
    #[error("give the provider: --provider microsoft or --provider google")]
    ProviderMissing,
    #[error("give the account a name: --name NAME")]
    NameMissing,
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    App(#[from] crate::app::AppError),
}

fn line(a: &Account) -> String {
    format!(
        "{:>4}  {:<20} {:<9} {:<9} {:<22} {:<30} token={} connection={}{}",
        a.id,
        a.name,
        a.provider.as_str(),
        a.cloud.as_str(),
        a.credential_kind.as_str(),
        a.mailbox.as_deref().unwrap_or("-"),
        a.token_status,
        a.connection_status,
        if a.enabled { "" } else { " (off)" },
    )
}

fn details(a: &Account) -> String {
    let limit = |v: Option<u32>| v.map_or_else(|| "default".to_string(), |n| n.to_string());
    let mut out = vec![
        format!("id:              {}", a.id),
        format!("name:            {}", a.name),
        format!("provider:        {}", a.provider.as_str()),
        format!("cloud:           {}", a.cloud.as_str()),
        format!("credential kind: {}", a.credential_kind.as_str()),
        format!("enabled:         {}", a.enabled),
        format!("mailbox:         {}", a.mailbox.as_deref().unwrap_or("-")),
        format!("endpoint:        {}", a.endpoint.as_deref().unwrap_or("-")),
        format!(
            "smtp:            {}:{} {}",
            a.smtp_host, a.smtp_port, a.smtp_security
        ),
        format!("smtp scope:      {}", a.delegated_smtp_scope()),
        format!("graph host:      {}", a.effective_graph_host()),
        format!("transport:       {}", a.transport),
        format!(
            "large via graph: {}",
            match (a.graph_large_messages, a.delegated_graph_drafts()) {
                (false, _) => "off",
                (true, true) => "on (Mail.ReadWrite granted)",
                (true, false) => "on (Mail.ReadWrite not granted yet: authorize again)",
            }
        ),
        format!(
            "max message:     {}",
            a.max_message_size()
                .map_or_else(|| "intake limit".to_string(), |n| format!("{n} bytes"))
        ),
        format!("send as:         {}", a.send_as.join(", ")),
        format!("rate per minute: {}", limit(a.rate_per_minute)),
        format!("max connections: {}", limit(a.max_connections)),
        format!("default:         {}", a.is_default),
        format!("token status:    {}", a.token_status),
    ];
    if let Some(r) = &a.token_reason {
        out.push(format!("token reason:    {r}"));
    }
    if let Some(w) = &a.token_warning {
        out.push(format!("token warning:   {w}"));
    }
    out.push(format!("connection:      {}", a.connection_status));
    out.join("\n")
}

/// Runs one `hikyaku account` subcommand.
pub async fn run(config: &Config, cmd: AccountCommand) -> Result<(), AccountCliError> {
    let (store, key) = crate::app::open_data(config).await?;
    let admin = Admin::new(&store, &SystemClock, Actor::cli());
    let result = match cmd {
        AccountCommand::List => {
            for a in store.accounts().await.map_err(AdminError::from)? {
                println!("{}", line(&a));
            }
            Ok(())
        }
        AccountCommand::Show { name } => {
            let a = admin.find_account(&name).await?;
            println!("{}", details(&a));
            Ok(())
        }
        AccountCommand::Add(args) => {
            let provider = args
                .provider
                .clone()
                .ok_or(AccountCliError::ProviderMissing)?;
            let input = AccountInput {
                name: args.name.clone().ok_or(AccountCliError::NameMissing)?,
                provider,
                cloud: args.cloud.clone().unwrap_or_default(),
                send_as: args.send_as.join("\n"),
                rate_per_minute: args
                    .rate_per_minute
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                max_connections: args
                    .max_connections
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                enabled: !args.disabled,
                transport: args.transport.clone().unwrap_or_default(),
                graph_large_messages: args.graph_large_messages,
                ..Default::default()
            };
            let a = admin.add_account(&input).await?;
            println!("added account {} (id {})", a.name, a.id);
            Ok(())
        }
        AccountCommand::Set {
            name,
            transport,
            graph_large_messages,
        } => {
            let a = admin.find_account(&name).await?;
            let mut input = input_of(&a, a.enabled);
            if let Some(t) = transport {
                input.transport = t;
            }
            if let Some(on) = graph_large_messages {
                input.graph_large_messages = on == "on";
            }
            crate::tls::install_crypto_provider();
            let tokens =
                crate::app::token_service(config, &store, key.clone(), Arc::new(SystemClock))
                    .await?;
            let detached = Detached::default();
            let live = detached.live(&key, &tokens);
            let a = admin.update_account(&live, a.id, &input).await;
            tokens.shutdown();
            let a = a?;
            println!("{}", details(&a));
            Ok(())
        }
        AccountCommand::Remove {
            name,
            move_jobs_to,
            fail_jobs,
        } => {
            let a = admin.find_account(&name).await?;
            let jobs = match (move_jobs_to, fail_jobs) {
                (Some(to), _) => Some(JobsOnDelete::Move(admin.find_account(&to).await?.id)),
                (None, true) => Some(JobsOnDelete::Fail),
                (None, false) => None,
            };
            crate::tls::install_crypto_provider();
            let tokens =
                crate::app::token_service(config, &store, key.clone(), Arc::new(SystemClock))
                    .await?;
            let detached = Detached::default();
            let live = detached.live(&key, &tokens);
            let changed = admin.delete_account(&live, a.id, jobs).await?;
            println!(
                "deleted account {} ({changed} waiting jobs moved or failed)",
                a.name
            );
            Ok(())
        }
    };
    store.close().await;
    result
}
