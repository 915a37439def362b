//! Start-up and shutdown: store → tokens → web (and the SMTP intake and
//! delivery when configured), all under one cancellation token so that
//! SIGINT/SIGTERM stop everything cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::proxy::SharedProxy;
use crate::secrets::{MasterKey, hash_token, random_token};
use crate::store::Store;
use crate::tokens::TokenService;
use crate::web::{self, AppState};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source} (is another program using the port?)")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: String,
        source: std::io::Error,
    },
    #[error("web server failed: {0}")]
    Serve(std::io::Error),
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
}

/// How often delivery looks for jobs queued by other processes.
const LOCAL_SUBMISSION_POLL: Duration = Duration::from_secs(3);

/// Opens the store and the master key of a data directory.
pub async fn open_data(data_dir: &Path) -> Result<(Store, Arc<MasterKey>), AppError> {
    let store = Store::open(data_dir).await?;
    let key = Arc::new(MasterKey::load_or_create(data_dir)?);
    Ok((store, key))
}

/// The administrator's extra CA certificates, shared by every outbound TLS
/// connection and updated in place by the CA Certificates page.
pub type ExtraCas = Arc<RwLock<Vec<CertificateDer<'static>>>>;

/// Loads the extra CA certificates from the store.
pub async fn extra_cas(store: &Store) -> Result<ExtraCas, AppError> {
    let cas = store
        .ca_certificates()
        .await?
        .into_iter()
        .map(|c| CertificateDer::from(c.der))
        .collect();
    Ok(Arc::new(RwLock::new(cas)))
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
    let cas = extra_cas(store).await?;
    let proxy = proxy(store, &key).await?;
    Ok(TokenService::with_proxy(
        store.clone(),
        key,
        clock,
        config.google.clone(),
        cas,
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

/// Loads or creates the Remote UI's TLS certificate.
fn ui_tls(config: &Config) -> Result<Arc<rustls::ServerConfig>, AppError> {
    let read = |p: &str| {
        std::fs::read_to_string(p).map_err(|source| AppError::ReadFile {
            path: p.to_string(),
            source,
        })
    };
    if !config.web.tls_cert.is_empty() {
        return Ok(crate::tls::server_config(
            &read(&config.web.tls_cert)?,
            &read(&config.web.tls_key)?,
        )?);
    }
    let dir = config.data_dir.join("tls");
    let cert_path: PathBuf = dir.join("ui-cert.pem");
    let key_path: PathBuf = dir.join("ui-key.pem");
    if !cert_path.exists() {
        std::fs::create_dir_all(&dir).map_err(|source| AppError::WriteFile {
            path: dir.display().to_string(),
            source,
        })?;
        let hosts = vec!["localhost".to_string(), config.web.listen.ip().to_string()];
        let generated = crate::tls::generate_self_signed(&hosts)?;
        write_private(&key_path, &generated.key_pem)?;
        std::fs::write(&cert_path, &generated.cert_pem).map_err(|source| AppError::WriteFile {
            path: cert_path.display().to_string(),
            source,
        })?;
        tracing::warn!(
            fingerprint = %generated.sha256_fingerprint,
            "generated a self-signed certificate for the Remote UI; compare this SHA-256 fingerprint with the one your browser shows"
        );
    }
    let cert = read(&cert_path.display().to_string())?;
    let key = read(&key_path.display().to_string())?;
    Ok(crate::tls::server_config(&cert, &key)?)
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
    let mut f = options.open(path).map_err(|source| AppError::WriteFile {
        path: shown.clone(),
        source,
    })?;
    f.write_all(text.as_bytes())
        .map_err(|source| AppError::WriteFile {
            path: shown,
            source,
        })
}

/// Binds every SMTP listener of the configuration and serves it in the background.
async fn start_intake(
    config: &Config,
    store: &Store,
    clock: &SharedClock,
    wake: Arc<dyn Fn() + Send + Sync>,
    handoff: crate::delivery::Handoff,
    shutdown: &CancellationToken,
) -> Result<Vec<SocketAddr>, AppError> {
    let i = &config.intake;
    let tls = if i.tls_cert.is_empty() {
        None
    } else {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|source| AppError::ReadFile {
                path: p.to_string(),
                source,
            })
        };
        Some(crate::tls::server_config(
            &read(&i.tls_cert)?,
            &read(&i.tls_key)?,
        )?)
    };
    let limits = crate::intake::Limits {
        max_message_size: usize::try_from(i.max_message_size).unwrap_or(usize::MAX),
        max_recipients: usize::try_from(i.max_recipients).unwrap_or(usize::MAX),
        max_connections: usize::try_from(i.max_connections).unwrap_or(usize::MAX),
        max_connections_per_client: usize::try_from(i.max_connections_per_client)
            .unwrap_or(usize::MAX),
        idle_timeout: Duration::from_secs(i.idle_timeout_secs),
        session_timeout: Duration::from_secs(i.session_timeout_secs.max(1)),
        max_auth_failures: i.max_auth_failures.max(1),
        ..Default::default()
    };
    let sink = Arc::new(crate::intake::store_sink::StoreSink {
        store: store.clone(),
        clock: clock.clone(),
        on_enqueue: wake,
        handoff: Some(handoff),
        // A device reconnecting within this time skips Argon2.
        logins: Arc::new(crate::passwords::LoginCache::new(Duration::from_secs(
            15 * 60,
        ))),
        throttle: Arc::default(),
    });
    let mut addrs = Vec::new();
    let plan = i
        .listen
        .iter()
        .map(|a| (*a, false, false))
        .chain(i.starttls_listen.iter().map(|a| (*a, false, true)))
        .chain(i.implicit_tls_listen.iter().map(|a| (*a, true, true)));
    for (addr, implicit, tls_listener) in plan {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Listen { addr, source })?;
        let local = listener.local_addr().map_err(AppError::Serve)?;
        let cfg = crate::intake::ListenerConfig {
            hostname: i.hostname.clone(),
            tls: tls.clone(),
            implicit_tls: implicit,
            // AUTH over plaintext is allowed only on a plain listener whose
            // wire never leaves the host; TLS listeners always want TLS first.
            require_tls_for_auth: tls_listener || !local.ip().is_loopback(),
            limits: limits.clone(),
        };
        tracing::info!(address = %local, implicit_tls = implicit, starttls = tls.is_some() && !implicit, "SMTP intake listening");
        let sink = sink.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::intake::serve(listener, cfg, sink, stop).await {
                tracing::error!(error = %e, address = %local, "SMTP listener stopped");
            }
        });
        addrs.push(local);
    }
    Ok(addrs)
}

/// Starts hikyaku and returns once it listens.
pub async fn start(config: Config, clock: SharedClock) -> Result<Running, AppError> {
    crate::tls::install_crypto_provider();
    let (store, key) = open_data(&config.data_dir).await?;
    let cas = extra_cas(&store).await?;
    let proxy = proxy(&store, &key).await?;
    let tokens = TokenService::with_proxy(
        store.clone(),
        key.clone(),
        clock.clone(),
        config.google.clone(),
        cas.clone(),
        proxy.clone(),
    );
    tokens.resume();
    let shutdown = CancellationToken::new();
    let interrupted = store.requeue_interrupted(clock.unix()).await?;
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
        cas.clone(),
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
    let smtp_addrs = start_intake(
        &config,
        &store,
        &clock,
        wake.clone(),
        delivery.handoff(),
        &shutdown,
    )
    .await?;
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

    let listener = tokio::net::TcpListener::bind(config.web.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: config.web.listen,
            source,
        })?;
    let web_addr = listener.local_addr().map_err(AppError::Serve)?;
    let loopback = web_addr.ip().is_loopback();
    let https = !loopback && !config.web.allow_plain_http;
    let tls = if https { Some(ui_tls(&config)?) } else { None };
    if !loopback && !https {
        tracing::warn!(
            "the Remote UI is served over plain HTTP on a network address (web.allow_plain_http); passwords cross the network unencrypted"
        );
    }

    let setup_url = if store.count_users().await? == 0 {
        let token = random_token(24);
        let minutes = i64::try_from(config.web.setup_link_minutes).unwrap_or(60);
        store
            .create_setup_token(&hash_token(&token), clock.unix() + minutes * 60)
            .await?;
        let url = format!("{}/setup?token={token}", base_url(&config, web_addr, https));
        tracing::warn!(
            "no user exists yet: open {url} within {minutes} minutes to create the first Administrator (or run: hikyaku admin add-user NAME --role administrator)"
        );
        Some(url)
    } else {
        None
    };

    let dummy_hash = web::auth::hash_password(random_token(16))
        .await
        .map_err(|e| AppError::Serve(std::io::Error::other(e.to_string())))?;
    let state = AppState::new(web::Inner {
        store: store.clone(),
        config: config.clone(),
        key,
        clock,
        throttle: Default::default(),
        https,
        insecure_banner: !loopback && !https,
        tokens,
        extra_cas: cas,
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
        result
    });
    Ok(Running {
        web_addr,
        smtp_addrs,
        https,
        setup_url,
        shutdown,
        done,
    })
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<(), AppError> {
    let running = start(config, Arc::new(SystemClock)).await?;
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    running
        .done
        .await
        .map_err(|e| AppError::Serve(std::io::Error::other(e)))?
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
