//! The `hikyaku` command: the edge where errors become messages and exit codes.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use hikyaku::admin::users::parse_role;
use hikyaku::admin::{Actor, Admin};
use hikyaku::clock::{Clock, SystemClock};
use hikyaku::config::{Config, LogFormat};

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
    Admin(AdminCommand),
    /// OAuth 2.0 authorization from a terminal.
    #[command(subcommand)]
    Oauth(OauthCommand),
    /// Sending accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Queue a message built from arguments (e.g. scan-to-email from a script).
    Send(SendArgs),
    /// sendmail-compatible submission: reads a message on standard input.
    /// Also used when hikyaku is invoked under the name `sendmail`.
    #[command(disable_help_flag = true)]
    Sendmail {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

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
enum AdminCommand {
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
    /// Create an API token (printed once; stored hashed).
    ApiToken {
        name: String,
        #[arg(long)]
        role: String,
    },
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
enum AccountCommand {
    /// Add an app-only account (no person signs in): a Microsoft app with a
    /// client secret or certificate, or a Google service account.
    AddApp(hikyaku::cli_app::AppAccountArgs),
}

#[derive(Subcommand)]
enum LoginAction {
    Login,
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
    if let Some(p) = path {
        return Ok((Config::load(p)?, p.display().to_string()));
    }
    for candidate in ["hikyaku.toml", SYSTEM_CONFIG] {
        let candidate = PathBuf::from(candidate);
        if candidate.exists() {
            return Ok((Config::load(&candidate)?, candidate.display().to_string()));
        }
    }
    Ok((Config::default(), "the built-in defaults".into()))
}

/// The commands that hand a message to the server use its existing queue,
/// never a new one that no server would read (as a relative `data_dir`
/// would give from another working directory).
fn require_queue(config: &Config) -> anyhow::Result<()> {
    if config.data_dir.join(hikyaku::store::DB_FILE).exists() {
        return Ok(());
    }
    let shown = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    bail!(
        "no hikyaku queue in {}; nothing was queued. The server creates it at its first start: \
         run this command where the server runs (its working directory), or give the server's \
         configuration with --config or HIKYAKU_CONFIG, or install it as {SYSTEM_CONFIG} with an \
         absolute data_dir",
        shown.display()
    )
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a journal or a log file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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

/// The address local submissions come from when none is given: the default
/// account's sender or authorized mailbox.
async fn default_sender(store: &hikyaku::store::Store) -> anyhow::Result<String> {
    let accounts = store.accounts().await?;
    let pick = accounts
        .iter()
        .find(|a| a.is_default && a.enabled)
        .or_else(|| {
            accounts
                .iter()
                .find(|a| a.enabled && a.token_status == "active")
        });
    pick.and_then(|a| a.sender.clone().or_else(|| a.mailbox.clone()))
        .context("no sender address: give --from (or -f), or authorize an account first")
}

async fn run_sendmail(config: &Config, raw: Vec<String>) -> anyhow::Result<()> {
    use hikyaku::intake::local;
    let args = local::parse_sendmail_args(raw)?;
    require_queue(config)?;
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
    let (store, _key) = hikyaku::app::open_data(&config.data_dir).await?;
    let header_from = hikyaku::intake::store_sink::summarize(&message).from;
    let sender = match (&args.sender, &header_from) {
        (Some(s), _) => local::check_address(s)?,
        (None, Some(f)) => f.clone(),
        (None, None) => default_sender(&store).await?,
    };
    if header_from.is_none() {
        let from = match &args.full_name {
            Some(name) => format!(
                "From: \"{}\" <{sender}>\r\n",
                name.replace(['"', '\\', '\r', '\n'], "")
            ),
            None => format!("From: {sender}\r\n"),
        };
        message.splice(0..0, from.into_bytes());
    }
    let domain = sender.rsplit_once('@').map_or("localhost", |(_, d)| d);
    local::complete_header(&mut message, domain, SystemClock.now());
    let user = std::env::var("USER").unwrap_or_else(|_| "local".into());
    let id = local::enqueue(
        &store,
        &SystemClock,
        &format!("sendmail:{user}"),
        &sender,
        recipients,
        message,
        limit,
    )
    .await?;
    store.close().await;
    // Silent on success, as sendmail is: cron mails whatever a job prints.
    tracing::debug!(job_id = %id, "queued");
    Ok(())
}

async fn run_send(config: &Config, a: SendArgs) -> anyhow::Result<()> {
    use hikyaku::intake::local;
    require_queue(config)?;
    let limit = usize::try_from(config.intake.max_message_size).unwrap_or(usize::MAX);
    let (store, _key) = hikyaku::app::open_data(&config.data_dir).await?;
    let from = match a.from {
        Some(f) => f,
        None => default_sender(&store).await?,
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
    let user = std::env::var("USER").unwrap_or_else(|_| "local".into());
    let id = local::enqueue(
        &store,
        &SystemClock,
        &format!("cli:{user}"),
        &envelope_from,
        recipients,
        message,
        limit,
    )
    .await?;
    store.close().await;
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
    let (store, key) = hikyaku::app::open_data(&config.data_dir).await?;
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
    if std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "sendmail")
    {
        let config = load_config(
            std::env::var_os("HIKYAKU_CONFIG")
                .map(PathBuf::from)
                .as_ref(),
        )?;
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
        Command::Serve => {
            let config = load_config(cli.config.as_ref())?;
            init_logging(&config);
            hikyaku::app::serve(config).await?;
            Ok(())
        }
        Command::Admin(cmd) => {
            let config = load_config(cli.config.as_ref())?;
            let (store, _key) = hikyaku::app::open_data(&config.data_dir).await?;
            let admin = Admin::new(&store, &SystemClock, Actor::cli());
            match cmd {
                AdminCommand::AddUser {
                    name,
                    role,
                    password_stdin,
                } => {
                    // Before the prompt: a misspelt role costs no typing.
                    parse_role(&role)?;
                    let password = read_password(password_stdin)?;
                    let role = admin.add_user(&name, password, &role).await?;
                    println!("created user {name} with role {}", role.as_str());
                }
                AdminCommand::ApiToken { name, role } => {
                    let (role, token) = admin.add_api_token(&name, &role).await?;
                    eprintln!(
                        "API token {name} ({}) created. It is shown only this once:",
                        role.as_str()
                    );
                    println!("{token}");
                }
            }
            store.close().await;
            Ok(())
        }
        Command::Account(AccountCommand::AddApp(args)) => {
            run_add_app(&load_config(cli.config.as_ref())?, &args).await
        }
        Command::Send(a) => run_send(&load_config(cli.config.as_ref())?, a).await,
        Command::Sendmail { args } => run_sendmail(&load_config(cli.config.as_ref())?, args).await,
        Command::Oauth(cmd) => {
            let config = load_config(cli.config.as_ref())?;
            hikyaku::tls::install_crypto_provider();
            let (store, key) = hikyaku::app::open_data(&config.data_dir).await?;
            let tokens =
                hikyaku::app::token_service(&config, &store, key, Arc::new(SystemClock)).await?;
            match cmd {
                OauthCommand::Microsoft {
                    action: LoginAction::Login,
                } => hikyaku::cli_login::microsoft(&store, &tokens).await?,
                OauthCommand::Google {
                    action: LoginAction::Login,
                } => hikyaku::cli_login::google(&store, &tokens).await?,
            }
            store.close().await;
            Ok(())
        }
    }
}
