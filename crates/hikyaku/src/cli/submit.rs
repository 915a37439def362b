//! Local submission (`hikyaku send`, `sendmail`): through the running
//! server's control socket for any user; when no server runs, straight into
//! the queue by a user who may write it (root, hikyaku's own user), which is
//! safe because no server is writing it meanwhile.

use anyhow::Context;

use hikyaku::clock::SystemClock;
use hikyaku::config::Config;
use hikyaku::control::client::{ClientError, SocketClient};
use hikyaku::intake::local::{self, Submission};

/// The store of the data directory, when this user can write it.
async fn writable_store(
    config: &Config,
    refused: ClientError,
) -> anyhow::Result<hikyaku::store::Store> {
    let db = config.data_dir.join(hikyaku::store::DB_FILE);
    let shown = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    match std::fs::metadata(&db) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "no hikyaku queue in {}; nothing was queued. The server creates it at its first start: \
             run this command where the server runs (its working directory), or give the server's \
             configuration with --config or HIKYAKU_CONFIG, or install it as /etc/hikyaku/hikyaku.toml \
             with an absolute data_dir ({refused})",
            shown.display()
        ),
        _ if std::fs::OpenOptions::new().append(true).open(&db).is_err() => anyhow::bail!(
            "{refused} This user cannot write the queue in {} itself either.",
            shown.display()
        ),
        _ => {}
    }
    let (store, _key) = hikyaku::app::open_data(config).await?;
    Ok(store)
}

/// The sender a message without one goes out from: the server's default.
pub async fn default_sender(config: &Config) -> anyhow::Result<String> {
    let socket = SocketClient::new(&config.control_socket());
    match socket.call(&hikyaku::control::Request::DefaultSender).await {
        Ok(v) => v
            .as_str()
            .map(str::to_string)
            .context("the server gave no sender address"),
        Err(e) if e.is_not_running() => {
            let store = writable_store(config, e).await?;
            let sender = local::default_sender(&store).await;
            store.close().await;
            Ok(sender?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Queues a message; returns the job id once it is stored and synced.
/// `client` is `sendmail` or `cli`, recorded with the submitter.
pub async fn submit(
    config: &Config,
    submission: Submission,
    message: Vec<u8>,
    client: &str,
) -> anyhow::Result<String> {
    let socket = SocketClient::new(&config.control_socket());
    match socket.submit(submission.clone(), &message, client).await {
        Ok(id) => Ok(id),
        Err(e) if e.is_not_running() => {
            let store = writable_store(config, e).await?;
            let limit = usize::try_from(config.intake.max_message_size).unwrap_or(usize::MAX);
            let submitter = format!("{client}:{}", hikyaku::control::this_user().await);
            let queued = local::submit(
                &store,
                &SystemClock,
                &submitter,
                submission,
                message,
                limit,
                config.delivery.rewrite_from,
            )
            .await;
            store.close().await;
            Ok(queued?)
        }
        Err(e) => Err(e.into()),
    }
}
