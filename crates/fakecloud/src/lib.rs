//! fakecloud: a test double of Microsoft Entra ID (device authorization
//! grant), Google OAuth 2.0 (authorization code + PKCE), Exchange Online SMTP
//! and Gmail SMTP, for hikyaku's tests, benches and local demos. It is never
//! a dependency of the product.
//!
//! [`FakeCloud::start`] binds everything on `127.0.0.1:0` behind TLS with a
//! per-run rcgen CA ([`FakeCloud::ca_pem`]), and the handle offers hooks
//! that play the user's side of the flows and inject faults.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fakecloud::Error> {
//! let cloud = fakecloud::FakeCloud::start(fakecloud::Options::default()).await?;
//! println!("{}", cloud.entra_endpoint("common"));
//! # Ok(()) }
//! ```

// The test double plays the outside world, whose clock is the real one;
// the product's rule of reading time through `hikyaku::clock` is not for it.
#![allow(clippy::disallowed_methods)]

mod apponly;
mod certs;
mod entra;
mod google;
mod graphdraft;
mod http;
mod mailapi;
mod smtp;
mod state;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use apponly::AppCertificate;
pub use mailapi::{ApiFault, ApiMessage, MailApi};
pub use state::{
    HttpFault, ReceivedMessage, RecordedRequest, SmtpConnections, SmtpFault, SmtpFlavor, SmtpStage,
};

use crate::smtp::ListenerKind;
use crate::state::{RefreshStatus, Shared};

/// Which certificate the servers present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertMode {
    /// Leaf `CN=localhost`, SAN localhost + 127.0.0.1, signed by the exported CA.
    #[default]
    Trusted,
    /// Like `Trusted` but `CN=other.example` (SAN still valid): only a
    /// client that also checks the CN refuses it.
    CnMismatch,
    /// Leaf signed by a second CA that is not exported.
    Untrusted,
}

/// Settings of one fakecloud run.
#[derive(Debug, Clone)]
pub struct Options {
    pub cert: CertMode,
    /// Shift of every HTTP `Date` header, in seconds (clock-skew tests).
    pub date_offset_secs: i64,
    pub access_token_lifetime_secs: u64,
    pub device_code_lifetime_secs: u64,
    pub device_poll_interval_secs: u64,
    pub google_code_lifetime_secs: u64,
    /// The registered Microsoft public client.
    pub ms_client_id: String,
    pub google_client_id: String,
    pub google_client_secret: String,
    /// Tenants known besides `common`, `organizations` and `consumers`.
    pub tenants: Vec<String>,
    /// A `verification_uri` to hand out instead of the real one, as a
    /// hostile or broken authorization server would.
    pub verification_uri: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cert: CertMode::Trusted,
            date_offset_secs: 0,
            access_token_lifetime_secs: 3599,
            device_code_lifetime_secs: 900,
            device_poll_interval_secs: 5,
            google_code_lifetime_secs: 600,
            ms_client_id: "ms-client-id".to_owned(),
            google_client_id: "google-client-id.apps.googleusercontent.com".to_owned(),
            google_client_secret: "google-client-secret".to_owned(),
            tenants: Vec::new(),
            verification_uri: None,
        }
    }
}

/// Fixed ports for [`FakeCloud::start_with_ports`]; 0 means "any free port".
/// Tests use ephemeral ports; `fakecloud serve` may pin them for demos.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ports {
    pub https: u16,
    pub exchange_smtp: u16,
    pub gmail_smtp: u16,
    pub gmail_smtps: u16,
}

/// Errors of fakecloud's own API (never of the faked protocols).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("certificate generation: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("unknown user code {0:?}")]
    UnknownUserCode(String),
    #[error("user code {0:?} has expired")]
    UserCodeExpired(String),
    #[error("user code {0:?} was already approved, declined or redeemed")]
    UserCodeNotPending(String),
    #[error("authorization request refused: {error}: {description}")]
    AuthorizationRejected { error: String, description: String },
    #[error("not a valid URL: {0}")]
    BadUrl(String),
}

/// Handle to a running fakecloud. Clones share one instance; it shuts down
/// when the last clone is dropped (or on [`FakeCloud::shutdown`]).
#[derive(Clone)]
pub struct FakeCloud {
    inner: Arc<Running>,
}

struct Running {
    shared: Arc<Shared>,
    ca_pem: String,
    https_port: u16,
    exchange_smtp: SocketAddr,
    gmail_smtp: SocketAddr,
    gmail_smtps: SocketAddr,
    cancel: CancellationToken,
    http_handle: Handle<SocketAddr>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.http_handle.shutdown();
    }
}

async fn bind_local(port: u16) -> Result<TcpListener, Error> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?)
}

impl FakeCloud {
    /// Starts all servers on `127.0.0.1` with ephemeral ports. Must be
    /// called inside a Tokio runtime; the servers run on it.
    pub async fn start(opts: Options) -> Result<FakeCloud, Error> {
        Self::start_with_ports(opts, Ports::default()).await
    }

    /// Like [`FakeCloud::start`], on the given ports of `127.0.0.1`.
    pub async fn start_with_ports(opts: Options, ports: Ports) -> Result<FakeCloud, Error> {
        // Err only means a provider is already installed, which is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

        let pki = certs::Pki::generate(opts.cert)?;
        let http_cfg = pki.server_config(&[b"http/1.1"])?;
        let smtp_cfg = pki.server_config(&[])?;

        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, ports.https))?;
        std_listener.set_nonblocking(true)?;
        let https_port = std_listener.local_addr()?.port();
        let base_url = format!("https://localhost:{https_port}");
        let shared = Arc::new(Shared::new(opts, base_url));

        let cancel = CancellationToken::new();
        let http_handle = Handle::new();
        let server =
            axum_server::from_tcp_rustls(std_listener, RustlsConfig::from_config(http_cfg))?
                .handle(http_handle.clone())
                .http1_only();
        let app = http::router(shared.clone());
        tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::warn!(error = %e, "fakecloud https server stopped");
            }
        });

        let acceptor = tokio_rustls::TlsAcceptor::from(smtp_cfg);
        let mut addrs = Vec::new();
        for (kind, port) in [
            (
                ListenerKind {
                    flavor: SmtpFlavor::Exchange,
                    implicit_tls: false,
                },
                ports.exchange_smtp,
            ),
            (
                ListenerKind {
                    flavor: SmtpFlavor::Gmail,
                    implicit_tls: false,
                },
                ports.gmail_smtp,
            ),
            (
                ListenerKind {
                    flavor: SmtpFlavor::Gmail,
                    implicit_tls: true,
                },
                ports.gmail_smtps,
            ),
        ] {
            let listener = bind_local(port).await?;
            addrs.push(listener.local_addr()?);
            tokio::spawn(smtp::serve(
                listener,
                shared.clone(),
                acceptor.clone(),
                kind,
                cancel.clone(),
            ));
        }

        Ok(FakeCloud {
            inner: Arc::new(Running {
                shared,
                ca_pem: pki.ca_pem,
                https_port,
                exchange_smtp: addrs[0],
                gmail_smtp: addrs[1],
                gmail_smtps: addrs[2],
                cancel,
                http_handle,
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Messages the HTTP sending APIs (Graph, Gmail) accepted.
    pub fn api_inbox(&self) -> Vec<ApiMessage> {
        self.shared().lock().api_inbox.clone()
    }

    /// Graph `sendMail` answers `delay` after it recorded the message
    /// (`None`: at once), so a test can kill the sender in between.
    pub fn delay_api_replies(&self, delay: Option<std::time::Duration>) {
        self.shared().lock().api_reply_delay = delay;
    }

    /// Graph drafts created and neither sent nor deleted (a large message's
    /// route left half-way).
    pub fn graph_open_drafts(&self) -> usize {
        graphdraft::open_drafts(self.shared())
    }

    /// The next API request (Graph or Gmail) gets `fault` instead of its
    /// normal reply; several queue up in order.
    pub fn push_api_fault(&self, fault: ApiFault) {
        self.shared().lock().api_faults.push_back(fault);
    }

    /// The `host:port` of the HTTPS server, as an account's API host.
    pub fn api_host(&self) -> String {
        format!("localhost:{}", self.https_port())
    }

    /// Stops all listeners now (also happens when the last handle drops).
    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.http_handle.shutdown();
    }

    /// The options this instance runs with.
    pub fn options(&self) -> &Options {
        &self.shared().opts
    }

    /// PEM of the test CA (for `Untrusted`, a CA that did not sign the leaf).
    pub fn ca_pem(&self) -> String {
        self.inner.ca_pem.clone()
    }

    pub fn https_port(&self) -> u16 {
        self.inner.https_port
    }

    /// `https://localhost:{port}`.
    pub fn base_url(&self) -> String {
        self.shared().base_url.clone()
    }

    /// `https://localhost:{port}/{tenant}/oauth2/v2.0`, the form of
    /// hikyaku's Microsoft endpoint field.
    pub fn entra_endpoint(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0", self.base_url())
    }

    pub fn google_auth_url(&self) -> String {
        format!("{}/o/oauth2/v2/auth", self.base_url())
    }

    pub fn google_token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    pub fn google_revoke_url(&self) -> String {
        format!("{}/revoke", self.base_url())
    }

    /// STARTTLS listener with Exchange Online's replies.
    pub fn exchange_smtp_addr(&self) -> SocketAddr {
        self.inner.exchange_smtp
    }

    /// STARTTLS listener with Gmail's replies.
    pub fn gmail_smtp_addr(&self) -> SocketAddr {
        self.inner.gmail_smtp
    }

    /// Implicit-TLS listener with Gmail's replies.
    pub fn gmail_smtps_addr(&self) -> SocketAddr {
        self.inner.gmail_smtps
    }

    /// The user enters `user_code` at /devicelogin and signs in as `mailbox`.
    pub fn approve_user_code(&self, user_code: &str, mailbox: &str) -> Result<(), Error> {
        entra::approve(self.shared(), user_code, mailbox)
    }

    /// The user enters `user_code` and declines.
    pub fn decline_user_code(&self, user_code: &str) -> Result<(), Error> {
        entra::decline(self.shared(), user_code)
    }

    /// Every device code issued so far expires now.
    pub fn expire_device_codes(&self) {
        entra::expire_all(self.shared());
    }

    /// The next `n` device-code polls are answered `slow_down`.
    pub fn slow_down_next_polls(&self, n: u32) {
        self.shared().lock().slow_down_remaining = n;
    }

    /// Delegated Microsoft permissions nobody consented to (e.g.
    /// `Mail.ReadWrite` when admin consent was refused): authorizations and
    /// refreshes are granted without them. An empty list consents to all.
    pub fn withhold_permissions(&self, names: &[&str]) {
        self.shared().lock().withheld_permissions = names.iter().map(|n| (*n).to_owned()).collect();
    }

    /// When each device-code token poll arrived.
    pub fn device_poll_times(&self) -> Vec<Instant> {
        self.shared().lock().device_poll_times.clone()
    }

    /// Plays the user's consent on Google's page for `authorization_url`,
    /// signing in as `email`, and returns the loopback URL the browser would
    /// be redirected to (`{redirect_uri}?state=..&code=4%2F0A..&scope=..`).
    pub fn google_consent(&self, authorization_url: &str, email: &str) -> Result<String, Error> {
        google::consent(self.shared(), authorization_url, email)
    }

    /// The user clicks Cancel: the redirect carries `error=access_denied`.
    pub fn google_deny(&self, authorization_url: &str) -> Result<String, Error> {
        google::consent_denied(self.shared(), authorization_url)
    }

    /// Every Google authorization code issued so far expires now.
    pub fn expire_google_codes(&self) {
        google::expire_codes(self.shared());
    }

    /// The mailbox's grants are revoked (both providers): its refresh tokens
    /// and access tokens stop working.
    pub fn revoke_grants(&self, mailbox: &str) {
        let mut inner = self.shared().lock();
        let grants: Vec<String> = inner
            .refresh_tokens
            .iter()
            .filter(|(_, rt)| rt.mailbox.eq_ignore_ascii_case(mailbox))
            .map(|(k, _)| k.clone())
            .collect();
        for g in grants {
            Shared::revoke_grant(&mut inner, &g);
            if let Some(rt) = inner.refresh_tokens.get_mut(&g) {
                rt.status = RefreshStatus::Revoked;
            }
        }
        for at in inner.access_tokens.values_mut() {
            if at.mailbox.eq_ignore_ascii_case(mailbox) {
                at.revoked = true;
            }
        }
    }

    /// Issues a Microsoft access token for Exchange SMTP AUTH (XOAUTH2) as
    /// `mailbox` without any OAuth flow, as if the user had signed in: for
    /// benches that talk to the SMTP listener directly.
    pub fn issue_access_token(&self, mailbox: &str) -> String {
        let shared = self.shared();
        shared
            .issue_tokens(
                state::Provider::Microsoft,
                mailbox,
                state::MS_SMTP_SCOPE,
                &shared.opts.ms_client_id,
                "organizations",
                state::RefreshChoice::None,
            )
            .0
    }

    /// Every access token issued so far expires now.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for at in self.shared().lock().access_tokens.values_mut() {
            at.expires_at = now;
        }
    }

    /// Successful `refresh_token` grants served (both providers).
    pub fn refresh_count(&self) -> u64 {
        self.shared().lock().refresh_count
    }

    /// Refresh tokens refused with `invalid_grant` because they were
    /// already redeemed (Microsoft's rotation).
    pub fn refresh_refused(&self) -> u64 {
        self.shared().lock().refresh_refused
    }

    /// The most SMTP sessions authenticated as `mailbox` that were open at
    /// the same time so far (any listener), and how many are open now.
    pub fn mailbox_sessions(&self, mailbox: &str) -> (u64, u64) {
        let (open, max) = self
            .shared()
            .lock()
            .mailbox_sessions
            .get(&mailbox.to_ascii_lowercase())
            .copied()
            .unwrap_or_default();
        (max, open)
    }

    /// Fault for the token endpoints of both providers (until changed).
    pub fn set_token_endpoint_fault(&self, f: HttpFault) {
        self.shared().lock().token_fault = f;
    }

    /// Exchange answers `535 5.7.139 ... disabled for the Mailbox` for it.
    pub fn disable_smtp_auth(&self, mailbox: &str) {
        self.shared()
            .lock()
            .smtp_auth_disabled
            .insert(mailbox.to_ascii_lowercase());
    }

    /// Undoes [`FakeCloud::disable_smtp_auth`].
    pub fn enable_smtp_auth(&self, mailbox: &str) {
        self.shared()
            .lock()
            .smtp_auth_disabled
            .remove(&mailbox.to_ascii_lowercase());
    }

    /// Every write of SMTP replies waits this long first, as if the link
    /// to the service had that round-trip time (load runs of a WAN).
    pub fn set_smtp_reply_delay(&self, delay: Duration) {
        self.shared().lock().smtp_reply_delay = delay;
    }

    /// Whether EHLO offers PIPELINING (it does unless told otherwise).
    pub fn set_pipelining(&self, offered: bool) {
        self.shared().lock().no_pipelining = !offered;
    }

    /// RCPT of this address is refused with `code`: a `5xx` as for a
    /// mailbox that does not exist (`5.1.10` Exchange, `5.1.1` Gmail), a
    /// `4xx` as for one that cannot take mail now. `0` accepts it again.
    pub fn refuse_recipient(&self, address: &str, code: u16) {
        let mut inner = self.shared().lock();
        if code == 0 {
            inner
                .refused_recipients
                .remove(&address.to_ascii_lowercase());
        } else {
            inner
                .refused_recipients
                .insert(address.to_ascii_lowercase(), code);
        }
    }

    /// Lets `mailbox` send as `address` (Send As right / Gmail alias).
    pub fn allow_send_as(&self, mailbox: &str, address: &str) {
        self.shared()
            .lock()
            .send_as
            .insert((mailbox.to_ascii_lowercase(), address.to_ascii_lowercase()));
    }

    /// Fault for all SMTP listeners (until changed).
    pub fn set_smtp_fault(&self, f: SmtpFault) {
        self.shared().lock().smtp_fault = f;
    }

    /// SMTP connection counts so far.
    pub fn smtp_connections(&self) -> SmtpConnections {
        self.shared().lock().smtp_connections
    }

    /// Closes every SMTP connection that is waiting for a command, as
    /// servers do with idle connections.
    pub fn close_idle_smtp_connections(&self) {
        self.shared().idle_kick.send_modify(|k| *k += 1);
    }

    /// Messages accepted so far, in order.
    pub fn inbox(&self) -> Vec<ReceivedMessage> {
        self.shared().lock().inbox.clone()
    }

    /// Waits until at least `n` messages arrived or `timeout` passed, and
    /// returns the inbox either way.
    pub async fn wait_for_inbox(&self, n: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        let mut rx = self.shared().inbox_len.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|len| *len >= n)).await;
        self.inbox()
    }

    /// Every HTTP request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared().lock().requests.clone()
    }
}

/// App-only grants: registration of apps, certificates, service accounts,
/// mailbox grants and forced errors.
impl FakeCloud {
    /// Registers a confidential client (app registration) in `tenant`.
    pub fn register_app(&self, tenant: &str, client_id: &str) {
        self.shared().lock().app.apps.insert(
            client_id.to_owned(),
            apponly::App {
                tenant: tenant.to_owned(),
                ..Default::default()
            },
        );
    }

    /// Adds a client secret to an app; `expired` makes Entra answer AADSTS7000222.
    pub fn add_app_secret(&self, client_id: &str, secret: &str, expired: bool) {
        if let Some(app) = self.shared().lock().app.apps.get_mut(client_id) {
            app.secrets.push((secret.to_owned(), expired));
        }
    }

    /// Makes a certificate valid for `valid_days` more days (negative:
    /// already expired) and, when `upload`, registers it with the app.
    pub fn new_app_certificate(
        &self,
        client_id: &str,
        valid_days: i64,
        upload: bool,
    ) -> Result<AppCertificate, Error> {
        let (cert, thumb, public) = apponly::new_certificate(valid_days)?;
        if upload && let Some(app) = self.shared().lock().app.apps.get_mut(client_id) {
            app.certificates.insert(thumb, public);
        }
        Ok(cert)
    }

    /// Exchange lets the app's service principal use `mailbox`
    /// (`New-ServicePrincipal` + `Add-MailboxPermission`).
    pub fn grant_app_mailbox(&self, client_id: &str, mailbox: &str) {
        self.shared()
            .lock()
            .app
            .grants
            .insert((client_id.to_owned(), mailbox.to_ascii_lowercase()));
    }

    /// A Workspace user that a service account may act as.
    pub fn add_workspace_user(&self, email: &str) {
        self.shared()
            .lock()
            .app
            .workspace_users
            .insert(email.to_ascii_lowercase());
    }

    /// Creates a service account and returns its JSON key file (token_uri
    /// pointing here). No delegation is granted yet.
    pub fn new_service_account(&self, client_email: &str) -> String {
        let (json, public) =
            apponly::new_service_account_key(client_email, &self.google_token_url());
        self.shared()
            .lock()
            .app
            .service_accounts
            .entry(client_email.to_owned())
            .or_default()
            .public_keys
            .push(public);
        json
    }

    /// Domain-wide delegation of `scopes` to the service account.
    pub fn delegate(&self, client_email: &str, scopes: &[&str]) {
        if let Some(sa) = self
            .shared()
            .lock()
            .app
            .service_accounts
            .get_mut(client_email)
        {
            sa.delegated_scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        }
    }

    /// Deletes every key of the service account (its JWTs then fail).
    pub fn delete_service_account_keys(&self, client_email: &str) {
        if let Some(sa) = self
            .shared()
            .lock()
            .app
            .service_accounts
            .get_mut(client_email)
        {
            sa.public_keys.clear();
        }
    }

    /// Makes both app-only grants answer this error until cleared (`None`).
    pub fn set_app_token_error(&self, error: Option<(u16, &str, &str)>) {
        self.shared().lock().app.forced_error =
            error.map(|(s, e, d)| (s, e.to_owned(), d.to_owned()));
    }

    /// How many app-only token requests arrived.
    pub fn app_token_requests(&self) -> usize {
        self.shared().lock().app.requests.len()
    }
}
