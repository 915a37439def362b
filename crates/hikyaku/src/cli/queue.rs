//! `hikyaku queue` (and `mailq`), `hikyaku status`: the running server's
//! queue and accounts, through its control socket or its JSON API.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use hikyaku::clock::{Clock, SystemClock};
use hikyaku::config::Config;
use hikyaku::control::client::{ApiClient, Server, SocketClient};
use hikyaku::control::render::{self, Language};

/// Which server, and how to print.
#[derive(Args, Debug, Clone, Default)]
pub struct ServerArgs {
    /// Base URL of a server's JSON API (e.g. https://relay.example.com:8080),
    /// instead of the local control socket. The API token is read from
    /// HIKYAKU_TOKEN.
    #[arg(long, env = "HIKYAKU_URL", global = true)]
    pub url: Option<String>,
    /// PEM file with the CA certificate (or the self-signed certificate) of
    /// the server at --url, trusted besides the system's.
    #[arg(long, env = "HIKYAKU_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
    /// Print the server's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Which jobs `hikyaku queue` lists.
#[derive(Args, Debug, Clone)]
pub struct Filter {
    /// Only jobs in this state: queued, sending, deferred, sent or failed.
    /// Default: every job not yet sent.
    #[arg(long)]
    pub state: Option<String>,
    /// Only jobs of this account (its number, name, or provider).
    #[arg(long)]
    pub account: Option<String>,
    /// Only jobs with this envelope sender.
    #[arg(long)]
    pub sender: Option<String>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            state: None,
            account: None,
            sender: None,
            limit: 1000,
        }
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum Action {
    /// Everything about one job.
    Show { id: String },
    /// Make a deferred or failed job due now (or every deferred one).
    Retry {
        #[arg(required_unless_present = "all_deferred")]
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all_deferred: bool,
    },
    /// Delete a job that is not being delivered.
    Delete { id: String },
}

fn server(config: &Config, args: &ServerArgs) -> anyhow::Result<Server> {
    let Some(url) = &args.url else {
        return Ok(Server::Socket(SocketClient::new(&config.control_socket())));
    };
    let token = std::env::var("HIKYAKU_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .context("--url needs an API token in HIKYAKU_TOKEN (hikyaku admin api-token NAME --role administrator makes one)")?;
    let cacert = match &args.cacert {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the CA certificate file {}", p.display()))?,
        ),
        None => None,
    };
    Ok(Server::Api(ApiClient::new(
        url,
        token.trim(),
        cacert.as_deref(),
    )?))
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// Writes to standard output; a reader that stopped early (`| head`) is no error.
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `hikyaku queue [ACTION]` and `mailq`.
pub async fn queue(
    config: &Config,
    args: &ServerArgs,
    filter: Filter,
    action: Option<Action>,
) -> anyhow::Result<()> {
    let server = server(config, args)?;
    let lang = Language::from_env();
    match action {
        None => {
            let jobs = server
                .jobs(filter.state, filter.account, filter.sender, filter.limit)
                .await?;
            if args.json {
                return print_json(&serde_json::Value::Array(jobs));
            }
            out(&render::queue(&jobs, lang))?;
        }
        Some(Action::Show { id }) => {
            let job = server.job(&id).await?;
            if args.json {
                return print_json(&job);
            }
            out(&render::job(&job, lang))?;
        }
        Some(Action::Retry {
            id: Some(id),
            all_deferred: false,
        }) => {
            let job = server.retry(&id).await?;
            let state = job["state"].as_str().unwrap_or("queued");
            out(&render::retried(&id, state, lang))?;
        }
        Some(Action::Retry { .. }) => {
            let n = server.retry_deferred().await?;
            out(&render::retried_all(n, lang))?;
        }
        Some(Action::Delete { id }) => {
            server.delete(&id).await?;
            out(&render::deleted(&id, lang))?;
        }
    }
    Ok(())
}

/// `hikyaku status`.
pub async fn status(config: &Config, args: &ServerArgs) -> anyhow::Result<()> {
    let status = server(config, args)?.status().await?;
    if args.json {
        return print_json(&status);
    }
    out(&render::status(
        &status,
        SystemClock.unix(),
        Language::from_env(),
    ))
}

/// `mailq` (a link named so): the queue's list; `-v` and the like are
/// accepted and ignored, as other mailq replacements do.
pub async fn mailq(config: &Config) -> anyhow::Result<()> {
    queue(config, &ServerArgs::default(), Filter::default(), None).await
}
