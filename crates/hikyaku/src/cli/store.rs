//! `hikyaku store copy`: the command-line adapter of
//! [`hikyaku::store::copy`].

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use hikyaku::config::Config;
use hikyaku::store::copy::{self, Location, Progress};
use hikyaku::store::postgres::StoreUrl;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Copy a stopped installation into another, empty store (e.g. SQLite to
    /// PostgreSQL): accounts with their tokens, users, API tokens, submitters,
    /// allowlist, CA certificates, settings, audit log, queued and finished
    /// jobs. Sign-in sessions are not copied. Stop every server first.
    Copy {
        /// The store to copy: sqlite://PATH or postgres://USER@HOST/DB.
        /// Default: the configured store (store.url, else the file in data_dir).
        #[arg(long)]
        from: Option<String>,
        /// The new, empty store: postgres://USER@HOST/DB or sqlite://PATH.
        #[arg(long)]
        to: String,
    },
}

/// A store URL as a copy's location; the default SQLite file is the data
/// directory's.
fn location(url: &str, config: &Config) -> anyhow::Result<Location> {
    let parsed: StoreUrl = url.parse()?;
    Ok(match parsed {
        StoreUrl::Sqlite(None) => Location::Sqlite(config.data_dir.join(hikyaku::store::DB_FILE)),
        StoreUrl::Sqlite(Some(path)) => Location::Sqlite(path),
        StoreUrl::Postgres(url) => Location::Postgres(url),
    })
}

pub async fn run(config: &Config, cmd: StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Copy { from, to } => copy_store(config, from.as_deref(), &to).await,
    }
}

async fn copy_store(config: &Config, from: Option<&str>, to: &str) -> anyhow::Result<()> {
    let from = location(from.unwrap_or(&config.store.url), config).context("--from")?;
    let to = location(to, config).context("--to")?;
    eprintln!("copying {} to {}", from.shown(), to.shown());
    // A line per table, then one per tenth of a long table.
    let mut shown_tenth = 0;
    let mut progress = |p: Progress<'_>| {
        if p.copied == 0 {
            shown_tenth = 0;
            eprintln!("  {}: {} rows", p.table, p.total);
        } else if p.total > 0 && p.copied * 10 / p.total > shown_tenth {
            shown_tenth = p.copied * 10 / p.total;
            eprintln!(
                "  {}: {}/{} ({}%)",
                p.table,
                p.copied,
                p.total,
                p.copied * 100 / p.total
            );
        }
        let _ = std::io::stderr().flush();
    };
    let data_dirs: Vec<PathBuf> = vec![config.data_dir.clone()];
    let report = copy::copy(&from, &to, &data_dirs, &mut progress).await?;
    print!("{}", report.render());
    let bad = report.mismatches();
    if !bad.is_empty() {
        let names: Vec<&str> = bad.iter().map(|t| t.table.as_str()).collect();
        bail!(
            "the row counts differ in {}: do not switch to {} yet; run the copy again into a new, empty store",
            names.join(", "),
            to.shown()
        );
    }
    println!("every table has the same number of rows on both sides");
    let key = config.data_dir.join(hikyaku::secrets::KEY_FILE);
    println!(
        "the accounts' tokens and secrets were copied sealed: every instance on {} needs this installation's {} (or HIKYAKU_MASTER_KEY), the same file, mode 0600",
        to.shown(),
        key.display()
    );
    println!(
        "sign-in sessions were not copied: people sign in again. Next: set store.url to the new store in hikyaku.toml and start the server"
    );
    Ok(())
}
