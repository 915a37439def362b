//! The local control socket: how `hikyaku queue`, `status`, `send` and
//! `sendmail` reach the running server, so that no command writes the store
//! behind its back and any local user can submit mail while the data
//! directory stays the service user's alone (0700).
//!
//! One request per connection: a JSON line (`Request`), for a submission an
//! acknowledgement and then exactly `size` bytes of message, and a JSON line
//! back (`Reply`). The kernel tells who is on the other end (peer
//! credentials): anyone may submit, recorded as `local:uid=N(name)`; only
//! root and the server's own user may look at or change the queue.

pub mod client;
pub mod render;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::admin::{Actor, Admin, AdminError, Live};
use crate::clock::SharedClock;
use crate::intake::local::{self, Submission};
use crate::queue::{JobFilter, JobState, JobStore as _};
use crate::roles::Role;
use crate::secrets::MasterKey;
use crate::store::Store;

/// Longest request line: a submission's recipients fit many times over.
const MAX_REQUEST_LINE: u64 = 1024 * 1024;

/// Connections served at once; a local user cannot tie up more.
const MAX_CONNECTIONS: usize = 64;

/// A request must be complete within this time (a stalled client is cut off).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// What a client asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Queue a message; `size` bytes follow the server's acknowledgement.
    Submit {
        submission: Submission,
        size: u64,
        /// `sendmail` or `cli`, recorded with the submitter.
        client: String,
    },
    /// The address a message without a sender would go out from.
    DefaultSender,
    /// Jobs, oldest first; `state` none: every job not yet sent.
    Jobs {
        state: Option<String>,
        account: Option<String>,
        sender: Option<String>,
        limit: i64,
    },
    Job {
        id: String,
    },
    Retry {
        id: String,
    },
    RetryDeferred,
    Delete {
        id: String,
    },
    Status,
}

impl Request {
    /// Whether only root and the service's user may ask it.
    fn is_administration(&self) -> bool {
        !matches!(self, Request::Submit { .. } | Request::DefaultSender)
    }
}

/// The server's answer: `result` when `ok`, else `error` in English.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub error: Option<String>,
}

impl Reply {
    fn ok(result: Value) -> Self {
        Reply {
            ok: true,
            result,
            error: None,
        }
    }

    fn refused(error: impl ToString) -> Self {
        Reply {
            ok: false,
            result: Value::Null,
            error: Some(error.to_string()),
        }
    }
}

/// Why the socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlServerError {
    #[error(
        "another hikyaku server already answers on the control socket {path} (control.socket): stop it or give this one another socket"
    )]
    InUse { path: String },
    // The cause is part of the message, said once.
    #[error("cannot open the control socket {path} (control.socket): {error}")]
    Bind { path: String, error: std::io::Error },
}

/// What the socket's requests use of the running server.
pub struct Control {
    pub store: Store,
    pub clock: SharedClock,
    pub key: Arc<MasterKey>,
    pub tokens: crate::tokens::TokenService,
    pub cas: crate::tls::ExtraCas,
    pub google_cas: crate::tls::ExtraCas,
    pub proxy: crate::proxy::SharedProxy,
    pub wake: Arc<dyn Fn() + Send + Sync>,
    /// `intake.max_message_size`.
    pub max_message_size: usize,
    /// `delivery.rewrite_from`, for routing as the SMTP intake does.
    pub rewrite_from: bool,
}

/// The socket, bound and ready to serve; removed when dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    /// The server's own user: the owner of the socket it created.
    service_uid: u32,
}

impl ControlSocket {
    /// Binds the socket at `path`, replacing a stale one that no server
    /// answers on. Every local user may connect (mode 0666); who may do
    /// what is decided per request from the peer's credentials.
    pub async fn bind(path: &Path) -> Result<Self, ControlServerError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let shown = path.display().to_string();
        let bind_err = |error| ControlServerError::Bind {
            path: shown.clone(),
            error,
        };
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ControlServerError::InUse { path: shown });
            }
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(bind_err)?;
        }
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(bind_err)?;
        let service_uid = std::fs::metadata(path).map_err(bind_err)?.uid();
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
            service_uid,
        })
    }

    /// Serves requests until `shutdown`, then removes the socket file.
    pub fn serve(self, control: Control, shutdown: CancellationToken) {
        let control = Arc::new(control);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        tracing::info!(path = %self.path.display(), "control socket listening");
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    a = self.listener.accept() => a,
                };
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // Busy: the client gets a clear refusal instead of a wait.
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let _ = write_reply(
                            &mut stream,
                            &Reply::refused("the hikyaku server is busy; try again shortly"),
                        )
                        .await;
                    });
                    continue;
                };
                let control = control.clone();
                let service_uid = self.service_uid;
                tokio::spawn(async move {
                    let _permit = permit;
                    let served = tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        serve_one(stream, &control, service_uid),
                    )
                    .await;
                    if served.is_err() {
                        tracing::debug!("control socket: a client took too long");
                    }
                });
            }
            let _ = std::fs::remove_file(&self.path);
        });
    }
}

/// Who is on the other end of a connection.
struct Peer {
    uid: u32,
    name: Option<String>,
}

impl Peer {
    /// How the job history and the audit log name a local user.
    fn submitter(&self) -> String {
        match &self.name {
            Some(name) => format!("local:uid={}({name})", self.uid),
            None => format!("local:uid={}", self.uid),
        }
    }
}

/// How the job history names the user running this process when it writes
/// the store itself: `local:uid=N(name)`, as the socket names its peers.
pub async fn this_user() -> String {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "local".into();
    };
    Peer {
        uid,
        name: user_name(uid).await,
    }
    .submitter()
}

/// The name of a user id from /etc/passwd (no NSS: a service needs no more).
async fn user_name(uid: u32) -> Option<String> {
    let passwd = tokio::fs::read_to_string("/etc/passwd").await.ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

async fn serve_one(stream: UnixStream, control: &Control, service_uid: u32) {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(e) => {
            tracing::warn!(error = %e, "control socket: no peer credentials; connection refused");
            return;
        }
    };
    let peer = Peer {
        uid,
        name: user_name(uid).await,
    };
    let mut stream = BufReader::new(stream);
    let mut line = Vec::new();
    let read = (&mut stream)
        .take(MAX_REQUEST_LINE)
        .read_until(b'\n', &mut line)
        .await;
    if read.is_err() || !line.ends_with(b"\n") {
        let _ = write_reply(
            stream.get_mut(),
            &Reply::refused("the request is incomplete or too long"),
        )
        .await;
        return;
    }
    let request: Request = match serde_json::from_slice(&line) {
        Ok(r) => r,
        Err(e) => {
            let _ = write_reply(
                stream.get_mut(),
                &Reply::refused(format!(
                    "unknown request ({e}): use the hikyaku command of the same version as the server"
                )),
            )
            .await;
            return;
        }
    };
    if request.is_administration() && uid != 0 && uid != service_uid {
        tracing::warn!(submitter = %peer.submitter(), "control socket: queue administration refused");
        let _ = write_reply(
            stream.get_mut(),
            &Reply::refused(
                "only root and the user hikyaku runs as may look at or change the queue; \
                 use the Remote UI or the JSON API with an API token (--url) instead",
            ),
        )
        .await;
        return;
    }
    let reply = match request {
        Request::Submit {
            submission,
            size,
            client,
        } => submit(&mut stream, control, &peer, submission, size, &client).await,
        other => answer(control, &peer, other)
            .await
            .unwrap_or_else(Reply::refused),
    };
    let _ = write_reply(stream.get_mut(), &reply).await;
}

async fn write_reply(stream: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    stream.write_all(&bytes).await?;
    stream.flush().await
}

/// Reads the message after the acknowledgement and queues it. The reply is
/// `ok` only once the job is stored and synced.
async fn submit(
    stream: &mut BufReader<UnixStream>,
    control: &Control,
    peer: &Peer,
    submission: Submission,
    size: u64,
    client: &str,
) -> Reply {
    let limit = control.max_message_size;
    if usize::try_from(size).map_or(true, |s| s > limit) {
        return Reply::refused(local::LocalError::TooLargeInput { limit });
    }
    if write_reply(stream.get_mut(), &Reply::ok(json!("send")))
        .await
        .is_err()
    {
        return Reply::refused("the client went away");
    }
    let mut message = Vec::new();
    match (&mut *stream).take(size).read_to_end(&mut message).await {
        Ok(n) if n as u64 == size => {}
        _ => {
            return Reply::refused("the message ended early; nothing was queued");
        }
    }
    let client = if client == "sendmail" {
        "sendmail"
    } else {
        "cli"
    };
    let submitter = format!("{client}:{}", peer.submitter());
    match local::submit(
        &control.store,
        &*control.clock,
        &submitter,
        submission,
        message,
        limit,
        control.rewrite_from,
    )
    .await
    {
        Ok(id) => {
            (control.wake)();
            tracing::info!(job_id = %id, submitter = %submitter, "local submission queued");
            Reply::ok(json!({ "id": id }))
        }
        Err(e) => Reply::refused(e),
    }
}

/// Answers every request but a submission.
async fn answer(control: &Control, peer: &Peer, request: Request) -> Result<Reply, String> {
    let admin = Admin::new(
        &control.store,
        &*control.clock,
        Actor::new(peer.submitter(), "local", Role::Administrator),
    );
    let live = Live {
        key: &control.key,
        tokens: &control.tokens,
        cas: &control.cas,
        google_cas: &control.google_cas,
        proxy: &control.proxy,
        wake: &*control.wake,
    };
    let store = &control.store;
    let text = |e: AdminError| e.to_string();
    Ok(Reply::ok(match request {
        Request::Submit { .. } => return Err("a submission needs its message".into()),
        Request::DefaultSender => json!(
            local::default_sender(store)
                .await
                .map_err(|e| e.to_string())?
        ),
        Request::Jobs {
            state,
            account,
            sender,
            limit,
        } => json!(jobs(store, state, account, sender, limit).await?),
        Request::Job { id } => json!(store.job(&id).await.map_err(|e| not_found(&id, e))?),
        Request::Retry { id } => {
            admin.retry_job(&live, &id).await.map_err(text)?;
            json!(store.job(&id).await.map_err(|e| e.to_string())?)
        }
        Request::RetryDeferred => {
            json!({ "retried": admin.retry_deferred_jobs(&live).await.map_err(text)? })
        }
        Request::Delete { id } => {
            admin.delete_job(&id).await.map_err(|e| match e {
                AdminError::Store(s) => not_found(&id, s),
                e => e.to_string(),
            })?;
            json!({ "deleted": id })
        }
        Request::Status => status(store).await.map_err(|e| e.to_string())?,
    }))
}

fn not_found(id: &str, e: crate::store::StoreError) -> String {
    match e {
        crate::store::StoreError::NotFound => {
            format!("no job {id:?}: `hikyaku queue` lists the ids")
        }
        e => e.to_string(),
    }
}

/// The account a `--account` value names: its id, its name or its provider.
async fn account_id(store: &Store, wanted: &str) -> Result<i64, String> {
    let accounts = store.accounts().await.map_err(|e| e.to_string())?;
    accounts
        .iter()
        .find(|a| a.id.to_string() == wanted)
        .or_else(|| {
            accounts
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(wanted))
        })
        .or_else(|| {
            let mut same = accounts
                .iter()
                .filter(|a| a.provider.as_str().eq_ignore_ascii_case(wanted));
            match (same.next(), same.next()) {
                (Some(a), None) => Some(a),
                _ => None,
            }
        })
        .map(|a| a.id)
        .ok_or_else(|| format!("unknown account {wanted:?}: `hikyaku status` lists the accounts"))
}

/// The jobs of `hikyaku queue`, oldest first.
async fn jobs(
    store: &Store,
    state: Option<String>,
    account: Option<String>,
    sender: Option<String>,
    limit: i64,
) -> Result<Vec<crate::queue::Job>, String> {
    let states: Vec<JobState> = match state.as_deref() {
        Some(s) => vec![s.parse().map_err(|_| {
            let all: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown state {s:?}: use one of {}", all.join(", "))
        })?],
        // Like mailq: what is still in the queue (failed jobs keep their
        // message for a retry), not what went out.
        None => JobState::ALL
            .into_iter()
            .filter(|s| *s != JobState::Sent)
            .collect(),
    };
    let account_id = match &account {
        Some(a) => Some(account_id(store, a).await?),
        None => None,
    };
    let limit = limit.clamp(1, 10_000);
    let mut out = Vec::new();
    for state in states {
        let filter = JobFilter {
            state: Some(state),
            account_id,
            search: sender.clone(),
            ..Default::default()
        };
        let found = store
            .jobs(&filter, limit, 0)
            .await
            .map_err(|e| e.to_string())?;
        out.extend(found.into_iter().filter(|j| {
            sender
                .as_deref()
                .is_none_or(|s| j.mail_from.eq_ignore_ascii_case(s))
        }));
    }
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(out)
}

/// `hikyaku status`: each account's provider, cloud, credential kind, token
/// and connection status; the queue's counts; the last error. The same
/// shape as the JSON API's `/api/v1/status`.
pub async fn status(store: &Store) -> Result<Value, crate::store::StoreError> {
    let accounts = store.accounts().await?;
    let counts: serde_json::Map<String, Value> = store
        .job_counts()
        .await?
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let last_error = store
        .last_job_error()
        .await?
        .map(|(at, reply)| json!({ "at": at, "reply": reply.to_string() }));
    let english = |r: &Option<crate::i18n::Reason>| r.as_ref().map(ToString::to_string);
    Ok(json!({
        "accounts": accounts.iter().map(|a| json!({
            "id": a.id,
            "name": a.name,
            "provider": a.provider.as_str(),
            "cloud": a.cloud.as_str(),
            "credential_kind": a.credential_kind.as_str(),
            "enabled": a.enabled,
            "is_default": a.is_default,
            "mailbox": a.mailbox,
            "token_status": a.token_status,
            "token_reason": english(&a.token_reason),
            "access_token_expires_at": a.access_expires_at,
            "credential_expires_at": a.credential_expires_at,
            "connection_status": a.connection_status,
            "connection_reason": english(&a.connection_reason),
            "connection_checked_at": a.connection_checked_at,
        })).collect::<Vec<_>>(),
        "queue": counts,
        "last_error": last_error,
    }))
}
