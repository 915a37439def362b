//! The first-time administrator's pages: where devices connect (the SMTP
//! listeners with example settings), the Portal's set-up checklist, and the
//! E-mail Settings' Test connection.

use std::net::SocketAddr;
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::Chrome;
use crate::delivery::outcome::Stage;
use crate::delivery::smtp::{self, SmtpError};
use crate::i18n::Reason;
use crate::provider::Provider;
use crate::queue::{JobState, JobStore as _};
use crate::roles::Permission;
use crate::store::accounts::Account;
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;
use crate::web::i18n::Tr;

/// One SMTP listener as the devices page shows it.
pub struct ListenerView {
    /// The address a device on the LAN would use: the bound address, or a
    /// placeholder when it listens on every address.
    pub host: String,
    pub port: u16,
    /// `plain`, `starttls` or `implicit`: what a device sets as its security.
    pub security: &'static str,
    pub security_label: String,
    pub auth_label: String,
    /// Only this machine can reach it.
    pub loopback: bool,
    /// The configuration key that lists it.
    pub key: &'static str,
}

/// The listeners of the configuration (bound ports, as start-up records them).
pub fn listeners(state: &AppState, tr: &Tr) -> Vec<ListenerView> {
    let i = &state.config.intake;
    let tls = !i.tls_cert.trim().is_empty();
    let mut out = Vec::new();
    let mut add = |addr: &SocketAddr, key: &'static str, security: &'static str| {
        let loopback = addr.ip().is_loopback();
        // AUTH over plaintext is offered only on loopback (see app.rs).
        let auth = match security {
            "plain" if loopback => "devices-auth-or-allowlist",
            "plain" if tls => "devices-auth-after-starttls",
            "plain" => "devices-allowlist-only",
            _ => "devices-auth-or-allowlist",
        };
        let security_key = match security {
            "plain" if tls => "devices-security-starttls-optional",
            "plain" => "devices-security-plain",
            "starttls" => "devices-security-starttls",
            _ => "devices-security-implicit",
        };
        out.push(ListenerView {
            host: if addr.ip().is_unspecified() {
                tr.t("devices-this-host")
            } else {
                addr.ip().to_string()
            },
            port: addr.port(),
            security,
            security_label: tr.t(security_key),
            auth_label: tr.t(auth),
            loopback,
            key,
        });
    };
    for a in &i.listen {
        add(a, "intake.listen", "plain");
    }
    for a in &i.starttls_listen {
        add(a, "intake.starttls_listen", "starttls");
    }
    for a in &i.implicit_tls_listen {
        add(a, "intake.implicit_tls_listen", "implicit");
    }
    out
}

/// "Connect your devices": what the Portal and the devices page show.
pub struct ConnectView {
    pub listeners: Vec<ListenerView>,
    pub allowlist: Vec<String>,
    pub submitters: Vec<String>,
    /// Every listener is loopback-only: no device on the LAN can send.
    pub loopback_only: bool,
    pub can_manage: bool,
}

pub async fn connect_view(state: &AppState, ui: &Ui) -> Result<ConnectView, WebError> {
    let listeners = listeners(state, &ui.tr);
    Ok(ConnectView {
        loopback_only: !listeners.is_empty() && listeners.iter().all(|l| l.loopback),
        allowlist: state
            .store
            .allowlist()
            .await?
            .into_iter()
            .map(|e| e.cidr)
            .collect(),
        submitters: state
            .store
            .submitters()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect(),
        listeners,
        can_manage: ui.can(Permission::ManageEmail),
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "devices.html")]
struct DevicesPage {
    c: Chrome,
    connect: ConnectView,
}

pub async fn devices_page(State(state): State<AppState>, ui: Ui) -> Result<Response, WebError> {
    ui.require(Permission::ViewStatus)?;
    Ok(DevicesPage {
        connect: connect_view(&state, &ui).await?,
        c: Chrome::for_ui(&ui, &state, "/devices"),
    }
    .into_response())
}

/// One step of the set-up checklist.
pub struct ChecklistItem {
    pub id: &'static str,
    pub label: String,
    pub done: bool,
    /// Why it is not done yet, or what was found.
    pub detail: Option<String>,
    pub href: &'static str,
}

/// The set-up checklist, each step read from the store. `None` once every
/// step is done.
pub async fn checklist(state: &AppState, tr: &Tr) -> Result<Option<Vec<ChecklistItem>>, WebError> {
    let accounts = state.store.accounts().await?;
    let cas = state.store.ca_certificates().await?;
    let mut items = Vec::new();
    // CA certificates are needed when a server's certificate was refused as
    // of an unknown issuer (a private CA or a TLS-inspecting proxy).
    let mut untrusted = false;
    for a in &accounts {
        let test = last_test(state, a.id).await;
        untrusted |= a
            .connection_reason
            .as_ref()
            .is_some_and(|r| r.code == "tls-unknown-issuer");
        untrusted |= test
            .as_ref()
            .is_some_and(|t| !t.ok && t.reason.code == "email-test-unknown-ca");
    }
    if untrusted || !cas.is_empty() {
        items.push(ChecklistItem {
            id: "check-ca",
            label: tr.t("check-ca"),
            done: !untrusted,
            detail: untrusted.then(|| tr.t("check-ca-untrusted")),
            href: "/settings/management/ca-certificates",
        });
    }
    let active = accounts
        .iter()
        .find(|a| a.enabled && a.token_status == "active");
    items.push(ChecklistItem {
        id: "check-oauth",
        label: tr.t("check-oauth"),
        done: active.is_some(),
        detail: None,
        href: match active.map(|a| a.provider) {
            Some(Provider::Google) => "/settings/send/oauth/google",
            _ => "/settings/send/oauth/microsoft",
        },
    });
    let mut tested = false;
    let mut stale = false;
    for a in &accounts {
        if let Some(t) = last_test(state, a.id).await {
            if t.ok && t.matches(a) {
                tested = true;
            } else if t.ok {
                stale = true;
            }
        }
    }
    items.push(ChecklistItem {
        id: "check-email",
        label: tr.t("check-email"),
        done: tested,
        detail: (!tested && stale).then(|| tr.t("email-test-stale")),
        href: "/settings/send/email",
    });
    let who =
        !state.store.submitters().await?.is_empty() || !state.store.allowlist().await?.is_empty();
    items.push(ChecklistItem {
        id: "check-submitter",
        label: tr.t("check-submitter"),
        done: who,
        detail: None,
        href: "/settings/send/email#submitters",
    });
    let sent = state
        .store
        .job_counts()
        .await?
        .iter()
        .any(|(s, n)| *s == JobState::Sent && *n > 0);
    items.push(ChecklistItem {
        id: "check-delivered",
        label: tr.t("check-delivered"),
        done: sent,
        detail: None,
        href: "/jobs",
    });
    if items.iter().all(|i| i.done) {
        return Ok(None);
    }
    Ok(Some(items))
}

/// The result of the last Test connection of an account, kept in the
/// settings table so that the page and the checklist can tell whether the
/// settings changed since.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestResult {
    pub ok: bool,
    pub host: String,
    pub port: u16,
    pub security: String,
    pub verify_cert: bool,
    pub verify_cn: bool,
    pub at: i64,
    pub reason: Reason,
    /// The server's own words (a negative reply), shown as quoted text.
    #[serde(default)]
    pub remote: Option<String>,
}

impl TestResult {
    /// Whether the account's settings are still the ones tested.
    pub fn matches(&self, a: &Account) -> bool {
        let (host, port) = effective(a);
        self.host == host
            && self.port == port
            && self.security == a.smtp_security.to_string()
            && self.verify_cert == a.verify_cert
            && self.verify_cn == a.verify_cn
    }
}

fn setting_key(id: i64) -> String {
    format!("email_test.{id}")
}

pub async fn last_test(state: &AppState, id: i64) -> Option<TestResult> {
    let text = state.store.setting(&setting_key(id)).await.ok()??;
    serde_json::from_str(&text).ok()
}

/// The host and port delivery uses: the account's, or the provider's default.
fn effective(a: &Account) -> (String, u16) {
    let (default_host, default_port) = a.provider.default_smtp();
    let host = if a.smtp_host.trim().is_empty() {
        default_host.to_owned()
    } else {
        a.smtp_host.trim().to_owned()
    };
    let port = if a.smtp_port == 0 {
        default_port
    } else {
        a.smtp_port
    };
    (host, port)
}

/// Longest wait of a test for each step: a person is waiting for the page.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects as delivery does (the account's TLS rules: Verify Certificate,
/// Add CN, the CA certificates), says EHLO, authenticates with XOAUTH2 when
/// the account has a token, and quits. No message is sent.
pub async fn test_connection(state: &AppState, a: &Account) -> TestResult {
    let (host, port) = effective(a);
    let mut result = TestResult {
        ok: false,
        host: host.clone(),
        port,
        security: a.smtp_security.to_string(),
        verify_cert: a.verify_cert,
        verify_cn: a.verify_cn,
        at: state.clock.unix(),
        reason: Reason::new("email-test-ok"),
        remote: None,
    };
    let policy = state.tokens.tls_policy(a);
    let (tls_id, tls) = match crate::tls::client_config_with_id(&policy) {
        Ok(c) => c,
        Err(e) => {
            result.reason = Reason::new("email-test-failed").arg("detail", e);
            return result;
        }
    };
    let target = smtp::Target {
        full_detail: smtp::provider_host(a.provider, a.cloud, &host),
        host: host.clone(),
        port,
        security: a.smtp_security,
        tls,
        tls_id,
        connect_timeout: TEST_TIMEOUT,
        command_timeout: TEST_TIMEOUT,
        hello: Default::default(),
    };
    let mut session = match smtp::connect(&target).await {
        Ok(s) => s,
        Err(e) => {
            (result.reason, result.remote) = failure(&e, &host, port);
            return result;
        }
    };
    if a.token_status != "active" || !a.enabled {
        session.quit().await;
        result.ok = true;
        result.reason = Reason::new("email-test-ok-no-auth");
        return result;
    }
    let token = match state.tokens.access_token(a.id).await {
        Ok(t) => t,
        Err(e) => {
            session.quit().await;
            result.reason = Reason::new("email-test-no-token").arg("detail", e);
            return result;
        }
    };
    match session.auth_xoauth2(&token.mailbox, &token.token).await {
        Ok(()) => {
            session.quit().await;
            result.ok = true;
            result.reason = Reason::new("email-test-ok").arg("mailbox", &token.mailbox);
        }
        Err(e) => {
            session.quit().await;
            (result.reason, result.remote) = failure(&e, &host, port);
        }
    }
    result
}

/// A failed step as a reason with advice; a server's reply is kept apart
/// as quoted text.
fn failure(e: &SmtpError, host: &str, port: u16) -> (Reason, Option<String>) {
    let at = |r: Reason| r.arg("host", host).arg("port", port);
    match e {
        SmtpError::Reply {
            stage: Stage::Auth,
            code,
            text,
        } => (
            at(Reason::new("email-test-auth-refused")),
            Some(format!("{code} {text}")),
        ),
        SmtpError::Reply { code, text, .. } => (
            at(Reason::new("email-test-refused")),
            Some(format!("{code} {text}")),
        ),
        SmtpError::Transport {
            stage: Stage::Tls,
            reason,
        } => {
            // The SMTP client reports TLS failures as text; the two that
            // need an administrator's change get their own advice.
            let unknown = format!("TLS: {}", Reason::new("tls-unknown-issuer"));
            if *reason == unknown {
                (at(Reason::new("email-test-unknown-ca")), None)
            } else if reason.starts_with("TLS: certificate subject CN")
                || reason.starts_with("TLS: the certificate's subject CN")
            {
                (at(Reason::new("email-test-cn-mismatch")), None)
            } else {
                (at(Reason::new("email-test-tls")), Some(reason.clone()))
            }
        }
        SmtpError::Transport { reason, .. } => {
            (at(Reason::new("email-test-connect")), Some(reason.clone()))
        }
        SmtpError::BadAddress { reason, .. } => {
            (at(Reason::new("email-test-refused")), Some(reason.clone()))
        }
    }
}

/// Runs the test for `a`, keeps its result, and says whether it passed.
pub async fn run_and_keep(state: &AppState, a: &Account) -> Result<bool, WebError> {
    let result = test_connection(state, a).await;
    let text = serde_json::to_string(&result).map_err(|e| WebError::Internal(e.to_string()))?;
    state.store.set_setting(&setting_key(a.id), &text).await?;
    Ok(result.ok)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TestForm {
    csrf: String,
    provider: String,
    account: String,
}

pub async fn email_test_submit(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<TestForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageEmail)?;
    ui.check_csrf(&form.csrf)?;
    // An account by id (every account's form sends it), or the default
    // delegated account of a provider.
    let a = match form.account.parse::<i64>() {
        Ok(id) => state.store.account(id).await?,
        Err(_) => {
            let provider = Provider::parse(&form.provider).ok_or(WebError::NotFound)?;
            state.store.account_for(provider).await?
        }
    };
    ui.require(Permission::manage(a.provider))?;
    let ok = run_and_keep(&state, &a).await?;
    let key = if ok {
        "email-tested"
    } else {
        "email-test-failed-notice"
    };
    Ok(super::done("/settings/send/email", key))
}

/// The last test of an account as the E-mail Settings page shows it.
pub struct TestView {
    pub ok: bool,
    pub text: String,
    pub remote: Option<String>,
    pub when: String,
    /// The settings changed since this test.
    pub stale: bool,
}

pub async fn test_view(state: &AppState, tr: &Tr, a: &Account) -> Option<TestView> {
    let t = last_test(state, a.id).await?;
    let offset = super::display_offset(state).await;
    Some(TestView {
        ok: t.ok,
        text: t.reason.render(tr),
        stale: !t.matches(a),
        remote: t.remote,
        when: super::fmt_time(t.at, offset),
    })
}
