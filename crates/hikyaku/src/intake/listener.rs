//! The accept loop of one SMTP listener: admits connections within the
//! per-client and total caps, runs a session task per connection, and drains
//! on shutdown.
//!
//! Invariants: a refused connection gets `421 4.7.0` and is closed without
//! any task being spawned; on shutdown no new connection is accepted, sessions
//! waiting for input are told `421 4.3.2`, and [`serve`] returns only after
//! every session task — including any in-flight `IntakeSink::accept` — ended.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::limits::ConnectionLimiter;
use super::{IntakeError, IntakeSink, ListenerConfig, run_session};

/// Runs the listener until `shutdown` is cancelled, then waits for the
/// sessions to finish.
pub async fn serve<S: IntakeSink>(
    listener: TcpListener,
    config: ListenerConfig,
    sink: Arc<S>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let limiter = ConnectionLimiter::new(
        config.limits.max_connections,
        config.limits.max_connections_per_client,
        config.limits.max_connections_per_network,
    );
    let sessions = TaskTracker::new();
    let busy = format!("421 4.7.0 {} Too many connections\r\n", config.hostname);
    // The start-up logs the address once (app.rs); this is for tracing.
    debug!(address = ?listener.local_addr().ok(), implicit_tls = config.implicit_tls, "SMTP intake accepting");

    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Usually EMFILE or a connection reset before accept; back off
                // briefly instead of spinning.
                warn!(%error, "accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Some(permit) = limiter.try_acquire(peer.ip()) else {
            info!(peer = %peer, "refused: too many connections");
            // A fresh socket's send buffer is empty, so this does not block;
            // if it fails the client just sees the close.
            let _ = stream.try_write(busy.as_bytes());
            continue;
        };
        // Replies are small and latency-bound; Nagle would only add delay.
        let _ = stream.set_nodelay(true);
        crate::metrics::intake_connection();
        let config = Arc::clone(&config);
        let sink = Arc::clone(&sink);
        let shutdown = shutdown.clone();
        let span = info_span!("smtp", peer = %peer);
        sessions.spawn(
            async move {
                debug!("connected");
                match run_session(stream, peer, &config, &*sink, &shutdown).await {
                    Ok(()) => debug!("disconnected"),
                    Err(IntakeError::Io(error)) => debug!(%error, "connection lost"),
                    Err(error) => info!(%error, "session ended"),
                }
                drop(permit);
            }
            .instrument(span),
        );
    }

    info!(
        open = limiter.open(),
        "SMTP intake stopping; waiting for sessions"
    );
    sessions.close();
    sessions.wait().await;
    Ok(())
}
