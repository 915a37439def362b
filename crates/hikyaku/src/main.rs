//! The `hikyaku` command: the edge where errors become messages and exit codes.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

mod admin_cli;

use hikyaku::clock::{Clock as _, SystemClock};
use hikyaku::config::{Config, LogFormat};

mod cli;

// jemalloc, because it gives memory back: glibc's allocator kept the
// blocks of a 10 MB message load (445 MiB a minute after 48 of them) and
// each freed Argon2 working memory, where jemalloc with its background
// threads and a 1 s decay (.cargo/config.toml) returns them (see the
// README, "Footprint", for the figures of all three).
// The others, for measuring them again without rebuilding the library:
// `cargo rustc --release -p hikyaku --bin hikyaku -- --cfg 'hikyaku_allocator="mimalloc"'`
// (or `="system"`).
#[cfg(not(any(hikyaku_allocator = "system", hikyaku_allocator = "mimalloc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(hikyaku_allocator = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hikyaku",
    version,
    about = "Send mail from plain-SMTP devices and apps through Exchange Online and Gmail with OAuth 2.0"
)]
struct Cli {
    /// Configuration file (TOML). Default: ./hikyaku.toml, else /etc/hikyaku/hikyaku.toml, else built-in defaults.
    #[arg(long, short, env = "HIKYAKU_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay: Remote UI, JSON API, SMTP intake and delivery.
    Serve,
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Users and API tokens, for headless set-up.
    #[command(subcommand)]
    Admin(admin_cli::AdminCommand),
    /// OAuth 2.0 authorization from a terminal.
    #[command(subcommand)]
    Oauth(OauthCommand),
    /// Sending accounts: list, show, add, remove.
    #[command(subcommand)]
    Account(hikyaku::cli_account::AccountCommand),
    /// Queue a message built from arguments (e.g. scan-to-email from a script).
    Send(SendArgs),
    /// Write a consistent copy of the store to FILE (the server may be running).
    /// Keep it together with the data directory's master.key.
    Backup { file: PathBuf },
    /// Restore a backup FILE into the data directory of a stopped server (or a
    /// new one); master.key must be the one kept with the backup.
    Restore {
        file: PathBuf,
        /// Replace a store that is already there (it is kept beside, renamed).
        #[arg(long)]
        replace: bool,
    },
    /// Move the store to another database (SQLite to PostgreSQL and back).
    #[command(subcommand)]
    Store(cli::store::StoreCommand),
    /// sendmail-compatible submission: reads a message on standard input.
    /// Also used when hikyaku is invoked under the name `sendmail`.
    #[command(disable_help_flag = true, after_help = SENDMAIL_FLAGS)]
    Sendmail {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The running server's queue, like mailq: list, show, retry, delete.
    /// Also used when hikyaku is invoked under the name `mailq`.
    Queue {
        #[command(flatten)]
        server: cli::queue::ServerArgs,
        #[command(flatten)]
        filter: cli::queue::Filter,
        #[command(subcommand)]
        action: Option<cli::queue::Action>,
    },
    /// Each account's token and connection status, the queue's counts and
    /// the last error, from the running server.
    Status {
        #[command(flatten)]
        server: cli::queue::ServerArgs,
    },
}

/// What `hikyaku help sendmail` says of the flags.
const SENDMAIL_FLAGS: &str = "\
Usage: sendmail [FLAGS] [RECIPIENT...] < message

The message is handed to the running server (any local user may), or, when
no server runs, written to its queue by a user who may (root, hikyaku's own).
Nothing is printed on success; an error says why nothing was queued.

Supported flags:
  -t             recipients from the To, Cc and Bcc headers (besides arguments)
  -f ADDR, -r ADDR
                 envelope sender (also -fADDR); default: the From header's
                 address, else the default account's sender or mailbox
  -F NAME        display name of the From header added when there is none
  -i, -oi        a line with a single dot does not end the message
  --             the rest are recipients

Accepted and ignored: -bm (the default mode), -v, -U, -n, -m, -em, -ee,
  -oem, -oee, other -oX options, -B TYPE, -N DSN, -R RET, -V ENVID.
Refused: -bs, -bd, -bp, -q and every other -b or -q mode (use `hikyaku serve`
  and `hikyaku queue`). Bcc headers are always removed from the message.";

#[derive(clap::Args)]
struct SendArgs {
    /// Recipient (repeatable).
    #[arg(long, required = true)]
    to: Vec<String>,
    /// Copy recipient (repeatable).
    #[arg(long)]
    cc: Vec<String>,
    #[arg(long, default_value = "")]
    subject: String,
    /// Sender address; default: the default account's sender or mailbox.
    #[arg(long)]
    from: Option<String>,
    /// Body text.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the body text from a file ("-" for standard input).
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Attach a file (repeatable).
    #[arg(long)]
    attach: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every key with its default and description.
    Defaults,
    /// Check the configuration file and print the effective settings.
    Check,
}

#[derive(Subcommand)]
enum OauthCommand {
    /// Authorize the Microsoft account with a device code (shown here).
    Microsoft {
        #[command(subcommand)]
        action: LoginAction,
    },
    /// Authorize the Google account: prints the URL, reads the pasted code or URL.
    Google {
        #[command(subcommand)]
        action: LoginAction,
    },
}

#[derive(Subcommand)]
enum LoginAction {
    Login {
        /// The account to authorize (name or id); default: the provider's first delegated account.
        #[arg(long)]
        account: Option<String>,
    },
}

/// The system-wide configuration, found from any directory (cron runs
/// `sendmail` from the user's home).
const SYSTEM_CONFIG: &str = "/etc/hikyaku/hikyaku.toml";

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(load_config_from(path)?.0)
}

/// The configuration and the name of where it came from: the given file,
/// else `./hikyaku.toml`, else the system-wide file, else the defaults.
fn load_config_from(path: Option<&PathBuf>) -> anyhow::Result<(Config, String)> {
    match config_path(path) {
        Some(p) => Ok((Config::load(&p)?, p.display().to_string())),
        None => Ok((Config::default(), "the built-in defaults".into())),
    }
}

/// The configuration file in use, if any (see [`load_config_from`]).
fn config_path(path: Option<&PathBuf>) -> Option<PathBuf> {
    if let Some(p) = path {
        return Some(p.clone());
    }
    ["hikyaku.toml", SYSTEM_CONFIG]
        .into_iter()
        .map(PathBuf::from)
        .find(|candidate| candidate.exists())
}

/// Sets up logging; returns how a reload changes the level.
fn init_logging(config: &Config) -> hikyaku::app::SetLogLevel {
    use tracing_subscriber::prelude::*;
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    // Colour only on a terminal: a journal or a log file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let layer = match config.log.format {
        LogFormat::Json => layer.json().boxed(),
        LogFormat::Text => layer.boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .init();
    Box::new(move |level| {
        if from_env {
            return Err("RUST_LOG is set and takes precedence over log.level".into());
        }
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the password from standard input")?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let a = rpassword::prompt_password("Password: ")
            .context("cannot prompt for a password (no terminal? use --password-stdin)")?;
        let b = rpassword::prompt_password("Repeat password: ")
            .context("cannot prompt for a password")?;
        if a != b {
            bail!("the passwords do not match");
        }
        a
    };
    Ok(password)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hikyaku: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn backup(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    use hikyaku::store::backup;
    let db = backup::sqlite_file(&config.store.url, &config.data_dir, file, false)?;
    let s = backup::backup_file(&db, file).await?;
    let key = config.data_dir.join(hikyaku::secrets::KEY_FILE);
    println!(
        "backup written to {} ({} bytes: {} accounts, {} jobs of which {} waiting)",
        file.display(),
        s.bytes,
        s.accounts,
        s.jobs_total,
        s.jobs_waiting
    );
    println!(
        "keep it together with {} (or your HIKYAKU_MASTER_KEY): the tokens and secrets in the backup can be read only with that key; store the key apart from the backup's copies as carefully as a password",
        key.display()
    );
    Ok(())
}

async fn restore(config: &Config, file: &std::path::Path, replace: bool) -> anyhow::Result<()> {
    use hikyaku::app::KeyCheck;
    use hikyaku::store::backup;
    backup::sqlite_file(&config.store.url, &config.data_dir, file, true)?;
    let now = SystemClock.unix();
    let r = backup::restore(file, &config.data_dir, replace, now).await?;
    println!(
        "restored {} into {} ({} accounts, {} jobs of which {} waiting: they are delivered when the server starts)",
        file.display(),
        config.data_dir.display(),
        r.summary.accounts,
        r.summary.jobs_total,
        r.summary.jobs_waiting
    );
    if let Some(aside) = &r.set_aside {
        println!("the store that was there is kept as {}", aside.display());
    }
    let key = config.data_dir.join(hikyaku::secrets::KEY_FILE);
    match hikyaku::app::check_master_key(&config.data_dir).await? {
        KeyCheck::Opens => println!("{} opens the restored tokens", key.display()),
        KeyCheck::NothingToOpen => {
            println!("the backup holds no authorized account; no key was needed")
        }
        KeyCheck::Missing => bail!(
            "the store is restored, but {} is missing: copy the master.key kept with this backup there (mode 0600, owned by the user hikyaku runs as) before starting the server; started without it, hikyaku would make a new key and every account would need to be authorized again",
            key.display()
        ),
        KeyCheck::Wrong => bail!(
            "the store is restored, but {} does not open its tokens: it is another installation's key. Copy the master.key kept with this backup there before starting the server",
            key.display()
        ),
    }
    Ok(())
}

async fn run_sendmail(config: &Config, raw: Vec<String>) -> anyhow::Result<()> {
    use hikyaku::intake::local;
    let args = local::parse_sendmail_args(raw)?;
    let limit = usize::try_from(config.intake.max_message_size).unwrap_or(usize::MAX);
    // Read no more than fits: a runaway producer must not fill the memory.
    let mut input = Vec::new();
    std::io::stdin()
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut input)
        .context("cannot read the message from standard input")?;
    if input.len() > limit {
        return Err(local::LocalError::TooLargeInput { limit }.into());
    }
    let mut message = local::read_message(&input, args.ignore_dots);
    let mut recipients: Vec<String> = args
        .recipients
        .iter()
        .map(|r| local::check_address(r))
        .collect::<Result<_, _>>()?;
    if args.from_headers {
        recipients.extend(local::header_recipients(&message)?);
    }
    if recipients.is_empty() {
        return Err(local::LocalError::NoRecipients.into());
    }
    // As sendmail does, with or without -t: Bcc recipients stay hidden.
    message = local::strip_bcc(&message);
    let submission = local::Submission {
        sender: args.sender,
        full_name: args.full_name,
        recipients,
    };
    let id = cli::submit::submit(config, submission, message, "sendmail").await?;
    // Silent on success, as sendmail is: cron mails whatever a job prints.
    tracing::debug!(job_id = %id, "queued");
    Ok(())
}

async fn run_send(config: &Config, a: SendArgs) -> anyhow::Result<()> {
    use hikyaku::intake::local;
    let limit = usize::try_from(config.intake.max_message_size).unwrap_or(usize::MAX);
    let from = match a.from {
        Some(f) => f,
        None => cli::submit::default_sender(config).await?,
    };
    let body = match (a.body, a.body_file) {
        (Some(b), _) => b,
        (None, Some(p)) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the body from standard input")?;
            s
        }
        (None, Some(p)) => {
            let size = std::fs::metadata(&p)
                .with_context(|| format!("cannot read the body file {}", p.display()))?
                .len();
            if size > u64::try_from(limit).unwrap_or(u64::MAX) {
                return Err(local::LocalError::TooLargeInput { limit }.into());
            }
            std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read the body file {}", p.display()))?
        }
        (None, None) => String::new(),
    };
    let req = local::SendRequest {
        from: from.clone(),
        to: a.to.clone(),
        cc: a.cc.clone(),
        subject: a.subject,
        body,
        attachments: a.attach,
    };
    let message = local::build_message(&req, limit)?;
    let envelope_from = local::check_address(
        req.from
            .rsplit_once('<')
            .map(|(_, r)| r.trim_end_matches('>'))
            .unwrap_or(&req.from),
    )?;
    let recipients: Vec<String> =
        a.to.iter()
            .chain(a.cc.iter())
            .map(|r| {
                local::check_address(
                    r.rsplit_once('<')
                        .map(|(_, x)| x.trim_end_matches('>'))
                        .unwrap_or(r),
                )
            })
            .collect::<Result<_, _>>()?;
    let submission = local::Submission {
        sender: Some(envelope_from),
        full_name: None,
        recipients,
    };
    let id = cli::submit::submit(config, submission, message, "cli").await?;
    println!("queued as {id}");
    Ok(())
}

/// `hikyaku account add-app`: creates the account, sets its credentials and
/// reports the first token request's outcome.
async fn run_add_app(
    config: &Config,
    args: &hikyaku::cli_app::AppAccountArgs,
) -> anyhow::Result<()> {
    hikyaku::tls::install_crypto_provider();
    let (store, key) = hikyaku::app::open_data(config).await?;
    let tokens =
        hikyaku::app::token_service(config, &store, key.clone(), Arc::new(SystemClock)).await?;
    let result =
        hikyaku::cli_app::add_app_account_cli(&store, &key, &tokens, &SystemClock, args).await;
    tokens.shutdown();
    store.close().await;
    let a = result?;
    println!(
        "account {} (id {}): {} {} as {}",
        a.name,
        a.id,
        a.provider.as_str(),
        a.credential_kind.as_str(),
        a.mailbox.as_deref().unwrap_or("-")
    );
    match &a.token_reason {
        Some(r) => println!("Token Status: {} — {r}", a.token_status),
        None => println!("Token Status: {}", a.token_status),
    }
    if let Some(w) = hikyaku::tokens::apponly::credential_expiry_warning(&a, SystemClock.unix()) {
        println!("warning: {w}");
    }
    if a.token_status != hikyaku::store::accounts::TokenStatus::Active {
        bail!("the account was saved, but no token could be obtained yet (see Token Status above)");
    }
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    // Invoked as `sendmail` (a symlink in place of /usr/sbin/sendmail).
    let mut argv = std::env::args();
    let argv0 = argv.next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    if matches!(name.as_deref(), Some("sendmail" | "mailq")) {
        let config = load_config(
            std::env::var_os("HIKYAKU_CONFIG")
                .map(PathBuf::from)
                .as_ref(),
        )?;
        if name.as_deref() == Some("mailq") {
            return cli::queue::mailq(&config).await;
        }
        return run_sendmail(&config, argv.collect()).await;
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Defaults) => {
            print!("{}", Config::defaults_toml());
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            let (config, origin) = load_config_from(cli.config.as_ref())?;
            config.check_tls_files(&origin)?;
            println!("configuration is valid");
            print!(
                "{}",
                toml::to_string(&config).context("cannot print the configuration")?
            );
            Ok(())
        }
        Command::Backup { file } => backup(&load_config(cli.config.as_ref())?, &file).await,
        Command::Store(cmd) => cli::store::run(&load_config(cli.config.as_ref())?, cmd).await,
        Command::Restore { file, replace } => {
            restore(&load_config(cli.config.as_ref())?, &file, replace).await
        }
        Command::Serve => {
            let (config, origin) = load_config_from(cli.config.as_ref())?;
            let set_log_level = init_logging(&config);
            let path =
                config_path(cli.config.as_ref()).map(|p| std::path::absolute(&p).unwrap_or(p));
            let read_config = Box::new(move || match &path {
                Some(p) => Config::load(p).map_err(|e| e.to_string()),
                None => Ok(Config::default()),
            });
            tracing::debug!(configuration = %origin, "starting");
            hikyaku::app::serve(
                config,
                hikyaku::app::Reload {
                    read_config,
                    set_log_level,
                },
            )
            .await?;
            Ok(())
        }
        Command::Queue {
            server,
            filter,
            action,
        } => cli::queue::queue(&load_config(cli.config.as_ref())?, &server, filter, action).await,
        Command::Status { server } => {
            cli::queue::status(&load_config(cli.config.as_ref())?, &server).await
        }
        Command::Admin(cmd) => admin_cli::run(&load_config(cli.config.as_ref())?, cmd).await,
        Command::Account(cmd) => {
            let config = load_config(cli.config.as_ref())?;
            // App-only flags make `account add` set the credential up too.
            if let hikyaku::cli_account::AccountCommand::Add(args) = &cmd
                && let Some(app) = args.app_only()
            {
                run_add_app(&config, &app).await
            } else {
                Ok(hikyaku::cli_account::run(&config, cmd).await?)
            }
        }
        Command::Send(a) => run_send(&load_config(cli.config.as_ref())?, a).await,
        Command::Sendmail { args } => run_sendmail(&load_config(cli.config.as_ref())?, args).await,
        Command::Oauth(cmd) => {
            let config = load_config(cli.config.as_ref())?;
            hikyaku::tls::install_crypto_provider();
            let (store, key) = hikyaku::app::open_data(&config).await?;
            let tokens =
                hikyaku::app::token_service(&config, &store, key, Arc::new(SystemClock)).await?;
            match cmd {
                OauthCommand::Microsoft {
                    action: LoginAction::Login { account },
                } => hikyaku::cli_login::microsoft(&store, &tokens, account.as_deref()).await?,
                OauthCommand::Google {
                    action: LoginAction::Login { account },
                } => hikyaku::cli_login::google(&store, &tokens, account.as_deref()).await?,
            }
            store.close().await;
            Ok(())
        }
    }
}
