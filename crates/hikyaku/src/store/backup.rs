//! Backup and restore of the SQLite store.
//!
//! A backup is `VACUUM INTO` a new file: one read transaction, so the copy
//! is consistent while the server keeps accepting and delivering (readers
//! never block writers in WAL mode). A restore replaces the store of a data
//! directory that no server uses: the server holds an exclusive lock on
//! `hikyaku.lock` while it runs ([`lock_data_dir`]), and a store already
//! there is set aside, never deleted. Secrets in the store are sealed with
//! `master.key`, which is not in the backup: it must be kept with it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, Row as _};

use super::DB_FILE;

/// The lock file a running server holds in its data directory.
pub const LOCK_FILE: &str = "hikyaku.lock";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no hikyaku store in {0}: check data_dir in the configuration (--config)")]
    NoStore(String),
    #[error("{0} exists and is not empty: give a new file name (a backup never overwrites a file)")]
    TargetExists(String),
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the copy failed: {0}")]
    Db(String),
    #[error("{path} is not a usable hikyaku backup: {why}")]
    NotABackup { path: String, why: String },
    #[error(
        "a hikyaku server is running over {0}: stop it first (e.g. systemctl stop hikyaku), then restore"
    )]
    Running(String),
    #[error(
        "the store is PostgreSQL ({url}): hikyaku backup copies SQLite files only. Back it up with PostgreSQL's own tool, which is consistent while the servers run:\n  {command}\nrestore with pg_restore --clean --if-exists --dbname=URL FILE, and keep master.key with the dump (the tokens in it are sealed with that key)"
    )]
    Postgres { url: String, command: String },
    #[error(
        "the store is PostgreSQL ({url}): restore a pg_dump with PostgreSQL's own tool while every server is stopped:\n  {command}\nthen start the servers with the master.key kept with the dump"
    )]
    PostgresRestore { url: String, command: String },
    #[error("{0}")]
    StoreUrl(String),
    #[error(
        "{0} already holds a store: give --replace to set it aside (it is kept beside, renamed) and restore over it"
    )]
    StoreExists(String),
}

impl From<sqlx::Error> for BackupError {
    fn from(e: sqlx::Error) -> Self {
        BackupError::Db(e.to_string())
    }
}

/// What a backup holds, for the message after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub bytes: u64,
    pub accounts: i64,
    pub jobs_waiting: i64,
    pub jobs_total: i64,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub summary: Summary,
    /// Where the store that was there before went.
    pub set_aside: Option<PathBuf>,
}

fn options(path: &Path) -> Result<SqliteConnectOptions, BackupError> {
    Ok(SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(30)))
}

/// Creates `path` empty and readable by the owner only (the store holds
/// messages and sealed tokens); an existing empty file is taken as it is.
fn create_private(path: &Path) -> Result<std::fs::File, BackupError> {
    let shown = path.display().to_string();
    if let Ok(meta) = std::fs::metadata(path)
        && meta.len() > 0
    {
        return Err(BackupError::TargetExists(shown));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|error| BackupError::Write { path: shown, error })
}

/// Checks that `path` is an intact hikyaku store that this version can open,
/// and counts what it holds.
async fn inspect(path: &Path) -> Result<Summary, BackupError> {
    let shown = path.display().to_string();
    let bad = |why: String| BackupError::NotABackup {
        path: shown.clone(),
        why,
    };
    let bytes = std::fs::metadata(path)
        .map_err(|error| BackupError::Read {
            path: shown.clone(),
            error,
        })?
        .len();
    let mut conn = options(path)?
        .read_only(true)
        .connect()
        .await
        .map_err(|e| bad(e.to_string()))?;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| bad(e.to_string()))?;
    if check != "ok" {
        return Err(bad(format!("the integrity check says: {check}")));
    }
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .map_err(|_| bad("it holds no hikyaku schema".into()))?;
    let known = sqlx::migrate!("migrations/sqlite")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    if newest.unwrap_or(0) > known {
        return Err(bad(format!(
            "a newer hikyaku wrote it (schema {}, this version knows up to {known}); restore it with that version",
            newest.unwrap_or(0)
        )));
    }
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM accounts) AS accounts, \
         (SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'deferred', 'sending')) AS waiting, \
         (SELECT COUNT(*) FROM jobs) AS total",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| bad(e.to_string()))?;
    let summary = Summary {
        bytes,
        accounts: row.try_get("accounts")?,
        jobs_waiting: row.try_get("waiting")?,
        jobs_total: row.try_get("total")?,
    };
    conn.close().await.ok();
    Ok(summary)
}

/// The SQLite file `store.url` names (the data directory's by default), or
/// for PostgreSQL the error that gives the `pg_dump` (`restore`: the
/// `pg_restore`) command to use instead, for `file`.
pub fn sqlite_file(
    store_url: &str,
    data_dir: &Path,
    file: &Path,
    restore: bool,
) -> Result<PathBuf, BackupError> {
    use super::postgres::StoreUrl;
    match store_url.parse::<StoreUrl>() {
        Ok(StoreUrl::Sqlite(None)) => Ok(data_dir.join(DB_FILE)),
        Ok(StoreUrl::Sqlite(Some(path))) => Ok(path),
        Ok(StoreUrl::Postgres(url)) => {
            // The password stays out of the command: pg_dump reads it from
            // PGPASSWORD or ~/.pgpass.
            let url = super::copy::Location::Postgres(url).shown();
            let file = file.display();
            Err(if restore {
                BackupError::PostgresRestore {
                    command: format!(
                        "pg_restore --clean --if-exists --no-owner --dbname='{url}' {file}"
                    ),
                    url,
                }
            } else {
                BackupError::Postgres {
                    command: format!("pg_dump --format=custom --file={file} '{url}'"),
                    url,
                }
            })
        }
        Err(e) => Err(BackupError::StoreUrl(e.to_string())),
    }
}

/// Writes a consistent copy of the store in `data_dir` to `target`, which
/// must not exist yet (or be empty). A server may be running meanwhile.
pub async fn backup(data_dir: &Path, target: &Path) -> Result<Summary, BackupError> {
    backup_file(&data_dir.join(DB_FILE), target).await
}

/// [`backup`] of the SQLite file `db`.
pub async fn backup_file(db: &Path, target: &Path) -> Result<Summary, BackupError> {
    let db = db.to_path_buf();
    let data_dir = parent_dir(&db);
    if !db.is_file() {
        return Err(BackupError::NoStore(data_dir.display().to_string()));
    }
    let file = create_private(target)?;
    let shown = target.display().to_string();
    let result = async {
        let mut conn = options(&db)?.connect().await?;
        sqlx::query("VACUUM INTO ?1")
            .bind(target.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await?;
        conn.close().await.ok();
        file.sync_all().map_err(|error| BackupError::Write {
            path: shown.clone(),
            error,
        })?;
        inspect(target).await
    }
    .await;
    if result.is_err() {
        // A half-written copy must not pass for a backup later.
        let _ = std::fs::remove_file(target);
    }
    result
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Takes the data directory's lock, held for as long as the returned file
/// lives; `None` when another process holds it.
pub fn lock_data_dir(data_dir: &Path) -> Result<Option<std::fs::File>, BackupError> {
    let path = data_dir.join(LOCK_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&path).map_err(|error| BackupError::Write {
        path: path.display().to_string(),
        error,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(error)) => Err(BackupError::Write {
            path: path.display().to_string(),
            error,
        }),
    }
}

/// Restores the backup `source` as the store of `data_dir`, which no server
/// may be using. A store already there is renamed aside when `replace` is
/// given, refused otherwise.
pub async fn restore(
    source: &Path,
    data_dir: &Path,
    replace: bool,
    now: i64,
) -> Result<Restored, BackupError> {
    let summary = inspect(source).await?;
    super::create_private_dir(data_dir).map_err(|error| BackupError::Write {
        path: data_dir.display().to_string(),
        error,
    })?;
    let shown_dir = data_dir.display().to_string();
    let Some(_lock) = lock_data_dir(data_dir)? else {
        return Err(BackupError::Running(shown_dir));
    };
    let db = data_dir.join(DB_FILE);
    let with_suffix = |p: &Path, suffix: &str| {
        let mut name = p.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let exists = std::fs::metadata(&db).is_ok_and(|m| m.len() > 0);
    let mut set_aside = None;
    if exists {
        if !replace {
            return Err(BackupError::StoreExists(shown_dir));
        }
        // The WAL and its index belong to the old file: moved with it, so
        // that SQLite never applies them to the restored one.
        let aside = with_suffix(&db, &format!(".before-restore-{now}"));
        for suffix in ["", "-wal", "-shm"] {
            let from = with_suffix(&db, suffix);
            if from.exists() {
                let to = with_suffix(&aside, suffix);
                std::fs::rename(&from, &to).map_err(|error| BackupError::Write {
                    path: to.display().to_string(),
                    error,
                })?;
            }
        }
        set_aside = Some(aside);
    } else {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(&db, suffix));
        }
    }
    // Copied beside and renamed into place: a crash leaves the old state or
    // the new one, never half a file.
    let partial = with_suffix(&db, ".restoring");
    let _ = std::fs::remove_file(&partial);
    let mut out = create_private(&partial)?;
    let mut input = std::fs::File::open(source).map_err(|error| BackupError::Read {
        path: source.display().to_string(),
        error,
    })?;
    let write_err = |error| BackupError::Write {
        path: partial.display().to_string(),
        error,
    };
    std::io::copy(&mut input, &mut out).map_err(write_err)?;
    out.sync_all().map_err(write_err)?;
    std::fs::rename(&partial, &db).map_err(write_err)?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(Restored { summary, set_aside })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::queue::{JobStore as _, conformance};
    use crate::store::Store;

    #[tokio::test]
    async fn a_backup_restores_and_refuses_what_it_should() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let store = Store::open(&data).await.unwrap();
        store.enqueue(&conformance::job("q1"), 100).await.unwrap();
        let file = tmp.path().join("copy.sqlite");
        let summary = backup(&data, &file).await.unwrap();
        assert_eq!((summary.jobs_waiting, summary.jobs_total), (1, 1));
        assert!(summary.accounts >= 2);
        // Never over an existing file.
        assert!(matches!(
            backup(&data, &file).await,
            Err(BackupError::TargetExists(_))
        ));
        // Not over a running server's store.
        let held = lock_data_dir(&data).unwrap().unwrap();
        assert!(matches!(
            restore(&file, &data, true, 1).await,
            Err(BackupError::Running(_))
        ));
        drop(held);
        store.close().await;
        // A store already there needs --replace, and is kept.
        assert!(matches!(
            restore(&file, &data, false, 1).await,
            Err(BackupError::StoreExists(_))
        ));
        let r = restore(&file, &data, true, 7).await.unwrap();
        assert!(r.set_aside.unwrap().exists());
        // Into a fresh directory.
        let fresh = tmp.path().join("fresh");
        restore(&file, &fresh, false, 1).await.unwrap();
        let store = Store::open(&fresh).await.unwrap();
        assert_eq!(store.job("q1").await.unwrap().id, "q1");
        store.close().await;
        // Something else is no backup.
        let junk = tmp.path().join("junk");
        std::fs::write(&junk, b"not a database at all, just text").unwrap();
        assert!(matches!(
            restore(&junk, &tmp.path().join("x"), false, 1).await,
            Err(BackupError::NotABackup { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    /// On PostgreSQL, backup and restore name PostgreSQL's tools, with the
    /// exact command and without the password.
    #[test]
    fn postgresql_is_backed_up_with_pg_dump() {
        let url = "postgres://hikyaku:s3cret@db.example.com:5432/hikyaku";
        let file = Path::new("/backup/hikyaku.dump");
        let e = sqlite_file(url, Path::new("/d"), file, false).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("pg_dump --format=custom --file=/backup/hikyaku.dump 'postgres://hikyaku:***@db.example.com:5432/hikyaku'"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        let e = sqlite_file(url, Path::new("/d"), file, true).unwrap_err();
        assert!(e.to_string().contains("pg_restore --clean"), "{e}");
        // SQLite: the configured file, else the data directory's.
        assert_eq!(
            sqlite_file("", Path::new("/d"), file, false).unwrap(),
            Path::new("/d").join(DB_FILE)
        );
        assert_eq!(
            sqlite_file("sqlite:///x/y.sqlite", Path::new("/d"), file, false).unwrap(),
            Path::new("/x/y.sqlite")
        );
    }
}
