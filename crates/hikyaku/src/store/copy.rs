//! `hikyaku store copy`: moves a stopped installation from one store to
//! another (SQLite → PostgreSQL, or back), with every row that matters:
//! users, API tokens, accounts with their sealed secrets and tokens (copied
//! as they are: the same `master.key` opens them), submitters, allowlist,
//! CA certificates, settings, audit log, the chart's counts and the jobs
//! with their bodies and history.
//!
//! Not copied: sign-in sessions and setup links (people sign in again) and
//! PostgreSQL's per-instance limiter rows, which live only while a server
//! runs.
//!
//! Both sides are brought to this version's schema first (as a server start
//! would), then every table is read in one snapshot of the source and
//! written in one transaction of the target: a failed copy leaves the
//! target as it was. The ids are kept (jobs, accounts and submitters name
//! each other by id) and PostgreSQL's identity sequences are moved past
//! them. At the end the rows of each table are counted on both sides.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row as _, Sqlite, SqlitePool, Transaction};

use super::backup::LOCK_FILE;

/// The tables in an order where each row's references are already there.
/// Tables both sides have that are not named here are copied after these.
const ORDER: &[&str] = &[
    "users",
    "accounts",
    "api_tokens",
    "audit_log",
    "submitters",
    "allowlist",
    "ca_certificates",
    "settings",
    "jobs",
    "messages",
    "message_pieces",
    "job_stats",
];

/// Tables that are not moved: sessions and setup links (sign in again), the
/// migrations' own bookkeeping, the limiter rows of running instances, and
/// PostgreSQL's search text (written by a trigger as each job is copied)
/// and its chart counts in parts (copied as their sums, `job_stats`), and
/// SQLite's search index with its tables and its mark (between two SQLite
/// files they would be copied as rows, which corrupts the index; a copied
/// store's jobs are indexed by the server that opens it).
const SKIPPED: &[&str] = &[
    "sessions",
    "setup_tokens",
    "_sqlx_migrations",
    "account_starts",
    "account_slots",
    "account_slot_wants",
    "job_search",
    "job_stats_parts",
    "search_mark",
    "jobs_search",
    "jobs_search_data",
    "jobs_search_idx",
    "jobs_search_docsize",
    "jobs_search_config",
];

/// How long a server's sessions may take to leave the database's list
/// once it has closed them, before the copy takes them for a running server.
const SETTLE: Duration = Duration::from_secs(2);

/// How a PostgreSQL connection of the copy names itself, so that it does
/// not take itself for a running server (whose connections say `hikyaku`).
const APPLICATION_NAME: &str = "hikyaku store copy";

/// Rows written per INSERT (fewer for wide tables, see [`Copier::flush_at`]),
/// and the bytes of a batch after which it is written anyway.
const BATCH_ROWS: usize = 500;
const BATCH_BYTES: usize = 8 << 20;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl Location {
    /// How the location is named in messages: a PostgreSQL password never.
    pub fn shown(&self) -> String {
        match self {
            Location::Sqlite(p) => format!("sqlite://{}", p.display()),
            Location::Postgres(url) => redact(url),
        }
    }
}

/// `url` without its password.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "the PostgreSQL URL".into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the source and the target are the same store ({0}): name another target")]
    Same(String),
    #[error(
        "no hikyaku store at {0}: check the path (sqlite:// names the database file, e.g. sqlite:///var/lib/hikyaku/hikyaku.sqlite)"
    )]
    NoSource(String),
    #[error(
        "a hikyaku server is using {0}: stop every instance first (e.g. systemctl stop hikyaku), then copy"
    )]
    Running(String),
    #[error(
        "{target} already holds hikyaku data ({what}); nothing was changed. Copy into a new, empty database (e.g. createdb -O hikyaku hikyaku) or a new file"
    )]
    TargetHasData { target: String, what: String },
    #[error("cannot open {store}: {error}")]
    Open { store: String, error: String },
    #[error("cannot prepare {store}'s schema: {error}")]
    Migrate { store: String, error: String },
    #[error("table {table}, column {column}: {why}; nothing was written to the target")]
    Column {
        table: String,
        column: String,
        why: String,
    },
    #[error("copying {table} failed: {error}; nothing was written to the target")]
    Table { table: String, error: String },
    #[error("the copy failed: {0}")]
    Db(String),
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        CopyError::Db(e.to_string())
    }
}

/// A table's rows on both sides after the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: String,
    pub source: i64,
    pub target: i64,
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub tables: Vec<TableCount>,
}

impl Report {
    /// The tables whose counts differ.
    pub fn mismatches(&self) -> Vec<&TableCount> {
        self.tables
            .iter()
            .filter(|t| t.source != t.target)
            .collect()
    }

    /// The counts as a table for a terminal.
    pub fn render(&self) -> String {
        let width = self
            .tables
            .iter()
            .map(|t| t.table.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!("{:width$}  {:>10}  {:>10}\n", "table", "source", "target");
        for t in &self.tables {
            let mark = if t.source == t.target {
                ""
            } else {
                "  MISMATCH"
            };
            out.push_str(&format!(
                "{:width$}  {:>10}  {:>10}{mark}\n",
                t.table, t.source, t.target
            ));
        }
        out
    }
}

/// Where a copy is, for a progress line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress<'a> {
    pub table: &'a str,
    pub copied: i64,
    pub total: i64,
}

/// The kind of a column, as the copy reads and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Int4,
    Int2,
    Bool,
    Float,
    Text,
    Bytes,
}

impl Kind {
    fn of_sqlite(declared: &str) -> Option<Kind> {
        let d = declared.to_ascii_uppercase();
        // SQLite's type affinity rules (datatype3.html §3.1), in their order.
        if d.contains("INT") {
            Some(Kind::Int)
        } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
            Some(Kind::Text)
        } else if d.contains("BLOB") || d.is_empty() {
            Some(Kind::Bytes)
        } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
            Some(Kind::Float)
        } else {
            None
        }
    }

    fn of_postgres(data_type: &str) -> Option<Kind> {
        Some(match data_type {
            "bigint" => Kind::Int,
            "integer" => Kind::Int4,
            "smallint" => Kind::Int2,
            "boolean" => Kind::Bool,
            "double precision" | "real" => Kind::Float,
            "text" | "character varying" | "character" => Kind::Text,
            "bytea" => Kind::Bytes,
            _ => return None,
        })
    }
}

/// One value on its way from the source to the target.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    fn size(&self) -> usize {
        match self {
            Value::Text(s) => s.len(),
            Value::Bytes(b) => b.len(),
            _ => 8,
        }
    }

    /// This value as the target's column `kind` takes it.
    fn to_kind(&self, kind: Kind) -> Result<Value, String> {
        Ok(match (self, kind) {
            (Value::Null, _) => Value::Null,
            (Value::Int(i), Kind::Int | Kind::Int4 | Kind::Int2) => Value::Int(*i),
            (Value::Int(i), Kind::Float) => Value::Float(*i as f64),
            (Value::Int(i), Kind::Bool) => Value::Bool(*i != 0),
            (Value::Bool(b), Kind::Int | Kind::Int4 | Kind::Int2) => Value::Int(i64::from(*b)),
            (Value::Bool(b), Kind::Bool) => Value::Bool(*b),
            (Value::Float(f), Kind::Float) => Value::Float(*f),
            (Value::Text(s), Kind::Text) => Value::Text(s.clone()),
            (Value::Text(s), Kind::Bytes) => Value::Bytes(s.clone().into_bytes()),
            (Value::Bytes(b), Kind::Bytes) => Value::Bytes(b.clone()),
            (Value::Bytes(b), Kind::Text) => match String::from_utf8(b.clone()) {
                Ok(s) => Value::Text(s),
                Err(_) => return Err("bytes that are not UTF-8 text in a text column".into()),
            },
            (v, k) => return Err(format!("a value {v:?} cannot go into a {k:?} column")),
        })
    }
}

/// A column of a table on one side.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
    /// PostgreSQL `GENERATED ALWAYS AS IDENTITY`: written only with
    /// `OVERRIDING SYSTEM VALUE`.
    always: bool,
    /// A PostgreSQL identity column, whose sequence follows the copied ids.
    identity: bool,
}

/// An open side of the copy.
enum Side {
    Sqlite {
        pool: SqlitePool,
        /// The data directory's lock, held so that no server starts meanwhile.
        _lock: Option<std::fs::File>,
    },
    Postgres(PgPool),
}

impl Side {
    async fn close(&self) {
        match self {
            Side::Sqlite { pool, .. } => pool.close().await,
            Side::Postgres(pool) => pool.close().await,
        }
    }

    async fn tables(&self) -> Result<Vec<String>, CopyError> {
        Ok(match self {
            Side::Sqlite { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )
                .fetch_all(pool)
                .await?
            }
            Side::Postgres(pool) => {
                sqlx::query_scalar(
                    // job_stats is a view over its parts there (migration
                    // 0018), read and written as the table it is on SQLite.
                    "SELECT table_name::TEXT FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND (table_type = 'BASE TABLE' OR table_name = 'job_stats') ORDER BY 1",
                )
                .fetch_all(pool)
                .await?
            }
        })
    }

    async fn columns(&self, table: &str) -> Result<Vec<Column>, CopyError> {
        let unknown = |column: &str, ty: &str| CopyError::Column {
            table: table.into(),
            column: column.into(),
            why: format!("the copy does not know the column type {ty:?}"),
        };
        let mut out = Vec::new();
        match self {
            Side::Sqlite { pool, .. } => {
                let rows = sqlx::query("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")
                    .bind(table)
                    .fetch_all(pool)
                    .await?;
                for row in rows {
                    let name: String = row.try_get("name")?;
                    let ty: String = row.try_get("type")?;
                    let kind = Kind::of_sqlite(&ty).ok_or_else(|| unknown(&name, &ty))?;
                    out.push(Column {
                        name,
                        kind,
                        always: false,
                        identity: false,
                    });
                }
            }
            Side::Postgres(pool) => {
                let rows = sqlx::query(
                    "SELECT column_name::TEXT AS name, data_type::TEXT AS ty, \
                     is_identity::TEXT = 'YES' AS identity, \
                     COALESCE(identity_generation::TEXT, '') = 'ALWAYS' AS always \
                     FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(pool)
                .await?;
                for row in rows {
                    let name: String = row.try_get("name")?;
                    let ty: String = row.try_get("ty")?;
                    let kind = Kind::of_postgres(&ty).ok_or_else(|| unknown(&name, &ty))?;
                    out.push(Column {
                        name,
                        kind,
                        always: row.try_get("always")?,
                        identity: row.try_get("identity")?,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn count(&self, table: &str) -> Result<i64, CopyError> {
        let sql = format!("SELECT COUNT(*) FROM {}", ident(table));
        Ok(match self {
            Side::Sqlite { pool, .. } => {
                sqlx::query_scalar(AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?
            }
            Side::Postgres(pool) => {
                sqlx::query_scalar(AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// What the store holds beyond a fresh installation, e.g. "2 users,
    /// 10 jobs"; empty when nothing. A fresh schema has two unconfigured
    /// accounts (and maybe a setup link and settings of a server started
    /// once), which a copy replaces.
    async fn data(&self) -> Result<String, CopyError> {
        let mut found = Vec::new();
        let checks: &[(&str, &str)] = &[
            ("users", "SELECT COUNT(*) FROM users"),
            ("API tokens", "SELECT COUNT(*) FROM api_tokens"),
            (
                "configured accounts",
                "SELECT COUNT(*) FROM accounts WHERE updated_at <> 0 OR id > 2",
            ),
            ("submitters", "SELECT COUNT(*) FROM submitters"),
            ("allowlist entries", "SELECT COUNT(*) FROM allowlist"),
            ("CA certificates", "SELECT COUNT(*) FROM ca_certificates"),
            ("jobs", "SELECT COUNT(*) FROM jobs"),
            ("audit entries", "SELECT COUNT(*) FROM audit_log"),
        ];
        for (what, sql) in checks {
            let n: i64 = match self {
                Side::Sqlite { pool, .. } => sqlx::query_scalar(*sql).fetch_one(pool).await?,
                Side::Postgres(pool) => sqlx::query_scalar(*sql).fetch_one(pool).await?,
            };
            if n > 0 {
                found.push(format!("{n} {what}"));
            }
        }
        Ok(found.join(", "))
    }

    /// Whether a hikyaku server is connected to this PostgreSQL database.
    /// A session its server has just closed stays listed until its backend
    /// has exited (a busy database takes a moment): only sessions still
    /// there after [`SETTLE`] count.
    async fn servers_connected(pool: &PgPool) -> Result<i64, CopyError> {
        let deadline = std::time::Instant::now() + SETTLE;
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = 'hikyaku' AND pid <> pg_backend_pid()",
            )
            .fetch_one(pool)
            .await?;
            if n == 0 || std::time::Instant::now() >= deadline {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A table or column name in SQL (both engines quote with `"`).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether a server holds the lock of the data directory `dir`; the lock,
/// held for the copy, when no server does.
fn lock_dir(dir: &Path) -> Result<Option<std::fs::File>, CopyError> {
    let path = dir.join(LOCK_FILE);
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    else {
        // No lock file: no server ever ran here (or it is not writable to
        // us, and then neither is the store).
        return Ok(None);
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(CopyError::Running(format!("sqlite://{}", dir.display())))
        }
        Err(std::fs::TryLockError::Error(_)) => Ok(None),
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Opens one side and brings its schema to this version's.
async fn open(at: &Location, source: bool, data_dirs: &[PathBuf]) -> Result<Side, CopyError> {
    let shown = at.shown();
    let open_err = |e: sqlx::Error| CopyError::Open {
        store: shown.clone(),
        error: e.to_string(),
    };
    let migrate_err = |e: sqlx::migrate::MigrateError| CopyError::Migrate {
        store: shown.clone(),
        // A newer release's schema is said as the server says it.
        error: match super::StoreError::from(e) {
            super::StoreError::Migrate(e) => e.to_string(),
            e => e.to_string(),
        },
    };
    match at {
        Location::Sqlite(path) => {
            if source && !std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0) {
                return Err(CopyError::NoSource(shown));
            }
            // The server's lock is in its data directory: the file's own
            // directory by default, or the configured one.
            let dir = parent(path);
            let mut lock = lock_dir(&dir)?;
            for d in data_dirs {
                if *d != dir {
                    let other = lock_dir(d)?;
                    lock = lock.or(other);
                }
            }
            if !source {
                super::create_private_dir(&dir).map_err(|error| CopyError::Open {
                    store: shown.clone(),
                    error: error.to_string(),
                })?;
                super::create_private_file(path).map_err(|error| CopyError::Open {
                    store: shown.clone(),
                    error: error.to_string(),
                })?;
            }
            let options = SqliteConnectOptions::from_str("sqlite:")
                .map_err(open_err)?
                .filename(path)
                .create_if_missing(false)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(options)
                .await
                .map_err(open_err)?;
            sqlx::migrate!("migrations/sqlite")
                .run(&pool)
                .await
                .map_err(migrate_err)?;
            Ok(Side::Sqlite { pool, _lock: lock })
        }
        Location::Postgres(url) => {
            let options = PgConnectOptions::from_str(url)
                .map_err(open_err)?
                .application_name(APPLICATION_NAME)
                .options([("synchronous_commit", "on")]);
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .map_err(open_err)?;
            if Side::servers_connected(&pool).await? > 0 {
                pool.close().await;
                return Err(CopyError::Running(shown));
            }
            sqlx::migrate!("migrations/postgres")
                .run(&pool)
                .await
                .map_err(migrate_err)?;
            Ok(Side::Postgres(pool))
        }
    }
}

/// Copies the store at `from` into the empty store at `to` (see the
/// module's text); `data_dirs`: data directories whose server lock must be
/// free too (the configured one). `progress` is told of each table's start
/// and of every batch written.
pub async fn copy(
    from: &Location,
    to: &Location,
    data_dirs: &[PathBuf],
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Report, CopyError> {
    let same = match (from, to) {
        (Location::Sqlite(a), Location::Sqlite(b)) => {
            a == b
                || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
        }
        (Location::Postgres(a), Location::Postgres(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(CopyError::Same(from.shown()));
    }
    let source = open(from, true, data_dirs).await?;
    let target = match open(to, false, data_dirs).await {
        Ok(t) => t,
        Err(e) => {
            source.close().await;
            return Err(e);
        }
    };
    let result = run(&source, &target, to, progress).await;
    source.close().await;
    target.close().await;
    result
}

/// The tables to copy, in order, with their columns on both sides.
async fn plan(
    source: &Side,
    target: &Side,
) -> Result<Vec<(String, Vec<(Column, Column)>)>, CopyError> {
    let src_tables = source.tables().await?;
    let tgt_tables = target.tables().await?;
    let common: Vec<&String> = src_tables
        .iter()
        .filter(|t| tgt_tables.contains(t) && !SKIPPED.contains(&t.as_str()))
        .collect();
    let mut ordered: Vec<String> = ORDER
        .iter()
        .filter(|t| common.iter().any(|c| c == *t))
        .map(|t| (*t).to_owned())
        .collect();
    for t in common {
        if !ordered.contains(t) {
            ordered.push(t.clone());
        }
    }
    let mut out = Vec::new();
    for table in ordered {
        let src: HashMap<String, Column> = source
            .columns(&table)
            .await?
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect();
        // In the target's order; a column only one side has is an engine's
        // own (the lease owner, PostgreSQL's insertion order) and keeps its
        // default.
        let pairs: Vec<(Column, Column)> = target
            .columns(&table)
            .await?
            .into_iter()
            .filter_map(|t| src.get(&t.name).map(|s| (s.clone(), t)))
            .collect();
        out.push((table, pairs));
    }
    Ok(out)
}

/// The order rows are read in: insertion order for the jobs (which the
/// queue keeps for equal due times), else the key, so that ids grow.
fn order_by(table: &str, source: &Side, columns: &[(Column, Column)]) -> &'static str {
    let has = |name: &str| columns.iter().any(|(s, _)| s.name == name);
    match (table, source) {
        ("jobs", Side::Sqlite { .. }) => " ORDER BY rowid",
        ("jobs", Side::Postgres(_)) => " ORDER BY seq",
        _ if has("id") => " ORDER BY id",
        _ => "",
    }
}

/// The target's open transaction.
enum TargetTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// The source's read snapshot.
enum SourceTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

async fn run(
    source: &Side,
    target: &Side,
    to: &Location,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Report, CopyError> {
    let plan = plan(source, target).await?;
    // No server runs on the target (checked when it was opened), so
    // nothing can slip in between this check and the transaction.
    let what = target.data().await?;
    if !what.is_empty() {
        return Err(CopyError::TargetHasData {
            target: to.shown(),
            what,
        });
    }
    let mut tx = match target {
        Side::Sqlite { pool, .. } => TargetTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        Side::Postgres(pool) => TargetTx::Postgres(pool.begin().await?),
    };
    // A fresh schema's seed rows (two unconfigured accounts) and whatever a
    // server started once left (settings, setup link) make way.
    let target_tables = target.tables().await?;
    let cleared = plan.iter().rev().map(|(t, _)| t.as_str()).chain(
        ["sessions", "setup_tokens"]
            .into_iter()
            .filter(|t| target_tables.iter().any(|x| x == t)),
    );
    for table in cleared {
        let sql = format!("DELETE FROM {}", ident(table));
        match &mut tx {
            TargetTx::Sqlite(t) => {
                sqlx::query(AssertSqlSafe(sql)).execute(&mut **t).await?;
            }
            TargetTx::Postgres(t) => {
                sqlx::query(AssertSqlSafe(sql)).execute(&mut **t).await?;
            }
        }
    }
    let mut snapshot = match source {
        Side::Sqlite { pool, .. } => SourceTx::Sqlite(pool.begin_with("BEGIN").await?),
        Side::Postgres(pool) => SourceTx::Postgres(
            pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?,
        ),
    };
    let mut counts = Vec::new();
    for (table, columns) in &plan {
        let count_sql = format!("SELECT COUNT(*) FROM {}", ident(table));
        let total: i64 = match &mut snapshot {
            SourceTx::Sqlite(s) => {
                sqlx::query_scalar(AssertSqlSafe(count_sql))
                    .fetch_one(&mut **s)
                    .await?
            }
            SourceTx::Postgres(s) => {
                sqlx::query_scalar(AssertSqlSafe(count_sql))
                    .fetch_one(&mut **s)
                    .await?
            }
        };
        progress(Progress {
            table,
            copied: 0,
            total,
        });
        copy_table(
            &mut snapshot,
            &mut tx,
            source,
            table,
            columns,
            total,
            progress,
        )
        .await
        .map_err(|e| match e {
            CopyError::Db(error) => CopyError::Table {
                table: table.clone(),
                error,
            },
            other => other,
        })?;
        counts.push((table.clone(), total));
    }
    if let TargetTx::Postgres(t) = &mut tx {
        for (table, columns) in &plan {
            for (_, c) in columns.iter().filter(|(_, c)| c.identity) {
                // The next id is past every copied one (is_called false: the
                // value given is the next one handed out).
                let sql = format!(
                    "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX({col}), 0) + 1, false) FROM {tab}",
                    col = ident(&c.name),
                    tab = ident(table)
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(ident(table))
                    .bind(&c.name)
                    .execute(&mut **t)
                    .await?;
            }
        }
    }
    match tx {
        TargetTx::Sqlite(t) => t.commit().await?,
        TargetTx::Postgres(t) => t.commit().await?,
    }
    drop(snapshot);
    // Counted again after the commit, on fresh reads of the target.
    let mut report = Report::default();
    for (table, source_rows) in counts {
        let target_rows = target.count(&table).await?;
        report.tables.push(TableCount {
            table,
            source: source_rows,
            target: target_rows,
        });
    }
    Ok(report)
}

/// Reads a column of a SQLite row as `kind`. SQLite's columns take any
/// value whatever their declared type, hence unchecked reads.
fn read_sqlite(row: &sqlx::sqlite::SqliteRow, i: usize, kind: Kind) -> sqlx::Result<Value> {
    Ok(match kind {
        Kind::Int | Kind::Int4 | Kind::Int2 | Kind::Bool => row
            .try_get_unchecked::<Option<i64>, _>(i)?
            .map_or(Value::Null, Value::Int),
        Kind::Float => row
            .try_get_unchecked::<Option<f64>, _>(i)?
            .map_or(Value::Null, Value::Float),
        Kind::Text => row
            .try_get_unchecked::<Option<String>, _>(i)?
            .map_or(Value::Null, Value::Text),
        Kind::Bytes => row
            .try_get_unchecked::<Option<Vec<u8>>, _>(i)?
            .map_or(Value::Null, Value::Bytes),
    })
}

fn read_pg(row: &sqlx::postgres::PgRow, i: usize, kind: Kind) -> sqlx::Result<Value> {
    Ok(match kind {
        Kind::Int => row
            .try_get::<Option<i64>, _>(i)?
            .map_or(Value::Null, Value::Int),
        Kind::Int4 => row
            .try_get::<Option<i32>, _>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Kind::Int2 => row
            .try_get::<Option<i16>, _>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Kind::Bool => row
            .try_get::<Option<bool>, _>(i)?
            .map_or(Value::Null, Value::Bool),
        Kind::Float => row
            .try_get::<Option<f64>, _>(i)?
            .map_or(Value::Null, Value::Float),
        Kind::Text => row
            .try_get::<Option<String>, _>(i)?
            .map_or(Value::Null, Value::Text),
        Kind::Bytes => row
            .try_get::<Option<Vec<u8>>, _>(i)?
            .map_or(Value::Null, Value::Bytes),
    })
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;
type LiteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds a value already in its target column's kind ([`Value::to_kind`]).
fn bind_pg(q: PgQuery<'_>, v: Value, kind: Kind) -> Result<PgQuery<'_>, String> {
    let out_of_range = |i: i64| format!("{i} does not fit the column");
    Ok(match (v, kind) {
        (Value::Null, Kind::Int) => q.bind(None::<i64>),
        (Value::Null, Kind::Int4) => q.bind(None::<i32>),
        (Value::Null, Kind::Int2) => q.bind(None::<i16>),
        (Value::Null, Kind::Bool) => q.bind(None::<bool>),
        (Value::Null, Kind::Float) => q.bind(None::<f64>),
        (Value::Null, Kind::Text) => q.bind(None::<String>),
        (Value::Null, Kind::Bytes) => q.bind(None::<Vec<u8>>),
        (Value::Int(i), Kind::Int) => q.bind(i),
        (Value::Int(i), Kind::Int4) => q.bind(i32::try_from(i).map_err(|_| out_of_range(i))?),
        (Value::Int(i), Kind::Int2) => q.bind(i16::try_from(i).map_err(|_| out_of_range(i))?),
        (Value::Bool(b), _) => q.bind(b),
        (Value::Float(f), _) => q.bind(f),
        (Value::Text(s), _) => q.bind(s),
        (Value::Bytes(b), _) => q.bind(b),
        (v, k) => return Err(format!("a value {v:?} cannot go into a {k:?} column")),
    })
}

fn bind_sqlite(q: LiteQuery<'_>, v: Value, kind: Kind) -> LiteQuery<'_> {
    match v {
        Value::Null => match kind {
            Kind::Float => q.bind(None::<f64>),
            Kind::Text => q.bind(None::<String>),
            Kind::Bytes => q.bind(None::<Vec<u8>>),
            _ => q.bind(None::<i64>),
        },
        Value::Int(i) => q.bind(i),
        Value::Bool(b) => q.bind(i64::from(b)),
        Value::Float(f) => q.bind(f),
        Value::Text(s) => q.bind(s),
        Value::Bytes(b) => q.bind(b),
    }
}

/// The rows of one table on their way, written in multi-row INSERTs.
struct Copier<'a> {
    table: &'a str,
    columns: &'a [(Column, Column)],
    total: i64,
    copied: i64,
    rows: Vec<Vec<Value>>,
    bytes: usize,
}

impl Copier<'_> {
    /// Rows per INSERT: within both engines' limit on parameters.
    fn flush_at(&self) -> usize {
        (30_000 / self.columns.len().max(1)).clamp(1, BATCH_ROWS)
    }

    /// Takes a source row (in the source's kinds) and writes the batch when
    /// it is full.
    async fn push(
        &mut self,
        tx: &mut TargetTx,
        row: Vec<Value>,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) -> Result<(), CopyError> {
        let mut converted = Vec::with_capacity(row.len());
        for (v, (_, t)) in row.into_iter().zip(self.columns) {
            let v = v.to_kind(t.kind).map_err(|why| CopyError::Column {
                table: self.table.into(),
                column: t.name.clone(),
                why,
            })?;
            self.bytes += v.size();
            converted.push(v);
        }
        self.rows.push(converted);
        if self.rows.len() >= self.flush_at() || self.bytes >= BATCH_BYTES {
            self.flush(tx, progress).await?;
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        tx: &mut TargetTx,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) -> Result<(), CopyError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        self.bytes = 0;
        let n = rows.len();
        let width = self.columns.len();
        let is_pg = matches!(tx, TargetTx::Postgres(_));
        let names: Vec<String> = self.columns.iter().map(|(_, t)| ident(&t.name)).collect();
        let overriding = if is_pg && self.columns.iter().any(|(_, t)| t.always) {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        };
        let mut sql = format!(
            "INSERT INTO {} ({}){overriding} VALUES ",
            ident(self.table),
            names.join(", ")
        );
        for r in 0..n {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..width {
                if c > 0 {
                    sql.push_str(", ");
                }
                let p = r * width + c + 1;
                sql.push_str(&if is_pg {
                    format!("${p}")
                } else {
                    format!("?{p}")
                });
            }
            sql.push(')');
        }
        let column_err = |column: &str, why: String| CopyError::Column {
            table: self.table.into(),
            column: column.into(),
            why,
        };
        match tx {
            TargetTx::Postgres(t) => {
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for row in rows {
                    for (v, (_, c)) in row.into_iter().zip(self.columns) {
                        q = bind_pg(q, v, c.kind).map_err(|why| column_err(&c.name, why))?;
                    }
                }
                q.execute(&mut **t).await?;
            }
            TargetTx::Sqlite(t) => {
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for row in rows {
                    for (v, (_, c)) in row.into_iter().zip(self.columns) {
                        q = bind_sqlite(q, v, c.kind);
                    }
                }
                q.execute(&mut **t).await?;
            }
        }
        self.copied += i64::try_from(n).unwrap_or(i64::MAX);
        progress(Progress {
            table: self.table,
            copied: self.copied,
            total: self.total,
        });
        Ok(())
    }
}

async fn copy_table(
    snapshot: &mut SourceTx,
    tx: &mut TargetTx,
    source: &Side,
    table: &str,
    columns: &[(Column, Column)],
    total: i64,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<(), CopyError> {
    if columns.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = columns.iter().map(|(s, _)| ident(&s.name)).collect();
    let select = format!(
        "SELECT {} FROM {}{}",
        names.join(", "),
        ident(table),
        order_by(table, source, columns)
    );
    let mut copier = Copier {
        table,
        columns,
        total,
        copied: 0,
        rows: Vec::new(),
        bytes: 0,
    };
    match snapshot {
        SourceTx::Sqlite(s) => {
            let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut **s);
            while let Some(row) = rows.try_next().await? {
                let values = columns
                    .iter()
                    .enumerate()
                    .map(|(i, (c, _))| read_sqlite(&row, i, c.kind))
                    .collect::<sqlx::Result<Vec<_>>>()?;
                copier.push(tx, values, progress).await?;
            }
        }
        SourceTx::Postgres(s) => {
            let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut **s);
            while let Some(row) = rows.try_next().await? {
                let values = columns
                    .iter()
                    .enumerate()
                    .map(|(i, (c, _))| read_pg(&row, i, c.kind))
                    .collect::<sqlx::Result<Vec<_>>>()?;
                copier.push(tx, values, progress).await?;
            }
        }
    }
    copier.flush(tx, progress).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::queue::{JobState, JobStore as _, conformance};
    use crate::roles::Role;
    use crate::store::Store;

    async fn quiet(from: &Location, to: &Location) -> Result<Report, CopyError> {
        let mut seen = Vec::new();
        let mut progress = |p: Progress<'_>| seen.push((p.table.to_owned(), p.copied, p.total));
        copy(from, to, &[], &mut progress).await
    }

    /// SQLite → PostgreSQL → SQLite keeps rows, ids, sealed bytes, bodies
    /// and the queue's order; PostgreSQL's ids continue past the copied
    /// ones; a target that holds data is refused and left alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_goes_to_postgresql_and_back_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let lite = Store::open(&tmp.path().join("a")).await.unwrap();
        let admin = lite
            .create_user("admin", Role::Administrator, "$argon2id$x", 5)
            .await
            .unwrap();
        lite.create_user("bob", Role::GeneralUser, "$argon2id$y", 6)
            .await
            .unwrap();
        // A sealed token: bytes that are not UTF-8.
        let sealed: Vec<u8> = (0u8..=255).rev().collect();
        sqlx::query(
            "UPDATE accounts SET refresh_token = ?1, enabled = 1, updated_at = 9 WHERE id = 1",
        )
        .bind(&sealed)
        .execute(lite.pool())
        .await
        .unwrap();
        lite.set_setting("k", "v").await.unwrap();
        for id in ["z-first", "q-second", "m-third"] {
            lite.enqueue(&conformance::job(id), 100).await.unwrap();
        }
        // A message in pieces, and a piece of one still arriving.
        lite.store_piece("pieces", 0, b"first piece ".to_vec().into(), 100)
            .await
            .unwrap();
        lite.enqueue_pieces(conformance::job("pieces"), 1, 100, 100)
            .await
            .unwrap();
        lite.store_piece("arriving", 0, b"x".to_vec().into(), 100)
            .await
            .unwrap();
        let (claimed, _) = lite.claim_due_jobs_with_bodies(100, 700, 1).await.unwrap()[0].clone();
        assert_eq!(claimed.id, "z-first");
        lite.close().await;

        let from = Location::Sqlite(tmp.path().join("a").join(crate::store::DB_FILE));
        let url = testkit::postgres::database();
        let to = Location::Postgres(url.clone());
        let report = quiet(&from, &to).await.unwrap();
        assert!(report.mismatches().is_empty(), "{}", report.render());
        let count = |t: &str| {
            report
                .tables
                .iter()
                .find(|c| c.table == t)
                .map(|c| c.target)
        };
        assert_eq!(count("jobs"), Some(4));
        assert_eq!(count("messages"), Some(4));
        assert_eq!(count("message_pieces"), Some(3));
        assert_eq!(count("users"), Some(2));
        assert_eq!(count("accounts"), Some(2));
        assert_eq!(count("sessions"), None, "sessions are not copied");

        let pg = Store::open_postgres(&url, "x").await.unwrap();
        assert_eq!(
            pg.sealed_secrets(1).await.unwrap().refresh_token,
            Some(sealed.clone())
        );
        assert_eq!(pg.setting("k").await.unwrap().as_deref(), Some("v"));
        assert_eq!(pg.job("z-first").await.unwrap().state, JobState::Sending);
        assert_eq!(
            pg.job_body("pieces").await.unwrap(),
            [&b"first piece "[..], &conformance::job("pieces").body[..]].concat()
        );
        assert_eq!(
            pg.job_body("m-third").await.unwrap(),
            conformance::job("m-third").body.to_vec()
        );
        // Equal due times keep their order of arrival (not their ids').
        let order: Vec<String> = pg
            .claim_due_jobs_with_bodies(10_000, 20_000, 3)
            .await
            .unwrap()
            .into_iter()
            .map(|(j, _)| j.id)
            .collect();
        assert_eq!(order, ["q-second", "m-third", "pieces"]);
        // Not while a server is connected to the database.
        let busy = Location::Sqlite(tmp.path().join("busy.sqlite"));
        let refused = quiet(&to, &busy).await.unwrap_err();
        assert!(matches!(refused, CopyError::Running(_)), "{refused}");
        // New rows get new ids.
        let carol = pg
            .create_user("carol", Role::GeneralUser, "h", 7)
            .await
            .unwrap();
        assert!(
            carol > admin + 1,
            "identity moved past the copied ids: {carol}"
        );
        pg.close().await;

        // Not into a store that holds data.
        let again = quiet(&from, &to).await.unwrap_err();
        assert!(
            matches!(&again, CopyError::TargetHasData { what, .. } if what.contains("3 users")),
            "{again}"
        );
        let pg = Store::open_postgres(&url, "x").await.unwrap();
        assert!(
            pg.job("q-second").await.is_ok(),
            "the refused copy changed nothing"
        );
        pg.close().await;

        // And back into a new SQLite file.
        let back = Location::Sqlite(tmp.path().join("b").join("copy.sqlite"));
        let report = quiet(&to, &back).await.unwrap();
        assert!(report.mismatches().is_empty(), "{}", report.render());
        let lite = Store::open_file(&tmp.path().join("b").join("copy.sqlite"))
            .await
            .unwrap();
        assert_eq!(
            lite.sealed_secrets(1).await.unwrap().refresh_token,
            Some(sealed)
        );
        assert_eq!(lite.count_users().await.unwrap(), 3);
        assert_eq!(lite.job("z-first").await.unwrap().state, JobState::Sending);
        assert_eq!(
            lite.job_body("pieces").await.unwrap(),
            [&b"first piece "[..], &conformance::job("pieces").body[..]].concat()
        );
        lite.close().await;

        // The same store twice, and a missing source, are refused.
        assert!(matches!(quiet(&to, &to).await, Err(CopyError::Same(_))));
        let missing = Location::Sqlite(tmp.path().join("nothing.sqlite"));
        assert!(matches!(
            quiet(&missing, &back).await,
            Err(CopyError::NoSource(_))
        ));
    }

    /// SQLite to another SQLite file: the jobs arrive and their search
    /// index is built anew for them by the store that opens the copy (the
    /// index's own tables are not copied).
    #[tokio::test]
    async fn a_sqlite_store_copies_to_another_sqlite_file_with_its_search() {
        let tmp = tempfile::tempdir().unwrap();
        let lite = Store::open(&tmp.path().join("a")).await.unwrap();
        for (i, id) in ["first", "second", "third"].into_iter().enumerate() {
            let mut job = conformance::job(id);
            job.mail_from = format!("{id}@copied.example");
            lite.enqueue(&job, 100 + i64::try_from(i).unwrap())
                .await
                .unwrap();
        }
        // Two of them in the source's index, one not yet.
        lite.index_search().await.unwrap();
        lite.enqueue(&conformance::job("fourth"), 200)
            .await
            .unwrap();
        lite.close().await;

        let from = Location::Sqlite(tmp.path().join("a").join(crate::store::DB_FILE));
        let to_file = tmp.path().join("b").join("copy.sqlite");
        let report = quiet(&from, &Location::Sqlite(to_file.clone()))
            .await
            .unwrap();
        assert!(report.mismatches().is_empty(), "{}", report.render());
        assert!(
            report
                .tables
                .iter()
                .all(|t| !t.table.starts_with("jobs_search")),
            "{}",
            report.render()
        );
        let copy = Store::open_file(&to_file).await.unwrap();
        let search = |term: &str| {
            let filter = crate::queue::JobFilter {
                search: Some(term.to_owned()),
                ..Default::default()
            };
            let copy = copy.clone();
            async move {
                copy.jobs(&filter, 10, 0)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|j| j.id)
                    .collect::<Vec<_>>()
            }
        };
        let all = ["third", "second", "first"];
        assert_eq!(search("@copied.example").await, all);
        copy.index_search().await.unwrap();
        assert_eq!(search("@copied.example").await, all);
        assert_eq!(search("second@copied").await, ["second"]);
        sqlx::query("INSERT INTO jobs_search(jobs_search, rank) VALUES ('integrity-check', 1)")
            .execute(copy.pool())
            .await
            .unwrap();
        copy.close().await;
    }

    #[test]
    fn a_password_never_shows() {
        let at = Location::Postgres("postgres://hikyaku:s3cret@db:5432/hikyaku".into());
        assert!(!at.shown().contains("s3cret"), "{}", at.shown());
        assert!(at.shown().contains("db:5432/hikyaku"));
    }
}
