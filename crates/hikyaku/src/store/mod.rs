//! The store: every piece of state that must survive a restart. SQLite (WAL,
//! `synchronous=FULL`) is the embedded default; callers see only [`Store`], so
//! that a PostgreSQL engine can be added behind the same methods.
//! Write transactions start with `BEGIN IMMEDIATE` so that a read-then-write
//! never fails with SQLITE_BUSY_SNAPSHOT.

pub mod accounts;
pub mod audit;
mod batch;
pub mod ca;
pub mod jobs;
pub mod submitters;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection as _, Sqlite, SqlitePool, Transaction};

/// File name of the SQLite database inside the data directory.
pub const DB_FILE: &str = "hikyaku.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the disk is full: the store cannot write (free some space; nothing was half-written)")]
    Full,
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(Conflict),
    /// A failure shared by every write of a group commit.
    #[error("database error: {message}")]
    Shared { message: String, temporary: bool },
}

/// Why the store refused a change that conflicts with what it holds. The
/// texts (English) go to the CLI and logs; the Remote UI shows its own
/// translation of each case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("a user named {0} already exists")]
    UserExists(String),
    #[error("an API token named {0} already exists")]
    ApiTokenExists(String),
    #[error("a submitter named {0} already exists")]
    SubmitterExists(String),
    #[error("{0} is already in the allowlist")]
    AllowEntryExists(String),
    #[error("the certificate {0} is already trusted")]
    CaExists(String),
    #[error("the last Administrator cannot be deleted")]
    LastAdministrator,
    #[error("setup is already complete")]
    SetupComplete,
    #[error("the setup link is no longer valid")]
    SetupLinkInvalid,
    #[error("only a queued, deferred or failed job can be retried")]
    JobNotRetryable,
    #[error("the job does not exist or is being sent right now")]
    JobNotDeletable,
    /// A row the store cannot read (an unknown role or provider name).
    #[error("{0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether retrying later may succeed (disk full, database busy).
    pub fn is_temporary(&self) -> bool {
        match self {
            StoreError::Full => true,
            StoreError::Shared { temporary, .. } => *temporary,
            StoreError::Db(e) => {
                matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))
                    || db_code(e).is_some_and(|c| c == "5" || c == "6")
            }
            _ => false,
        }
    }
}

fn db_code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // SQLITE_FULL (13) and the extended I/O codes of a full disk.
        let full = db_code(&e).is_some_and(|c| c == "13")
            || matches!(&e, sqlx::Error::Io(io) if io.raw_os_error() == Some(28));
        if full {
            StoreError::Full
        } else if matches!(e, sqlx::Error::RowNotFound) {
            StoreError::NotFound
        } else {
            StoreError::Db(e)
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Held for the life of every write transaction. SQLite allows one
    /// writer; waiting here (a fair queue) instead of in SQLite's busy
    /// handler, which sleeps in growing steps, keeps writes back to back.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Group commit of accepted messages, claims and finished jobs ([`batch`]).
    batch: batch::Batcher,
    /// The accounts as last read ([`accounts::AccountsCache`]).
    accounts: Arc<accounts::AccountsCache>,
}

/// A write transaction that holds the store's write lock.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` and runs migrations.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(StoreError::Db)?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // When SQLite rolls a transaction back by itself (SQLITE_FULL,
            // some SQLITE_IOERR), sqlx's ROLLBACK fails and the connection
            // stays "inside a transaction": every later BEGIN on it would fail
            // ("begin_with at non-zero transaction depth") long after the disk
            // has space again. Such a connection is closed, not reused.
            .after_release(|conn, _| {
                Box::pin(async move {
                    if !conn.is_in_transaction() {
                        return Ok(true);
                    }
                    // Let a rollback queued by a dropped transaction run first.
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        let write_lock = Arc::new(tokio::sync::Mutex::new(()));
        let batch_conn = sqlx::ConnectOptions::connect(&options).await?;
        let batch = batch::Batcher::start(batch_conn, options, write_lock.clone());
        Ok(Self {
            pool,
            write_lock,
            batch,
            accounts: Arc::default(),
        })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE`).
    pub(crate) async fn write(&self) -> Result<WriteTx> {
        let guard = self.write_lock.clone().lock_owned().await;
        Ok(WriteTx {
            tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
            _lock: guard,
        })
    }

    /// A small key/value setting edited from the Remote UI.
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
