//! Start-up and shutdown: store → tokens → web (and the SMTP intake and
//! delivery when configured), all under one cancellation token so that
//! SIGINT/SIGTERM stop everything cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::proxy::SharedProxy;
use crate::queue::JobStore as _;
use crate::secrets::{MasterKey, hash_token, random_token};
use crate::store::Store;
use crate::store::postgres::StoreUrl;
use crate::tokens::TokenService;
use crate::web::{self, AppState};

/// Why hikyaku could not start or stopped.
///
/// Each message is complete on its own (the cause's text is part of it) and
/// no variant chains its cause as `source()`, so printing the error with its
/// chain (`{:#}`) says the cause once.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    TlsFile(#[from] crate::tls::TlsFileError),
    #[error("cannot listen on {addr} ({key}): {error} (is another program using the port?)")]
    Listen {
        key: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot read {path}: {error}")]
    ReadFile { path: String, error: std::io::Error },
    #[error("cannot write {path}: {error}")]
    WriteFile { path: String, error: std::io::Error },
    #[error("web server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Control(#[from] crate::control::ControlServerError),
    #[error("store.url: {0}")]
    StoreUrl(String),
    #[error(
        "{0} does not open the secrets in the shared store: every instance of one PostgreSQL store needs the same master.key. Copy it from an instance that works (mode 0600, owned by the user hikyaku runs as), or set HIKYAKU_MASTER_KEY, then start again"
    )]
    MasterKeyMismatch(String),
}

/// What `serve` hands back to a caller that runs hikyaku in-process (tests).
pub struct Running {
    pub web_addr: SocketAddr,
    /// The SMTP listeners' addresses, in the order of the configuration
    /// (plain, then STARTTLS, then implicit TLS).
    pub smtp_addrs: Vec<SocketAddr>,
    pub https: bool,
    pub setup_url: Option<String>,
    pub shutdown: CancellationToken,
    pub done: tokio::task::JoinHandle<Result<(), AppError>>,
    /// The configured certificates that [`Running::reload`] re-reads.
    certs: ReloadableCerts,
}

/// The listeners' certificates from configured files, replaceable while
/// they run (a generated self-signed certificate is not reloaded).
#[derive(Default)]
struct ReloadableCerts {
    web: Option<Arc<crate::tls::ReloadableCert>>,
    intake: Option<Arc<crate::tls::ReloadableCert>>,
}

impl Running {
    /// Re-reads what can change without a restart (SIGHUP): the TLS
    /// certificate files of the Remote UI and of the SMTP intake, from
    /// `config`'s paths. A pair that cannot be used keeps the current
    /// certificate; each error is logged naming the key and the file.
    /// Returns whether everything was reloaded.
    pub fn reload(&self, config: &Config) -> bool {
        self.certs.reload(config)
    }
}

impl ReloadableCerts {
    fn reload(&self, config: &Config) -> bool {
        let mut ok = true;
        for (files, cert, what) in [
            (config.web_tls_files(), &self.web, "Remote UI"),
            (config.intake_tls_files(), &self.intake, "SMTP intake"),
        ] {
            match (files, cert) {
                (Some(files), Some(cert)) => match files.reload_into(cert) {
                    Ok(()) => {
                        tracing::info!(certificate = files.cert, "reloaded the {what} certificate")
                    }
                    Err(e) => {
                        ok = false;
                        tracing::error!(error = %e, "the {what} certificate was not reloaded; the current one stays in use");
                    }
                },
                (None, None) => {}
                _ => {
                    ok = false;
                    tracing::warn!("switching the {what}'s TLS on or off takes a restart");
                }
            }
        }
        ok
    }
}

/// How often delivery looks for jobs queued by other processes.
const LOCAL_SUBMISSION_POLL: Duration = Duration::from_secs(3);

/// How often sessions idle past `web.session_idle_minutes` are deleted. The
/// web layer already refuses them; this keeps abandoned ones from piling up.
const SESSION_PURGE_PERIOD: Duration = Duration::from_secs(10 * 60);

/// Deletes, every `period` until `shutdown`, the sessions unused for more
/// than `idle_secs`.
fn purge_idle_sessions(
    store: Store,
    clock: SharedClock,
    idle_secs: i64,
    period: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            match store.delete_idle_sessions(clock.unix(), idle_secs).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(sessions = n, "idle sessions purged"),
                Err(e) => tracing::warn!(error = %e, "cannot purge idle sessions"),
            }
        }
    })
}

/// The first purge of old history runs this long after start, so that it
/// does not add to the work of starting; then once a day.
const RETENTION_FIRST_RUN: Duration = Duration::from_secs(5 * 60);
const RETENTION_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// Deletes, after `first` and then every `period` until `shutdown`, the
/// finished jobs and audit entries older than `keep` allows.
pub fn purge_old_records(
    store: Store,
    clock: SharedClock,
    keep: crate::store::retention::Retention,
    first: Duration,
    period: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = first;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = period;
            match store.purge(clock.unix(), keep).await {
                Ok(p) => tracing::info!(
                    jobs = p.jobs,
                    audit_entries = p.audit_entries,
                    "old history purged (history.keep_days, audit.keep_days)"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot purge old history; trying again tomorrow")
                }
            }
        }
    })
}

/// Opens the store `store.url` names (the SQLite file in `data_dir` when it
/// is empty) and the master key of the data directory. On a shared
/// PostgreSQL database the key must open the secrets the other instances
/// sealed: an instance with another key refuses to start rather than fail
/// every delivery (or seal new secrets the others cannot open).
pub async fn open_data(config: &Config) -> Result<(Store, Arc<MasterKey>), AppError> {
    let url: StoreUrl = config
        .store
        .url
        .parse()
        .map_err(|e: crate::store::postgres::StoreUrlError| AppError::StoreUrl(e.to_string()))?;
    let store = match url {
        StoreUrl::Sqlite(None) => Store::open(&config.data_dir).await?,
        StoreUrl::Sqlite(Some(file)) => Store::open_file(&file).await?,
        StoreUrl::Postgres(url) => {
            let name = instance_name(config);
            let lease = std::time::Duration::from_secs(config.store.lease_secs);
            let store = Store::open_postgres_instance(&url, &name, lease).await?;
            tracing::info!(instance = %name, lease_secs = config.store.lease_secs, "store: PostgreSQL, shared with the other instances");
            store
        }
    };
    let key = Arc::new(MasterKey::load_or_create(&config.data_dir)?);
    if store.postgres().is_some() && key_check(&store, &key).await? == KeyCheck::Wrong {
        store.close().await;
        return Err(AppError::MasterKeyMismatch(
            config
                .data_dir
                .join(crate::secrets::KEY_FILE)
                .display()
                .to_string(),
        ));
    }
    Ok((store, key))
}

/// This instance's name among those sharing a PostgreSQL store (the owner
/// of its leases and connection slots): `HOST:PORT/PID.RANDOM`. The host
/// name and the Remote UI's port name the instance (stable across restarts,
/// different between instances on one host); the process id and a random
/// number make each run unique, so that a restarted instance never mistakes the
/// leases of the process before it for its own live ones, while a restart
/// still takes back the jobs of its earlier runs at once.
pub(crate) fn instance_name(config: &Config) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "hikyaku".into());
    // A random part as well as the process id: a container's pid is the
    // same at every start.
    let run: u32 = rand::random();
    let port = config.web.listen.port();
    // Port 0 (chosen by the system) names no instance across restarts.
    let instance = if port == 0 {
        format!("0-{run:08x}")
    } else {
        port.to_string()
    };
    format!(
        "{}:{instance}/{}.{run:08x}",
        host.replace('/', "_"),
        std::process::id()
    )
}

/// Whether `key` opens the refresh tokens sealed in `store`.
async fn key_check(store: &Store, key: &MasterKey) -> Result<KeyCheck, AppError> {
    let mut check = KeyCheck::NothingToOpen;
    for a in store.accounts().await? {
        let Some(blob) = store.sealed_secrets(a.id).await?.refresh_token else {
            continue;
        };
        let aad = crate::tokens::aad(a.id, "refresh_token");
        if key.open(&aad, &blob).is_ok() {
            check = KeyCheck::Opens;
        } else {
            return Ok(KeyCheck::Wrong);
        }
    }
    Ok(check)
}

/// Whether the master key a data directory would start with opens the
/// secrets sealed in its store (after a restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// No `master.key` and no `HIKYAKU_MASTER_KEY`: a start would make a new
    /// key, and every stored token and secret would be lost.
    Missing,
    /// It opens the stored refresh tokens.
    Opens,
    /// The store holds no sealed token to try it on.
    NothingToOpen,
    /// It does not open them: another installation's key.
    Wrong,
}

/// Tries the data directory's master key on the store's refresh tokens.
pub async fn check_master_key(data_dir: &Path) -> Result<KeyCheck, AppError> {
    if std::env::var_os("HIKYAKU_MASTER_KEY").is_none()
        && !data_dir.join(crate::secrets::KEY_FILE).exists()
    {
        return Ok(KeyCheck::Missing);
    }
    // A restore is of the SQLite file in the data directory.
    let store = Store::open(data_dir).await?;
    let key = MasterKey::load_or_create(data_dir)?;
    let check = key_check(&store, &key).await;
    store.close().await;
    check
}

/// Loads the outbound proxy (Management → Network) from the store.
///
/// An unreadable stored proxy (another master key, a hand-edited value) does
/// not stop hikyaku: it starts without the proxy and says so, so that the
/// administrator can save Management → Network again.
pub async fn proxy(store: &Store, key: &MasterKey) -> Result<SharedProxy, AppError> {
    let loaded = match crate::proxy::load(store, key).await {
        Ok(p) => p,
        Err(crate::proxy::ProxyError::Store(e)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "the outbound proxy setting is unusable; connecting directly");
            None
        }
    };
    Ok(Arc::new(RwLock::new(loaded)))
}

/// Builds the token service over a store (also used by the CLI).
pub async fn token_service(
    config: &Config,
    store: &Store,
    key: Arc<MasterKey>,
    clock: SharedClock,
) -> Result<TokenService, AppError> {
    let (cas, google_cas) = crate::admin::trust::load(store).await?;
    let proxy = proxy(store, &key).await?;
    Ok(TokenService::with_trust(
        store.clone(),
        key,
        clock,
        config.google.clone(),
        cas,
        google_cas,
        proxy,
    ))
}

fn base_url(config: &Config, addr: SocketAddr, https: bool) -> String {
    if !config.web.public_url.is_empty() {
        return config.web.public_url.trim_end_matches('/').to_string();
    }
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    format!(
        "{}://{host}:{}",
        if https { "https" } else { "http" },
        addr.port()
    )
}

/// The Remote UI's TLS configuration: the configured files (loaded before
/// anything starts, see [`start`]) or a self-signed certificate kept in the
/// data directory, generated at the first start.
fn ui_tls(
    config: &Config,
    configured: Option<Arc<rustls::ServerConfig>>,
) -> Result<Arc<rustls::ServerConfig>, AppError> {
    if let Some(tls) = configured {
        return Ok(tls);
    }
    let dir = config.data_dir.join("tls");
    let cert_path: PathBuf = dir.join("ui-cert.pem");
    let key_path: PathBuf = dir.join("ui-key.pem");
    if !cert_path.exists() {
        std::fs::create_dir_all(&dir).map_err(|error| AppError::WriteFile {
            path: dir.display().to_string(),
            error,
        })?;
        let hosts = vec!["localhost".to_string(), config.web.listen.ip().to_string()];
        let generated = crate::tls::generate_self_signed(&hosts)?;
        write_private(&key_path, &generated.key_pem)?;
        std::fs::write(&cert_path, &generated.cert_pem).map_err(|error| AppError::WriteFile {
            path: cert_path.display().to_string(),
            error,
        })?;
        tracing::warn!(
            fingerprint = %generated.sha256_fingerprint,
            "generated a self-signed certificate for the Remote UI; compare this SHA-256 fingerprint with the one your browser shows"
        );
    }
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|error| AppError::ReadFile {
            path: p.display().to_string(),
            error,
        })
    };
    Ok(crate::tls::server_config(
        &read(&cert_path)?,
        &read(&key_path)?,
    )?)
}

fn write_private(path: &Path, text: &str) -> Result<(), AppError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let shown = path.display().to_string();
    let mut f = options.open(path).map_err(|error| AppError::WriteFile {
        path: shown.clone(),
        error,
    })?;
    f.write_all(text.as_bytes())
        .map_err(|error| AppError::WriteFile { path: shown, error })
}

/// One bound SMTP listener, not yet accepting.
struct BoundIntake {
    listener: tokio::net::TcpListener,
    local: SocketAddr,
    implicit_tls: bool,
    tls_listener: bool,
}

/// Binds every SMTP listener of the configuration; nothing is served yet.
async fn bind_intake(config: &Config) -> Result<Vec<BoundIntake>, AppError> {
    let i = &config.intake;
    let plan = i
        .listen
        .iter()
        .map(|a| ("intake.listen", *a, false, false))
        .chain(
            i.starttls_listen
                .iter()
                .map(|a| ("intake.starttls_listen", *a, false, true)),
        )
        .chain(
            i.implicit_tls_listen
                .iter()
                .map(|a| ("intake.implicit_tls_listen", *a, true, true)),
        );
    let mut bound = Vec::new();
    for (key, addr, implicit_tls, tls_listener) in plan {
        let listener = bind(key, addr).await?;
        let local = listener.local_addr().map_err(AppError::Serve)?;
        bound.push(BoundIntake {
            listener,
            local,
            implicit_tls,
            tls_listener,
        });
    }
    Ok(bound)
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, AppError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| AppError::Listen { key, addr, error })
}

/// Serves the bound SMTP listeners in the background.
fn serve_intake(
    config: &Config,
    bound: Vec<BoundIntake>,
    tls: Option<Arc<rustls::ServerConfig>>,
    sink: Arc<crate::intake::store_sink::StoreSink>,
    shutdown: &CancellationToken,
) -> Vec<SocketAddr> {
    let i = &config.intake;
    let limits = crate::intake::Limits {
        max_message_size: usize::try_from(i.max_message_size).unwrap_or(usize::MAX),
        max_recipients: usize::try_from(i.max_recipients).unwrap_or(usize::MAX),
        max_connections: usize::try_from(i.max_connections).unwrap_or(usize::MAX),
        max_connections_per_client: usize::try_from(i.max_connections_per_client)
            .unwrap_or(usize::MAX),
        max_connections_per_network: usize::try_from(i.max_connections_per_network)
            .unwrap_or(usize::MAX),
        idle_timeout: Duration::from_secs(i.idle_timeout_secs),
        // Both are greater than 0: the configuration refuses 0.
        session_timeout: Duration::from_secs(i.session_timeout_secs),
        max_auth_failures: i.max_auth_failures,
        ..Default::default()
    };
    let mut addrs = Vec::new();
    for b in bound {
        let local = b.local;
        let cfg = crate::intake::ListenerConfig {
            hostname: i.hostname.clone(),
            tls: tls.clone(),
            implicit_tls: b.implicit_tls,
            // AUTH over plaintext is allowed only on a plain listener whose
            // wire never leaves the host; TLS listeners always want TLS first.
            require_tls_for_auth: b.tls_listener || !local.ip().is_loopback(),
            limits: limits.clone(),
        };
        tracing::info!(address = %local, implicit_tls = b.implicit_tls, starttls = tls.is_some() && !b.implicit_tls, "SMTP intake listening");
        let sink = sink.clone();
        let stop = shutdown.clone();
        let listener = b.listener;
        tokio::spawn(async move {
            if let Err(e) = crate::intake::serve(listener, cfg, sink, stop).await {
                tracing::error!(error = %e, address = %local, "SMTP listener stopped");
            }
        });
        addrs.push(local);
    }
    addrs
}

/// What [`start`] prepares before anything runs.
struct Prepared {
    web_tls: Option<Arc<rustls::ServerConfig>>,
    cas: crate::tls::ExtraCas,
    google_cas: crate::tls::ExtraCas,
    proxy: SharedProxy,
    /// Jobs whose delivery the last stop interrupted, queued again.
    interrupted: u64,
    setup_url: Option<String>,
    dummy_hash: String,
}

/// The part of start-up that reads and prepares the store but starts nothing.
async fn prepare(
    config: &Config,
    store: &Store,
    key: &MasterKey,
    clock: &SharedClock,
    web_addr: SocketAddr,
    https: bool,
    configured_web_tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<Prepared, AppError> {
    let web_tls = if https {
        Some(ui_tls(config, configured_web_tls)?)
    } else {
        None
    };
    let (cas, google_cas) = crate::admin::trust::load(store).await?;
    let proxy = proxy(store, key).await?;
    let interrupted = store.requeue_interrupted(clock.unix()).await?;
    match store.purge_stale_uploads(clock.unix()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            pieces = n,
            "removed the stored pieces of messages never accepted"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot remove the pieces of messages never accepted"),
    }
    let setup_url = if store.count_users().await? == 0 {
        let token = random_token(24);
        let minutes = i64::try_from(config.web.setup_link_minutes).unwrap_or(60);
        store
            .create_setup_token(&hash_token(&token), clock.unix() + minutes * 60)
            .await?;
        Some(format!(
            "{}/setup?token={token}",
            base_url(config, web_addr, https)
        ))
    } else {
        None
    };
    let dummy_hash = web::auth::hash_password(random_token(16))
        .await
        .map_err(|e| AppError::Serve(std::io::Error::other(e.to_string())))?;
    Ok(Prepared {
        web_tls,
        cas,
        google_cas,
        proxy,
        interrupted,
        setup_url,
        dummy_hash,
    })
}

/// Starts hikyaku and returns once it listens.
///
/// Everything that depends on the configuration is checked first — the TLS
/// files are read, every port is bound, the store is opened — and only then
/// do the delivery workers, token refreshes and listeners start. A failed
/// start therefore leaves nothing running behind its error.
pub async fn start(config: Config, clock: SharedClock) -> Result<Running, AppError> {
    crate::tls::install_crypto_provider();
    let (web_files, web_cert) = config
        .web_tls_files()
        .map(|f| f.load_reloadable())
        .transpose()?
        .unzip();
    let (intake_tls, intake_cert) = config
        .intake_tls_files()
        .map(|f| f.load_reloadable())
        .transpose()?
        .unzip();
    let intake_bound = bind_intake(&config).await?;
    let listener = bind("web.listen", config.web.listen).await?;
    let web_addr = listener.local_addr().map_err(AppError::Serve)?;
    let loopback = web_addr.ip().is_loopback();
    let https = !loopback && !config.web.allow_plain_http;

    let (store, key) = open_data(&config).await?;
    // Held while the server runs: `hikyaku restore` refuses to replace the
    // store under it.
    let data_lock = match crate::store::backup::lock_data_dir(&config.data_dir) {
        Ok(Some(lock)) => Some(lock),
        Ok(None) => {
            tracing::warn!(data_dir = %config.data_dir.display(), "another hikyaku process holds this data directory's lock; two servers over one store is not supported");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot lock the data directory");
            None
        }
    };
    crate::metrics::install();
    if let Ok(accounts) = store.accounts().await {
        crate::metrics::set_account_names(accounts.into_iter().map(|a| (a.id, a.name)));
    }
    let Prepared {
        web_tls: tls,
        cas,
        google_cas,
        proxy,
        interrupted,
        setup_url,
        dummy_hash,
    } = match prepare(&config, &store, &key, &clock, web_addr, https, web_files).await {
        Ok(p) => p,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    let control_socket = match bind_control(&config).await {
        Ok(s) => s,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };

    // From here on things run.
    let tokens = TokenService::with_trust(
        store.clone(),
        key.clone(),
        clock.clone(),
        config.google.clone(),
        cas.clone(),
        google_cas.clone(),
        proxy.clone(),
    );
    tokens.resume();
    let shutdown = CancellationToken::new();
    if interrupted > 0 {
        tracing::warn!(
            jobs = interrupted,
            "messages whose delivery was interrupted by the last stop are queued again"
        );
    }
    let delivery = crate::delivery::Delivery::new(
        store.clone(),
        tokens.clone(),
        clock.clone(),
        config.delivery.clone(),
    );
    let delivery_task = delivery.spawn(shutdown.clone());
    let waker = delivery.clone();
    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || waker.wake());
    // `hikyaku send` and `sendmail` write into the store from another process:
    // look for their jobs every few seconds instead of only at the next timer.
    let ticker = delivery.clone();
    let stop_ticker = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop_ticker.cancelled() => break,
                _ = tokio::time::sleep(LOCAL_SUBMISSION_POLL) => ticker.wake(),
            }
        }
    });
    let sink = Arc::new(crate::intake::store_sink::StoreSink {
        store: store.clone(),
        clock: clock.clone(),
        on_enqueue: wake.clone(),
        handoff: Some(delivery.handoff()),
        // A device reconnecting within this time skips Argon2.
        logins: Arc::new(crate::passwords::LoginCache::new(Duration::from_secs(
            15 * 60,
        ))),
        throttle: Arc::default(),
        rewrite_from: config.delivery.rewrite_from,
    });
    let smtp_addrs = serve_intake(&config, intake_bound, intake_tls, sink, &shutdown);
    if let Some(socket) = control_socket {
        socket.serve(
            crate::control::Control {
                store: store.clone(),
                clock: clock.clone(),
                key: key.clone(),
                tokens: tokens.clone(),
                cas: cas.clone(),
                google_cas: google_cas.clone(),
                proxy: proxy.clone(),
                wake: wake.clone(),
                max_message_size: usize::try_from(config.intake.max_message_size)
                    .unwrap_or(usize::MAX),
                rewrite_from: config.delivery.rewrite_from,
            },
            shutdown.clone(),
        );
    }
    purge_idle_sessions(
        store.clone(),
        clock.clone(),
        config.web.session_idle_secs(),
        SESSION_PURGE_PERIOD,
        shutdown.clone(),
    );
    purge_old_records(
        store.clone(),
        clock.clone(),
        crate::store::retention::Retention {
            history_days: config.history.keep_days,
            audit_days: config.audit.keep_days,
        },
        RETENTION_FIRST_RUN,
        RETENTION_PERIOD,
        shutdown.clone(),
    );
    // Wall-clock jumps: audit, refresh every token, re-check connections (clockjump.rs).
    let reaction = crate::clockjump::JumpReaction {
        store: store.clone(),
        tokens: tokens.clone(),
        clock: clock.clone(),
        shutdown: shutdown.clone(),
        wake: wake.clone(),
    };
    crate::clock::watch_jumps(
        clock.clone(),
        crate::clock::JUMP_CHECK_PERIOD,
        crate::clock::JUMP_THRESHOLD,
        move |secs| {
            let reaction = reaction.clone();
            async move { reaction.handle(secs).await }
        },
        shutdown.clone(),
    );

    if !loopback && !https {
        tracing::warn!(
            "the Remote UI is served over plain HTTP on a network address (web.allow_plain_http); passwords cross the network unencrypted"
        );
    }

    if let Some(url) = &setup_url {
        let minutes = config.web.setup_link_minutes;
        tracing::warn!(
            "no user exists yet: open {url} within {minutes} minutes to create the first Administrator (or run: hikyaku admin add-user NAME --role administrator)"
        );
    }

    // The Remote UI shows where devices connect: the bound ports, so that a
    // configured port 0 shows the port in use.
    let mut web_config = config.clone();
    {
        let i = &mut web_config.intake;
        let mut bound = smtp_addrs.iter();
        for a in i
            .listen
            .iter_mut()
            .chain(i.starttls_listen.iter_mut())
            .chain(i.implicit_tls_listen.iter_mut())
        {
            if let Some(b) = bound.next() {
                *a = *b;
            }
        }
    }
    let state = AppState::new(web::Inner {
        store: store.clone(),
        config: web_config,
        key,
        clock,
        throttle: Default::default(),
        https,
        insecure_banner: !loopback && !https,
        tokens,
        extra_cas: cas,
        google_cas,
        proxy,
        wake,
        google_pending: Default::default(),
        dummy_hash,
    });
    let tokens_for_shutdown = state.tokens.clone();
    let app = web::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let stop = shutdown.clone();
    tracing::info!(address = %web_addr, https, "Remote UI listening");
    let done = tokio::spawn(async move {
        let result = match tls {
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let h = handle.clone();
                let stop2 = stop.clone();
                tokio::spawn(async move {
                    stop2.cancelled().await;
                    h.graceful_shutdown(Some(Duration::from_secs(10)));
                });
                let std_listener = listener.into_std().map_err(AppError::Serve)?;
                axum_server::from_tcp_rustls(
                    std_listener,
                    axum_server::tls_rustls::RustlsConfig::from_config(tls),
                )
                .map_err(AppError::Serve)?
                .handle(handle)
                .serve(app)
                .await
                .map_err(AppError::Serve)
            }
            None => axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .map_err(AppError::Serve),
        };
        // Deliveries in flight finish (or are deferred) before the store closes.
        let _ = delivery_task.await;
        tokens_for_shutdown.shutdown();
        store.close().await;
        drop(data_lock);
        result
    });
    Ok(Running {
        web_addr,
        smtp_addrs,
        https,
        setup_url,
        shutdown,
        done,
        certs: ReloadableCerts {
            web: web_cert,
            intake: intake_cert,
        },
    })
}

/// Binds the control socket. A configured `control.socket` must work; the
/// default one in the data directory is left out with a warning when it
/// cannot be made (a path too long for a Unix socket), as nothing but the
/// command line needs it.
async fn bind_control(config: &Config) -> Result<Option<crate::control::ControlSocket>, AppError> {
    let path = config.control_socket();
    match crate::control::ControlSocket::bind(&path).await {
        Ok(s) => Ok(Some(s)),
        Err(e @ crate::control::ControlServerError::InUse { .. }) => Err(e.into()),
        Err(e) if config.control.socket.is_empty() => {
            tracing::warn!(error = %e, "no control socket: hikyaku queue, status and local submission by other users will not reach this server; set control.socket");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// What a reload (SIGHUP) re-reads besides the certificates: the
/// configuration file, and the log level it names.
pub struct Reload {
    /// Reads the configuration again (the file `serve` started from).
    pub read_config: Box<dyn Fn() -> Result<Config, String> + Send + Sync>,
    /// Applies `log.level`; `Err` says why the level was not applied.
    pub set_log_level: SetLogLevel,
}

/// Applies a `log.level` value; `Err` says why it was not applied.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Runs until SIGINT or SIGTERM; SIGHUP reloads (see [`Running::reload`]).
pub async fn serve(config: Config, reload: Reload) -> Result<(), AppError> {
    let mut running = start(config.clone(), Arc::new(SystemClock)).await?;
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    let certs = std::mem::take(&mut running.certs);
    let done = &mut running.done;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            let mut current = config;
            loop {
                tokio::select! {
                    result = &mut *done => return result.map_err(|e| AppError::Serve(std::io::Error::other(e)))?,
                    _ = hup.recv() => {
                        tracing::info!("reloading (SIGHUP)");
                        match (reload.read_config)() {
                            Ok(new) => {
                                reload_config(&certs, &reload, &current, &new);
                                current = new;
                            }
                            Err(e) => tracing::error!(error = %e, "the configuration was not reloaded; everything stays as it was"),
                        }
                    }
                }
            }
        }
    }
    done.await
        .map_err(|e| AppError::Serve(std::io::Error::other(e)))?
}

/// Applies a re-read configuration: the log level and the certificates now;
/// the settings that need a restart are named in the log.
fn reload_config(certs: &ReloadableCerts, reload: &Reload, old: &Config, new: &Config) {
    if new.log.level != old.log.level {
        match (reload.set_log_level)(&new.log.level) {
            Ok(()) => tracing::info!(level = %new.log.level, "log level changed"),
            Err(e) => tracing::error!(error = %e, "the log level was not changed"),
        }
    }
    certs.reload(new);
    let reloadable = [
        "log.level",
        "web.tls_cert",
        "web.tls_key",
        "intake.tls_cert",
        "intake.tls_key",
    ];
    let changed: Vec<String> = changed_keys(old, new)
        .into_iter()
        .filter(|k| !reloadable.contains(&k.as_str()))
        .collect();
    if !changed.is_empty() {
        tracing::warn!(
            keys = %changed.join(", "),
            "these settings changed in the file and take effect at the next restart"
        );
    }
}

/// The `section.key` names whose values differ.
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let flat = |c: &Config| {
        let mut out = std::collections::BTreeMap::new();
        if let Ok(toml::Value::Table(t)) = toml::Value::try_from(c) {
            for (k, v) in t {
                match v {
                    toml::Value::Table(section) => {
                        for (sk, sv) in section {
                            out.insert(format!("{k}.{sk}"), sv);
                        }
                    }
                    v => {
                        out.insert(k, v);
                    }
                }
            }
        }
        out
    };
    let (a, b) = (flat(old), flat(new));
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// The purge task started by `start` deletes idle sessions on its own,
    /// keeps the ones in use, and stops with the shutdown token.
    #[tokio::test]
    async fn the_purge_task_deletes_idle_sessions_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let clock: SharedClock = Arc::new(SystemClock);
        let now = clock.unix();
        let idle = 15 * 60;
        let user = store
            .create_user("alice", crate::roles::Role::Administrator, "hash", now)
            .await
            .unwrap();
        store
            .create_session("idle", user, "csrf", now - idle - 60, "127.0.0.1")
            .await
            .unwrap();
        store
            .create_session("fresh", user, "csrf", now, "127.0.0.1")
            .await
            .unwrap();
        // Reads the row as it is (touch_session would mark it used).
        let exists = |id: &'static str| {
            let store = store.clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sessions WHERE id_hash = ?1")
                    .bind(id)
                    .fetch_one(store.pool())
                    .await
                    .unwrap()
                    == 1
            }
        };
        let shutdown = CancellationToken::new();
        let task = purge_idle_sessions(
            store.clone(),
            clock.clone(),
            idle,
            Duration::from_millis(20),
            shutdown.clone(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while exists("idle").await {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle session was not purged"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(exists("fresh").await);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        store.close().await;
    }

    fn not_found() -> std::io::Error {
        std::io::Error::from_raw_os_error(2)
    }

    /// Printed with its chain, as `main` prints it, every error says its
    /// cause once.
    #[test]
    fn every_error_says_its_cause_once() {
        let errors: Vec<anyhow::Error> = vec![
            AppError::ReadFile {
                path: "/x".into(),
                error: not_found(),
            }
            .into(),
            AppError::WriteFile {
                path: "/x".into(),
                error: not_found(),
            }
            .into(),
            AppError::Listen {
                key: "web.listen",
                addr: SocketAddr::from(([127, 0, 0, 1], 1)),
                error: not_found(),
            }
            .into(),
            AppError::from(crate::store::StoreError::DataDir {
                path: "/x".into(),
                error: not_found(),
            })
            .into(),
            AppError::from(crate::store::StoreError::DbFile {
                path: "/x".into(),
                error: not_found(),
            })
            .into(),
            AppError::from(crate::secrets::SecretsError::KeyFile {
                path: "/x".into(),
                error: not_found(),
            })
            .into(),
            AppError::from(crate::tls::TlsFileError::Read {
                key: "intake.tls_cert",
                path: "/x".into(),
                error: not_found(),
            })
            .into(),
            crate::config::ConfigError::Read {
                path: "/x".into(),
                error: not_found(),
            }
            .into(),
            crate::intake::local::LocalError::Read {
                path: "/x".into(),
                error: not_found(),
            }
            .into(),
            crate::cli_login::LoginError::from(not_found()).into(),
            crate::intake::IntakeError::from(not_found()).into(),
            crate::tokens::TokensError::from(crate::secrets::SecretsError::KeyFile {
                path: "/x".into(),
                error: not_found(),
            })
            .into(),
            crate::proxy::ProxyError::from(crate::store::StoreError::DataDir {
                path: "/x".into(),
                error: not_found(),
            })
            .into(),
        ];
        for e in errors {
            let printed = format!("{e:#}");
            assert_eq!(printed.matches("os error 2").count(), 1, "{printed}");
        }
    }
}
