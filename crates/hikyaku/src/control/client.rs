//! The command line's side: the control socket, or the JSON API with an API
//! token (`--url`, `HIKYAKU_TOKEN`) for a server on another host. Both give
//! the same JSON shapes, so one renderer serves both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{Reply, Request};
use crate::intake::local::Submission;

/// Why a command could not be carried out by the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "the hikyaku server is not running (nothing answers on the control socket {path}); nothing was done. \
         Start it (systemctl start hikyaku, or hikyaku serve), or give its configuration with --config or HIKYAKU_CONFIG"
    )]
    NotRunning { path: String },
    #[error(
        "this user may not open the control socket {path} (permission denied); nothing was done. \
         Set control.socket to a path every user can reach (the package uses /run/hikyaku/hikyaku.sock)"
    )]
    NoAccess { path: String },
    // Causes are part of the messages, said once.
    #[error("the connection to the hikyaku server broke: {0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Refused(String),
    #[error("the server's reply could not be read: {0}")]
    Protocol(String),
    #[error("the JSON API at {url}: {reason}")]
    Api { url: String, reason: String },
}

impl ClientError {
    /// Nothing answers: the caller may fall back to writing the store itself
    /// (the server is stopped, so no one else writes it).
    pub fn is_not_running(&self) -> bool {
        matches!(self, ClientError::NotRunning { .. })
    }
}

/// The control socket of a running server.
#[derive(Debug, Clone)]
pub struct SocketClient {
    pub path: PathBuf,
}

impl SocketClient {
    pub fn new(path: &Path) -> Self {
        SocketClient {
            path: path.to_path_buf(),
        }
    }

    async fn connect(&self) -> Result<BufReader<UnixStream>, ClientError> {
        let path = self.path.display().to_string();
        match UnixStream::connect(&self.path).await {
            Ok(s) => Ok(BufReader::new(s)),
            Err(e) => Err(match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    ClientError::NotRunning { path }
                }
                std::io::ErrorKind::PermissionDenied => ClientError::NoAccess { path },
                _ => ClientError::Io(e),
            }),
        }
    }

    /// One request and its result.
    pub async fn call(&self, request: &Request) -> Result<Value, ClientError> {
        let mut stream = self.connect().await?;
        send(&mut stream, request).await?;
        receive(&mut stream).await
    }

    /// Hands a message to the server; returns the job id once it is stored.
    pub async fn submit(
        &self,
        submission: Submission,
        message: &[u8],
        client: &str,
    ) -> Result<String, ClientError> {
        let mut stream = self.connect().await?;
        let request = Request::Submit {
            submission,
            size: message.len() as u64,
            client: client.into(),
        };
        send(&mut stream, &request).await?;
        // The server refuses a message too large before it is sent.
        receive(&mut stream).await?;
        stream
            .get_mut()
            .write_all(message)
            .await
            .map_err(ClientError::Io)?;
        stream.get_mut().flush().await.map_err(ClientError::Io)?;
        let result = receive(&mut stream).await?;
        result["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Protocol("no job id".into()))
    }
}

async fn send(stream: &mut BufReader<UnixStream>, request: &Request) -> Result<(), ClientError> {
    let mut line = serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push(b'\n');
    stream
        .get_mut()
        .write_all(&line)
        .await
        .map_err(ClientError::Io)
}

async fn receive(stream: &mut BufReader<UnixStream>) -> Result<Value, ClientError> {
    let mut line = Vec::new();
    stream
        .take(64 * 1024 * 1024)
        .read_until(b'\n', &mut line)
        .await
        .map_err(ClientError::Io)?;
    if line.is_empty() {
        return Err(ClientError::Protocol(
            "the server closed the connection without an answer (see its log)".into(),
        ));
    }
    let reply: Reply =
        serde_json::from_slice(&line).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if reply.ok {
        Ok(reply.result)
    } else {
        Err(ClientError::Refused(reply.error.unwrap_or_default()))
    }
}

/// The JSON API of a server, with an API token.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// `cacert`: PEM CA certificates (or the server's self-signed
    /// certificate) trusted besides the system's.
    pub fn new(url: &str, token: &str, cacert: Option<&str>) -> Result<Self, ClientError> {
        let api = |reason: String| ClientError::Api {
            url: url.to_string(),
            reason,
        };
        let mut extra_cas = Vec::new();
        if let Some(pem) = cacert {
            use rustls_pki_types::CertificateDer;
            use rustls_pki_types::pem::PemObject as _;
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                extra_cas.push(c.map_err(|e| api(format!("the CA certificate file: {e}")))?);
            }
        }
        crate::tls::install_crypto_provider();
        let policy = crate::tls::TlsPolicy {
            verify: true,
            verify_cn: false,
            extra_cas,
        };
        let http = crate::http::client(&policy, Duration::from_secs(60))
            .map_err(|e| api(e.to_string()))?;
        Ok(ApiClient {
            base: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(
                &url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(query)
                    .finish(),
            );
        }
        let api = |reason: String| ClientError::Api {
            url: url.clone(),
            reason,
        };
        let response = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| {
                api(format!(
                    "cannot connect ({e}): is the server running there?"
                ))
            })?;
        let status = response.status();
        let body: Value = if status == reqwest::StatusCode::NO_CONTENT {
            Value::Null
        } else {
            response.json().await.map_err(|e| api(e.to_string()))?
        };
        if status.is_success() {
            Ok(body)
        } else if status == reqwest::StatusCode::UNAUTHORIZED {
            Err(api(
                "the API token was refused: give a valid one in HIKYAKU_TOKEN".into(),
            ))
        } else {
            Err(ClientError::Refused(
                body["message"]
                    .as_str()
                    .map_or_else(|| format!("{status}"), str::to_string),
            ))
        }
    }
}

/// Where the queue commands go.
#[derive(Debug, Clone)]
pub enum Server {
    Socket(SocketClient),
    Api(ApiClient),
}

impl Server {
    /// The jobs of `hikyaku queue`, oldest first.
    pub async fn jobs(
        &self,
        state: Option<String>,
        account: Option<String>,
        sender: Option<String>,
        limit: i64,
    ) -> Result<Vec<Value>, ClientError> {
        let jobs = match self {
            Server::Socket(s) => {
                s.call(&Request::Jobs {
                    state,
                    account,
                    sender,
                    limit,
                })
                .await?
            }
            Server::Api(api) => {
                let account_id = match &account {
                    Some(a) => Some(api_account_id(api, a).await?),
                    None => None,
                };
                let states: Vec<String> = match state {
                    Some(s) => vec![s],
                    None => ["queued", "sending", "deferred", "failed"]
                        .map(String::from)
                        .to_vec(),
                };
                let mut all = Vec::new();
                for state in states {
                    let mut query = vec![
                        ("state", state),
                        ("limit", limit.clamp(1, 1000).to_string()),
                    ];
                    if let Some(s) = &sender {
                        query.push(("q", s.clone()));
                    }
                    let page = api
                        .request(reqwest::Method::GET, "/api/v1/jobs", &query)
                        .await?;
                    all.extend(
                        page.as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|j| {
                                sender.as_deref().is_none_or(|s| {
                                    j["mail_from"]
                                        .as_str()
                                        .is_some_and(|f| f.eq_ignore_ascii_case(s))
                                }) && account_id
                                    .is_none_or(|id| j["account_id"].as_i64() == Some(id))
                            }),
                    );
                }
                all.sort_by_key(|j| j["created_at"].as_i64().unwrap_or_default());
                json!(all)
            }
        };
        Ok(jobs.as_array().cloned().unwrap_or_default())
    }

    pub async fn job(&self, id: &str) -> Result<Value, ClientError> {
        match self {
            Server::Socket(s) => s.call(&Request::Job { id: id.into() }).await,
            Server::Api(api) => {
                api.request(
                    reqwest::Method::GET,
                    &format!("/api/v1/jobs/{}", encode(id)),
                    &[],
                )
                .await
            }
        }
    }

    pub async fn retry(&self, id: &str) -> Result<Value, ClientError> {
        match self {
            Server::Socket(s) => s.call(&Request::Retry { id: id.into() }).await,
            Server::Api(api) => {
                api.request(
                    reqwest::Method::POST,
                    &format!("/api/v1/jobs/{}/retry", encode(id)),
                    &[],
                )
                .await
            }
        }
    }

    /// Retries every deferred job; returns how many.
    pub async fn retry_deferred(&self) -> Result<u64, ClientError> {
        match self {
            Server::Socket(s) => Ok(s.call(&Request::RetryDeferred).await?["retried"]
                .as_u64()
                .unwrap_or_default()),
            Server::Api(_) => {
                let mut n = 0;
                for job in self.jobs(Some("deferred".into()), None, None, 1000).await? {
                    if let Some(id) = job["id"].as_str()
                        && self.retry(id).await.is_ok()
                    {
                        n += 1;
                    }
                }
                Ok(n)
            }
        }
    }

    pub async fn delete(&self, id: &str) -> Result<(), ClientError> {
        match self {
            Server::Socket(s) => s.call(&Request::Delete { id: id.into() }).await.map(drop),
            Server::Api(api) => api
                .request(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/jobs/{}", encode(id)),
                    &[],
                )
                .await
                .map(drop),
        }
    }

    pub async fn status(&self) -> Result<Value, ClientError> {
        match self {
            Server::Socket(s) => s.call(&Request::Status).await,
            Server::Api(api) => {
                api.request(reqwest::Method::GET, "/api/v1/status", &[])
                    .await
            }
        }
    }
}

/// A job id as one path segment.
fn encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

async fn api_account_id(api: &ApiClient, wanted: &str) -> Result<i64, ClientError> {
    let status = api
        .request(reqwest::Method::GET, "/api/v1/status", &[])
        .await?;
    let accounts = status["accounts"].as_array().cloned().unwrap_or_default();
    accounts
        .iter()
        .find(|a| {
            a["id"].as_i64().map(|i| i.to_string()).as_deref() == Some(wanted)
                || a["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(wanted))
                || a["provider"]
                    .as_str()
                    .is_some_and(|p| p.eq_ignore_ascii_case(wanted))
        })
        .and_then(|a| a["id"].as_i64())
        .ok_or_else(|| {
            ClientError::Refused(format!(
                "unknown account {wanted:?}: `hikyaku status` lists the accounts"
            ))
        })
}
