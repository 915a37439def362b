//! The store: every piece of state that must survive a restart. SQLite (WAL,
//! `synchronous=FULL`) is the embedded default; callers see only [`Store`], so
//! that a PostgreSQL engine can be added behind the same methods.
//! Write transactions start with `BEGIN IMMEDIATE` so that a read-then-write
//! never fails with SQLITE_BUSY_SNAPSHOT.

pub mod accounts;
pub mod audit;
pub mod backup;
pub mod ca;
pub mod copy;
#[cfg(test)]
mod engines_tests;
pub mod export;
pub mod jobs;
pub mod postgres;
pub mod retention;
pub(crate) mod sql;
pub mod stats;
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
    // The causes below are part of the message, not chained as `source()`:
    // printed with its chain, an error says each cause once.
    #[error("database migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// The schema has a migration this release does not know: a newer
    /// release set it up (a cluster upgraded in part, or a downgrade).
    #[error(
        "the database was upgraded by a newer release of hikyaku (its migration {0} is unknown to this one): run the same release on every instance that shares it"
    )]
    NewerSchema(i64),
    #[error("cannot create the data directory {path}: {error}")]
    DataDir { path: String, error: std::io::Error },
    #[error("cannot create the database {path}: {error}")]
    DbFile { path: String, error: std::io::Error },
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
    #[error("an account named {0} already exists")]
    AccountExists(String),
    #[error("the last Administrator cannot be deleted or given another role")]
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

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::VersionMissing(v) => StoreError::NewerSchema(v),
            e => StoreError::Migrate(e),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // PostgreSQL's codes are SQLSTATEs, classified apart.
        if let sqlx::Error::Database(db) = &e
            && db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
        {
            return postgres::pg(e);
        }
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

// The data directory holds queued messages, the users' password hashes and the
// (encrypted) tokens: only the user hikyaku runs as may read it. The directory
// is created 0700 and the database file 0600 before SQLite opens it. SQLite's
// unix VFS creates the -wal and -shm files with the database file's own
// permissions (and sets them so whatever the umask), so they are 0600 too;
// this holds for every caller of `Store::open`, where a umask set by the
// binary would cover only the binary (and need `unsafe`, which the crate
// forbids). An existing directory or database that others can read is left
// as it is (an administrator may have opened it on purpose) but logged.

/// Creates `dir` (and missing parents) readable only by the owner on Unix.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates the empty database file readable only by the owner on Unix,
/// unless it exists.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Logs a warning for the data directory and each database file that other
/// local users can read.
fn warn_if_shared(data_dir: &Path, db: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut paths = vec![(data_dir.to_path_buf(), "700")];
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            paths.push((name.into(), "600"));
        }
        for (path, wanted) in paths {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "other local users can read this part of the data directory; restrict it with: chmod {wanted} {}",
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (data_dir, db);
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    engine: Engine,
    /// The accounts as last read ([`accounts::AccountsCache`]).
    accounts: Arc<accounts::AccountsCache>,
}

/// The database behind a [`Store`]. Each operation runs its own SQL per
/// engine (see [`sql`]); the queue on PostgreSQL is [`postgres::PgStore`]'s.
#[derive(Debug, Clone)]
pub(crate) enum Engine {
    Sqlite(SqliteEngine),
    Postgres(postgres::PgStore),
}

/// How long a pooled SQLite connection may stay unused before it is closed.
const IDLE_CONNECTION: Duration = Duration::from_secs(20);

/// A pooled SQLite connection unused this long frees its page cache before
/// its next use (see `open_at`).
const IDLE_SHRINK: Duration = Duration::from_secs(2);

/// The embedded SQLite file of one instance.
#[derive(Debug, Clone)]
pub(crate) struct SqliteEngine {
    pool: SqlitePool,
    /// Held for the life of every write transaction. SQLite allows one
    /// writer; waiting here (a fair queue) instead of in SQLite's busy
    /// handler, which sleeps in growing steps, keeps writes back to back.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Group commit of accepted messages, claims and finished jobs ([`jobs::batch`]).
    batch: jobs::batch::Batcher,
}

impl SqliteEngine {
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
}

/// A write transaction that holds the store's write lock.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<()> {
        let started = std::time::Instant::now();
        let done = self.tx.commit().await;
        crate::metrics::store_commit(started.elapsed());
        Ok(done?)
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
        Self::open_at(data_dir, data_dir.join(DB_FILE)).await
    }

    /// Opens (creating if needed) the SQLite file `path` (`store.url =
    /// "sqlite://PATH"`) and runs migrations.
    pub async fn open_file(path: &Path) -> Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        Self::open_at(&dir, path.to_path_buf()).await
    }

    async fn open_at(data_dir: &Path, path: std::path::PathBuf) -> Result<Self> {
        create_private_dir(data_dir).map_err(|error| StoreError::DataDir {
            path: data_dir.display().to_string(),
            error,
        })?;
        create_private_file(&path).map_err(|error| StoreError::DbFile {
            path: path.display().to_string(),
            error,
        })?;
        warn_if_shared(data_dir, &path);
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
            // Each pooled connection keeps its page cache and its
            // prepared statements; those a burst of load opened are closed
            // once idle this long (checked as often), so the process shrinks
            // back within a minute. Under load they stay in use and open.
            .idle_timeout(IDLE_CONNECTION)
            // After a burst the relay's periodic queries take the idle
            // connections in turn (the pool's queue is first in, first out),
            // so none reaches the idle timeout and each kept its page cache
            // (up to 2 MiB, filled with the burst's bodies): most of what the
            // relay held a minute after a load. A connection that rested a
            // while gives that memory back before its next use; under load
            // none rests that long and the cache stays as SQLite sized it
            // (a smaller cache slowed the intake of a store with a large
            // history).
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_SHRINK {
                        sqlx::query("PRAGMA shrink_memory")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(true)
                })
            })
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
        let batch = jobs::batch::Batcher::start(batch_conn, options, write_lock.clone());
        Ok(Self {
            engine: Engine::Sqlite(SqliteEngine {
                pool,
                write_lock,
                batch,
            }),
            accounts: Arc::default(),
        })
    }

    /// Connects to the PostgreSQL database at `url` as instance `owner`
    /// (see [`postgres::PgStore::connect`]) and brings its schema up to
    /// date. Leases use the callers' times as given (tests that move time).
    pub async fn open_postgres(url: &str, owner: &str) -> Result<Self> {
        Ok(Self {
            engine: Engine::Postgres(postgres::PgStore::connect(url, owner).await?),
            accounts: Arc::default(),
        })
    }

    /// [`Store::open_postgres`] for a running instance: its job leases
    /// last `lease` on the database's clock, so that instances whose clocks
    /// disagree still agree on when a lease ran out.
    pub async fn open_postgres_instance(
        url: &str,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Self> {
        Ok(Self {
            engine: Engine::Postgres(
                postgres::PgStore::connect(url, owner)
                    .await?
                    .with_database_clock(lease),
            ),
            accounts: Arc::default(),
        })
    }

    /// Counts the intakes' open mail transactions, for an engine whose
    /// group commit waits a moment for them (PostgreSQL, where each
    /// statement costs a round trip and a plan's run); `None` on SQLite,
    /// whose commit gathers what is ready without waiting.
    pub fn arrivals(&self) -> Option<&Arc<crate::queue::arrivals::Arrivals>> {
        match &self.engine {
            Engine::Sqlite(_) => None,
            Engine::Postgres(pg) => Some(pg.arrivals()),
        }
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The SQLite pool, for tests that read or shape rows directly.
    #[cfg(test)]
    #[allow(clippy::panic)] // a test on the wrong engine fails loudly
    pub(crate) fn pool(&self) -> &SqlitePool {
        match &self.engine {
            Engine::Sqlite(s) => &s.pool,
            Engine::Postgres(_) => panic!("this test reads SQLite"),
        }
    }

    /// The PostgreSQL engine, `None` on SQLite.
    pub fn postgres(&self) -> Option<&postgres::PgStore> {
        match &self.engine {
            Engine::Sqlite(_) => None,
            Engine::Postgres(p) => Some(p),
        }
    }

    /// Whether the database answers (a cheap round trip).
    pub async fn ping(&self) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            sqlx::query(q("SELECT 1")).execute(p).await?;
        });
        Ok(())
    }

    /// A small key/value setting edited from the Remote UI.
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(crate::on_pool!(self, |p, q| {
            sqlx::query_scalar(q("SELECT value FROM settings WHERE key = ?1"))
                .bind(key)
                .fetch_optional(p)
                .await?
        }))
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            sqlx::query(q("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value"))
                .bind(key)
                .bind(value)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Closes the pool (on SQLite, checkpointing the WAL).
    pub async fn close(&self) {
        match &self.engine {
            Engine::Sqlite(s) => s.pool.close().await,
            Engine::Postgres(p) => p.close().await,
        }
    }
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Whatever the umask (the test runner's is usually 022), the data
    /// directory and every file of the database are the owner's alone.
    #[tokio::test]
    async fn data_dir_and_database_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data/nested");
        let store = Store::open(&dir).await.unwrap();
        store.set_setting("k", "v").await.unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("data")), 0o700);
        for suffix in ["", "-wal", "-shm"] {
            let path = dir.join(format!("{DB_FILE}{suffix}"));
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
        store.close().await;
        // An existing database keeps its data when opened again.
        let store = Store::open(&dir).await.unwrap();
        assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("v"));
        store.close().await;
    }

    /// A database a newer release migrated (a downgrade) is refused with
    /// what to do, not with sqlx's words alone.
    #[tokio::test]
    async fn an_older_release_refuses_a_database_a_newer_one_migrated() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'a later release', 1, x'00', 0)",
        )
        .execute(store.pool())
        .await
        .unwrap();
        store.close().await;
        let Err(e) = Store::open(tmp.path()).await else {
            panic!("opened a database with an unknown migration");
        };
        assert!(matches!(e, StoreError::NewerSchema(9999)), "{e:?}");
        assert!(e.to_string().contains("newer release"), "{e}");
    }
}
