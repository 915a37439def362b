//! Google: the authorization code grant for a desktop app, with PKCE (S256)
//! and a loopback redirect (protocols.md §3).
//!
//! The URL's `state`, the PKCE verifier and the redirect URI are sealed and
//! stored as the account's authorization. The administrator pastes the code
//! or the whole address the browser landed on (the seed's way); when the
//! browser runs on this host, a one-shot loopback listener on the redirect
//! port catches the redirect itself and completes the exchange.

use std::sync::Arc;
use std::time::Duration;

use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenUrl,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::paste::{self, PasteError};
use super::status::{self, TokenStatus};
use super::wire::{CallError, OClient};
use super::{Inner, Pending, Setup, TokenService, TokensError, html_escape};
use crate::provider::{GOOGLE_SCOPES, Provider};
use crate::store::accounts::Account;

/// How long the loopback listener waits for the browser.
const LISTEN_FOR: Duration = Duration::from_secs(15 * 60);
/// Largest request head the loopback listener reads.
const MAX_HEAD: usize = 16 * 1024;

/// The URL for `[Google認可サーバー用URL] / URL for Google Authorization Server`.
#[derive(Clone, PartialEq, Eq)]
pub struct GoogleAuthorization {
    pub url: String,
    pub redirect_uri: String,
    /// Whether hikyaku listens on the redirect address (then no paste is needed
    /// when the browser runs on this host).
    pub loopback_listening: bool,
}

impl std::fmt::Debug for GoogleAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleAuthorization")
            .field("url", &"[redacted]")
            .field("redirect_uri", &self.redirect_uri)
            .field("loopback_listening", &self.loopback_listening)
            .finish()
    }
}

/// The persisted Google authorization (sealed).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PendingGoogle {
    pub state: String,
    pub verifier: String,
    pub redirect_uri: String,
    pub created_at: i64,
}

impl std::fmt::Debug for PendingGoogle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingGoogle([redacted])")
    }
}

impl TokenService {
    /// Builds the authorization URL (code + PKCE S256, offline access, consent
    /// prompt, random state), stores the pending authorization sealed, and
    /// opens the loopback listener on the redirect port while it is pending.
    pub async fn google_authorization_url(
        &self,
        account_id: i64,
    ) -> Result<GoogleAuthorization, TokensError> {
        let inner = &self.inner;
        let a = inner.account(account_id).await?;
        let sealed = inner.store.sealed_secrets(account_id).await?;
        let (client_id, _secret) = inner.google_credentials(&a, sealed.client_secret.as_deref())?;
        if !a.enabled {
            return Err(TokensError::NotConfigured(Setup::GoogleOff));
        }
        inner.stop_task(account_id);
        let host = inner.google.redirect_host.trim().to_string();
        let listener = match TcpListener::bind((host.as_str(), 0)).await {
            Ok(l) => Some(l),
            Err(_) => {
                tracing::warn!(
                    account = account_id,
                    "cannot open the loopback listener; the code must be pasted"
                );
                None
            }
        };
        let port = match listener.as_ref().and_then(|l| l.local_addr().ok()) {
            Some(addr) => addr.port(),
            None => 49152 + (rand::random::<u16>() % 16000),
        };
        let host_part = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let redirect_uri = format!("http://{host_part}:{port}");
        let auth_url = AuthUrl::new(inner.google.auth_url.clone()).map_err(|e| {
            TokensError::NotConfigured(Setup::BadUrl(format!(
                "invalid Google authorization URL: {e}"
            )))
        })?;
        let redirect = RedirectUrl::new(redirect_uri.clone()).map_err(|e| {
            TokensError::NotConfigured(Setup::BadUrl(format!(
                "invalid redirect address {redirect_uri}: {e}"
            )))
        })?;
        let client: OClient =
            OClient::new(ClientId::new(client_id)).set_auth_type(AuthType::RequestBody);
        let client = client.set_auth_uri(auth_url).set_redirect_uri(redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(
                // The Gmail API asks only for sending; SMTP needs full mail access.
                std::iter::once(a.delegated_scope())
                    .chain(GOOGLE_SCOPES[1..].iter().map(|s| (*s).to_string()))
                    .map(Scope::new),
            )
            .set_pkce_challenge(challenge)
            .add_extra_param("access_type", "offline")
            .add_extra_param("prompt", "consent");
        if let Some(m) = a.mailbox.as_deref().filter(|m| !m.is_empty()) {
            request = request.add_extra_param("login_hint", m.to_string());
        }
        let (url, state) = request.url();
        let pending = PendingGoogle {
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            redirect_uri: redirect_uri.clone(),
            created_at: inner.clock.unix(),
        };
        inner
            .save_pending(account_id, &Pending::Google(pending))
            .await?;
        let loopback_listening = listener.is_some();
        if let Some(l) = listener {
            inner.spawn_listener(account_id, l);
        }
        tracing::info!(
            account = account_id,
            loopback_listening,
            "Google authorization URL issued"
        );
        Ok(GoogleAuthorization {
            url: url.to_string(),
            redirect_uri,
            loopback_listening,
        })
    }

    /// Completes the Google authorization with what the administrator pasted:
    /// the bare code, or the whole address (then its `state` must match).
    pub async fn google_submit_code(
        &self,
        account_id: i64,
        pasted: &str,
    ) -> Result<(), TokensError> {
        let parsed = paste::parse(pasted).map_err(|e| match e {
            PasteError::Provider { error, .. } if error == "access_denied" => {
                TokensError::AccessDenied
            }
            other @ PasteError::Provider { .. } => TokensError::Provider(other.to_string()),
            PasteError::Invalid(problem) => TokensError::Pasted(problem),
        })?;
        self.inner
            .google_complete(account_id, &parsed.code, parsed.state.as_deref())
            .await?;
        self.inner.stop_task(account_id);
        Ok(())
    }
}

impl Inner {
    /// Exchanges `code` (with the stored verifier and redirect URI) and stores the tokens.
    pub(crate) async fn google_complete(
        &self,
        id: i64,
        code: &str,
        state: Option<&str>,
    ) -> Result<(), TokensError> {
        let lock = self.account_lock(id);
        let _guard = lock.lock().await;
        let a = self.account(id).await?;
        if a.provider != Provider::Google {
            return Err(TokensError::NotConfigured(Setup::WrongProvider(
                Provider::Google,
            )));
        }
        let Some(Pending::Google(p)) = self.pending(id).await? else {
            return Err(TokensError::NoPendingAuthorization);
        };
        if let Some(s) = state
            && !bool::from(s.as_bytes().ct_eq(p.state.as_bytes()))
        {
            return Err(TokensError::StateMismatch);
        }
        let sealed = self.store.sealed_secrets(id).await?;
        let (client_id, secret) = self.google_credentials(&a, sealed.client_secret.as_deref())?;
        let token_url = TokenUrl::new(self.google.token_url.clone()).map_err(|e| {
            TokensError::NotConfigured(Setup::BadUrl(format!("invalid Google token URL: {e}")))
        })?;
        let redirect = RedirectUrl::new(p.redirect_uri.clone()).map_err(|e| {
            TokensError::NotConfigured(Setup::BadUrl(format!("invalid redirect address: {e}")))
        })?;
        let client: OClient = OClient::new(ClientId::new(client_id))
            .set_client_secret(ClientSecret::new(secret))
            .set_auth_type(AuthType::RequestBody);
        let client = client.set_token_uri(token_url).set_redirect_uri(redirect);
        let transport = self.transport(&a)?;
        let result = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(p.verifier.clone()))
            .request_async(&transport)
            .await;
        let t = match result {
            Ok(t) => t,
            Err(e) => {
                let err = match CallError::from_request(e) {
                    CallError::Temporary(t) => TokensError::Temporary(format!(
                        "Google's token endpoint cannot be reached: {t}"
                    )),
                    CallError::Oauth { error, description } => match error.as_str() {
                        "invalid_grant" => TokensError::CodeRejected,
                        "redirect_uri_mismatch" => TokensError::RedirectUriMismatch,
                        "invalid_client" | "unauthorized_client" => TokensError::InvalidClient,
                        "access_denied" => TokensError::AccessDenied,
                        _ => TokensError::Provider(status::describe_provider_error(
                            Provider::Google,
                            &error,
                            description.as_deref(),
                        )),
                    },
                };
                tracing::warn!(
                    account = id,
                    temporary = err.is_temporary(),
                    "Google code exchange failed"
                );
                return Err(err);
            }
        };
        self.complete_authorization(&a, &t).await?;
        tracing::info!(
            account = id,
            status = "active",
            "Google authorization completed"
        );
        Ok(())
    }

    pub(crate) fn spawn_listener(self: &Arc<Self>, id: i64, listener: TcpListener) {
        let task_id = self.new_task_id();
        let inner = self.clone();
        let handle = tokio::spawn(async move {
            let cancel = inner.cancel.clone();
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(LISTEN_FOR) => {}
                _ = inner.listen(id, &listener) => {}
            }
            inner.task_done(id, task_id);
        });
        self.set_task(id, task_id, handle.abort_handle());
    }

    /// After a restart: listen again on the stored redirect port, if it is free.
    pub(crate) async fn resume_google(self: &Arc<Self>, a: &Account, p: PendingGoogle) {
        let age = self.clock.unix().saturating_sub(p.created_at);
        if age < 0 || age > i64::try_from(LISTEN_FOR.as_secs()).unwrap_or(900) {
            return;
        }
        let Ok(url) = url::Url::parse(&p.redirect_uri) else {
            return;
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port()) else {
            return;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if let Ok(l) = TcpListener::bind((host.as_str(), port)).await {
            self.spawn_listener(a.id, l);
        }
    }

    /// Serves redirects until one completes the authorization.
    async fn listen(&self, id: i64, listener: &TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // E.g. out of file descriptors: do not spin.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let served =
                tokio::time::timeout(Duration::from_secs(30), self.serve_redirect(id, stream))
                    .await;
            if let Ok(true) = served {
                return;
            }
        }
    }

    /// Whether `state` is the state of the account's pending Google
    /// authorization (compared in constant time).
    async fn is_pending_state(&self, id: i64, state: Option<&str>) -> bool {
        let Some(state) = state else { return false };
        match self.pending(id).await {
            Ok(Some(Pending::Google(p))) => bool::from(state.as_bytes().ct_eq(p.state.as_bytes())),
            _ => false,
        }
    }

    /// Handles one browser request; `true` when the authorization completed.
    async fn serve_redirect(&self, id: i64, mut stream: TcpStream) -> bool {
        let mut head = Vec::new();
        let mut buf = [0u8; 2048];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&head);
        let mut parts = text.lines().next().unwrap_or("").split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method != "GET" {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "Not allowed",
                "Only the browser's redirect is served here.",
            )
            .await;
            return false;
        }
        if !target.contains('?') {
            respond(
                &mut stream,
                "404 Not Found",
                "Not found",
                "This address only receives Google's redirect.",
            )
            .await;
            return false;
        }
        let (done, status_line, title, body) = match paste::parse(target) {
            Ok(p) if p.state.is_none() => (
                false,
                "400 Bad Request",
                "Authorization failed",
                TokensError::StateMismatch.to_string(),
            ),
            Ok(p) => match self.google_complete(id, &p.code, p.state.as_deref()).await {
                Ok(()) => (
                    true,
                    "200 OK",
                    "Authorization complete",
                    "hikyaku is now authorized (Token Status: Active). You can close this window."
                        .to_string(),
                ),
                Err(e) => (
                    false,
                    "400 Bad Request",
                    "Authorization failed",
                    e.to_string(),
                ),
            },
            // Only the browser sent back by Google knows the state; any
            // other request must not end the pending authorization.
            Err(PasteError::Provider { error, state, .. })
                if error == "access_denied"
                    && !self.is_pending_state(id, state.as_deref()).await =>
            {
                (
                    false,
                    "400 Bad Request",
                    "Authorization failed",
                    TokensError::StateMismatch.to_string(),
                )
            }
            Err(PasteError::Provider { error, .. }) if error == "access_denied" => {
                let reason = status::access_denied();
                let text = reason.to_string();
                // Ends this authorization; an Active grant beside it stays.
                if let Err(e) = self
                    .store
                    .set_authorization(id, None, TokenStatus::Error.as_str(), Some(&reason))
                    .await
                {
                    tracing::warn!(account = id, error = %e, "cannot store the token status");
                }
                (false, "400 Bad Request", "Access denied", text)
            }
            Err(e) => (
                false,
                "400 Bad Request",
                "Authorization failed",
                e.to_string(),
            ),
        };
        respond(&mut stream, status_line, title, &body).await;
        done
    }
}

async fn respond(stream: &mut TcpStream, status_line: &str, title: &str, body: &str) {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>hikyaku — {t}</title></head>\n<body><h1>{t}</h1><p>{b}</p></body></html>\n",
        t = html_escape(title),
        b = html_escape(body)
    );
    let response = format!(
        "HTTP/1.1 {status_line}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{html}",
        html.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
