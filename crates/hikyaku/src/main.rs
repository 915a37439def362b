//! The `hikyaku` command: the edge where errors become messages and exit codes.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use hikyaku::clock::{Clock, SystemClock};
use hikyaku::config::{Config, LogFormat};
use hikyaku::roles::Role;
use hikyaku::secrets::{hash_token, random_token};

#[derive(Parser)]
#[command(
    name = "hikyaku",
    version,
    about = "Send mail from plain-SMTP devices and apps through Exchange Online and Gmail with OAuth 2.0"
)]
struct Cli {
    /// Configuration file (TOML). Default: ./hikyaku.toml if it exists, else built-in defaults.
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
enum LoginAction {
    Login,
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => {
            let default = PathBuf::from("hikyaku.toml");
            if default.exists() {
                Ok(Config::load(&default)?)
            } else {
                Ok(Config::default())
            }
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn parse_role(text: &str) -> anyhow::Result<Role> {
    Role::parse(text).with_context(|| {
        format!("unknown role {text:?}: use administrator, network-admin or general-user")
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
    if password.chars().count() < 10 {
        bail!("the password must be at least 10 characters long");
    }
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

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Defaults) => {
            print!("{}", Config::defaults_toml());
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            let config = load_config(cli.config.as_ref())?;
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
            let clock = SystemClock;
            match cmd {
                AdminCommand::AddUser {
                    name,
                    role,
                    password_stdin,
                } => {
                    let role = parse_role(&role)?;
                    let tr = hikyaku::web::i18n::Tr::new(hikyaku::web::i18n::Locale::En);
                    let password = read_password(password_stdin)?;
                    hikyaku::web::pages::validate_new_user(&tr, &name, &password)
                        .map_err(anyhow::Error::msg)?;
                    let hash = hikyaku::web::auth::hash_password(password)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    store.create_user(&name, role, &hash, clock.unix()).await?;
                    store
                        .audit(
                            clock.unix(),
                            "cli",
                            "local",
                            "user_add",
                            &format!("{name} ({})", role.as_str()),
                        )
                        .await?;
                    println!("created user {name} with role {}", role.as_str());
                }
                AdminCommand::ApiToken { name, role } => {
                    let role = parse_role(&role)?;
                    let token = format!("hky_{}", random_token(32));
                    store
                        .create_api_token(&name, role, &hash_token(&token), clock.unix())
                        .await?;
                    store
                        .audit(
                            clock.unix(),
                            "cli",
                            "local",
                            "api_token_add",
                            &format!("{name} ({})", role.as_str()),
                        )
                        .await?;
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
