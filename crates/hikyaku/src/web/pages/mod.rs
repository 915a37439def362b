//! Remote UI pages: one module per area, templates beside them in
//! `templates/`. This file holds the page chrome and the small pages.

mod account;
mod accounts;
pub mod app;
mod chart;
mod devices;
mod help;
mod management;
mod network;
pub mod oauth;
pub mod quote;
mod sending;
mod users;

pub use account::*;
pub use accounts::*;
pub use devices::*;
pub use help::*;
pub use management::*;
pub use network::*;
pub use oauth::*;
pub use sending::*;
pub use users::*;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, extract::ConnectInfo};
use serde::Deserialize;
use std::net::SocketAddr;

use super::AppState;
use super::auth::{self, PRE_CSRF_COOKIE, SESSION_COOKIE, Throttle, Ui};
use super::errors::WebError;
use super::i18n::{LANG_COOKIE, Locale, Tr};
use crate::i18n::Reason;
use crate::roles::Permission;
use crate::secrets::{hash_token, random_token};
use crate::store::audit::{Action, AuditEntry};
use crate::store::users::SetupTokenState;

/// What every page around its content shows: language switch, user, nav.
pub struct Chrome {
    pub tr: Tr,
    pub user: Option<String>,
    pub csrf: String,
    pub banner: Option<String>,
    pub notice: Option<String>,
    pub show_settings: bool,
    pub path: String,
}

impl Chrome {
    pub fn for_ui(ui: &Ui, state: &AppState, path: &str) -> Self {
        let role = ui.role_label();
        Self {
            tr: ui.tr,
            user: Some(
                ui.tr
                    .args("logged-in-as", &[("user", ui.name.clone()), ("role", role)]),
            ),
            csrf: ui.csrf.clone(),
            banner: state.insecure_banner.then(|| ui.tr.t("plain-http-warning")),
            notice: None,
            show_settings: ui.can(Permission::ViewSettings),
            path: path.to_string(),
        }
    }

    pub fn anonymous(tr: Tr, state: &AppState, path: &str) -> Self {
        Self {
            tr,
            user: None,
            csrf: String::new(),
            banner: state.insecure_banner.then(|| tr.t("plain-http-warning")),
            notice: None,
            show_settings: false,
            path: path.to_string(),
        }
    }

    pub fn with_notice(mut self, notice: Option<String>) -> Self {
        self.notice = notice;
        self
    }
}

/// Formats unix seconds in the display time zone.
pub fn fmt_time(unix: i64, offset: time::UtcOffset) -> String {
    let t = crate::clock::from_unix(unix).to_offset(offset);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let (h, m, _) = offset.as_hms();
    let zone = if h == 0 && m == 0 {
        "UTC".to_string()
    } else {
        format!("UTC{h:+03}:{:02}", m.abs())
    };
    format!("{} {zone}", t.format(&format).unwrap_or_default())
}

/// The display time zone setting (a fixed UTC offset such as `+09:00`).
pub async fn display_offset(state: &AppState) -> time::UtcOffset {
    let setting = state
        .store
        .setting(crate::admin::network::TIME_ZONE_SETTING)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    parse_offset(&setting).unwrap_or(time::UtcOffset::UTC)
}

/// The status of a page that shows a form again: 400 when it has errors.
pub fn form_status<T>(errors: &[T]) -> StatusCode {
    if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

pub fn parse_offset(text: &str) -> Option<time::UtcOffset> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("utc") {
        return Some(time::UtcOffset::UTC);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i8 = h.parse().ok()?;
    let m: i8 = m.parse().ok()?;
    time::UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub tr: Tr,
    pub title: String,
    pub message: String,
    pub request_id: String,
    /// Show the main navigation (a signed-in user was refused).
    pub signed_in: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    c: Chrome,
    error: Option<String>,
    pre_csrf: String,
    next: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NextQuery {
    next: String,
}

/// A local path to return to after login; anything else goes to the Portal.
/// Notices a page shows after a change (`?done=KEY`), by their Fluent key.
const NOTICES: [&str; 7] = [
    "saved",
    "test-sent",
    "password-changed",
    "email-tested",
    "email-test-failed-notice",
    "saved-test-failed",
    "deleted",
];

/// After a change: 303 to `page` with `?done=KEY`, so that reloading the page
/// does not send the form again. The page shows the notice.
pub fn done(page: &str, key: &'static str) -> Response {
    Redirect::to(&format!("{page}?done={key}")).into_response()
}

/// The `done` parameter of a page that a change redirected to.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DoneQuery {
    done: String,
}

impl DoneQuery {
    /// The notice to show; only known keys, never text from the address.
    pub fn notice(&self, tr: &Tr) -> Option<String> {
        NOTICES
            .contains(&self.done.as_str())
            .then(|| tr.t(&self.done))
    }
}

/// `next` when it names a page of this site, else `/`: an absolute path of
/// URL-safe characters that, resolved against this origin, stays on it.
/// Browsers drop tabs and newlines and read `\\` as `/`, so `/\t/evil` or
/// `/\\evil` would leave the site; control characters would also make the
/// `Location` header invalid.
pub(crate) fn safe_next(next: &str) -> String {
    const BASE: &str = "http://origin.invalid/";
    let url_safe = |c: char| c.is_ascii_alphanumeric() || "-._~/?#[]@!$&'()*+,;=%:".contains(c);
    if !next.starts_with('/') || next.starts_with("//") || !next.chars().all(url_safe) {
        return "/".to_string();
    }
    let Ok(base) = url::Url::parse(BASE) else {
        return "/".to_string();
    };
    match base.join(next) {
        Ok(u) if u.origin() == base.origin() => u[url::Position::BeforePath..].to_string(),
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod next_tests {
    use super::safe_next;

    #[test]
    fn only_paths_of_this_site_are_followed() {
        for (next, expected) in [
            ("/settings", "/settings"),
            ("/jobs?state=failed&q=a%20b", "/jobs?state=failed&q=a%20b"),
            ("/\t/evil.example", "/"),
            ("/\n/evil.example", "/"),
            ("/\r\nSet-Cookie: x=1", "/"),
            ("/\u{b}x", "/"),
            ("//evil.example", "/"),
            ("/\\evil.example", "/"),
            ("https://evil.example/", "/"),
            ("javascript:alert(1)", "/"),
            ("", "/"),
            ("/%09/evil.example", "/%09/evil.example"),
        ] {
            assert_eq!(safe_next(next), expected, "{next:?}");
        }
    }
}

fn locale_of(headers: &HeaderMap) -> Tr {
    Tr::new(auth::request_locale(headers))
}

/// Pages before sign-in carry a double-submit CSRF token in a cookie.
fn with_pre_csrf(state: &AppState, token: &str, page: impl IntoResponse) -> Response {
    let mut response = page.into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(PRE_CSRF_COOKIE, token, state.https, None),
    );
    response
}

fn check_pre_csrf(headers: &HeaderMap, sent: &str) -> Result<(), WebError> {
    match auth::cookie(headers, PRE_CSRF_COOKIE) {
        Some(expected) if !sent.is_empty() && auth::constant_time_eq(expected, sent) => Ok(()),
        _ => Err(WebError::Csrf),
    }
}

pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let tr = locale_of(&headers);
    let token = auth::cookie(&headers, PRE_CSRF_COOKIE)
        .map(str::to_string)
        .unwrap_or_else(|| random_token(24));
    let page = LoginPage {
        c: Chrome::anonymous(tr, &state, "/login"),
        error: None,
        pre_csrf: token.clone(),
        next: safe_next(&q.next),
    };
    with_pre_csrf(&state, &token, page)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    csrf: String,
    username: String,
    password: String,
    next: String,
}

pub async fn login_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    check_pre_csrf(&headers, &form.csrf)?;
    let tr = locale_of(&headers);
    let source = peer.ip().to_string();
    let now = state.clock.unix();
    let keys = Throttle::keys(&form.username, &source);
    let failed = |state: &AppState, status: StatusCode| {
        let page = LoginPage {
            c: Chrome::anonymous(tr, state, "/login"),
            error: Some(tr.t("login-failed")),
            pre_csrf: form.csrf.clone(),
            next: safe_next(&form.next),
        };
        (status, page).into_response()
    };
    // A name no user can have is refused before anything is stored or
    // keyed on it.
    if form.username.len() > crate::throttle::MAX_KEY_NAME {
        return Ok(failed(&state, StatusCode::BAD_REQUEST));
    }
    if state.throttle.wait(&keys, now).is_some() {
        // One audit entry per wait, however many attempts it refuses.
        if state.throttle.first_refusal(&keys) {
            state
                .audit(
                    &form.username,
                    &source,
                    Action::LoginThrottled,
                    &Reason::new("audit-login-throttled"),
                )
                .await;
        } else {
            tracing::debug!(user = %form.username, %source, "login refused while throttled");
        }
        return Ok(failed(&state, StatusCode::UNAUTHORIZED));
    }
    let user = state.store.user_by_name(&form.username).await?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hash.clone());
    let ok = auth::verify_password(form.password.clone(), hash).await;
    let Some(user) = user.filter(|_| ok) else {
        state.throttle.fail(&keys, now);
        state
            .audit(
                &form.username,
                &source,
                Action::LoginFailed,
                &Reason::new("audit-login-failed"),
            )
            .await;
        return Ok(failed(&state, StatusCode::UNAUTHORIZED));
    };
    state.throttle.succeed(&keys);
    // A session id the browser had before sign-in is never reused.
    if let Some(old) = auth::cookie(&headers, SESSION_COOKIE) {
        state.store.delete_session(&hash_token(old)).await?;
    }
    let id = auth::start_session(&state, user.id, &source).await?;
    state
        .audit(
            &user.name,
            &source,
            Action::Login,
            &Reason::new("audit-login").arg("role", user.role.as_str()),
        )
        .await;
    let mut response = Redirect::to(&safe_next(&form.next)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(SESSION_COOKIE, &id, state.https, None),
    );
    Ok(response)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    ui.check_csrf(&form.csrf)?;
    state.store.delete_session(&ui.session_hash).await?;
    state
        .audit(
            &ui.name,
            &ui.source,
            Action::Logout,
            &Reason::new("audit-logout"),
        )
        .await;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(SESSION_COOKIE, "", state.https, Some(0)),
    );
    Ok(response)
}

pub async fn switch_language(
    State(state): State<AppState>,
    Path(code): Path<String>,
    Query(q): Query<NextQuery>,
) -> Response {
    let locale = Locale::parse(&code).unwrap_or(Locale::En);
    let mut response = Redirect::to(&safe_next(&q.next)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(
            LANG_COOKIE,
            locale.code(),
            state.https,
            Some(60 * 60 * 24 * 365),
        ),
    );
    response
}

#[derive(Template, WebTemplate)]
#[template(path = "setup.html")]
struct SetupPage {
    c: Chrome,
    error: Option<String>,
    usable: bool,
    pre_csrf: String,
    token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SetupQuery {
    token: String,
}

async fn setup_state(state: &AppState, token: &str) -> Result<SetupTokenState, WebError> {
    if token.is_empty() {
        return Ok(SetupTokenState::Unknown);
    }
    Ok(state
        .store
        .setup_token_state(&hash_token(token), state.clock.unix())
        .await?)
}

fn setup_message(tr: Tr, s: SetupTokenState) -> Option<String> {
    match s {
        SetupTokenState::Valid => None,
        SetupTokenState::Expired => Some(tr.t("setup-expired")),
        SetupTokenState::Used => Some(tr.t("setup-used")),
        SetupTokenState::Unknown => Some(tr.t("setup-invalid")),
    }
}

pub async fn setup_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SetupQuery>,
) -> Result<Response, WebError> {
    let tr = locale_of(&headers);
    let s = setup_state(&state, &q.token).await?;
    let pre = auth::cookie(&headers, PRE_CSRF_COOKIE)
        .map(str::to_string)
        .unwrap_or_else(|| random_token(24));
    let status = if s == SetupTokenState::Valid {
        StatusCode::OK
    } else {
        StatusCode::GONE
    };
    // The language links come back to this page with its one-time token.
    let here = format!(
        "/setup?token={}",
        url::form_urlencoded::byte_serialize(q.token.as_bytes()).collect::<String>()
    );
    let page = SetupPage {
        c: Chrome::anonymous(tr, &state, &here),
        error: setup_message(tr, s),
        usable: s == SetupTokenState::Valid,
        pre_csrf: pre.clone(),
        token: q.token,
    };
    Ok(with_pre_csrf(&state, &pre, (status, page)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SetupForm {
    csrf: String,
    token: String,
    username: String,
    password: String,
    confirm: String,
}

pub async fn setup_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Result<Response, WebError> {
    check_pre_csrf(&headers, &form.csrf)?;
    let tr = locale_of(&headers);
    let s = setup_state(&state, &form.token).await?;
    let mut error = setup_message(tr, s);
    if error.is_none() && form.password != form.confirm {
        error = Some(tr.t("password-mismatch"));
    }
    let refused = |error: String| {
        let page = SetupPage {
            c: Chrome::anonymous(tr, &state, "/setup"),
            error: Some(error),
            usable: s == SetupTokenState::Valid,
            pre_csrf: form.csrf.clone(),
            token: form.token.clone(),
        };
        (StatusCode::BAD_REQUEST, page).into_response()
    };
    if let Some(error) = error {
        return Ok(refused(error));
    }
    let created = crate::admin::users::create_first_admin(
        &state.store,
        &*state.clock,
        &form.token,
        &form.username,
        form.password.clone(),
        &peer.ip().to_string(),
    )
    .await;
    match created {
        Ok(()) => {}
        Err(crate::admin::AdminError::Invalid(p)) => {
            let text = super::refusals::problems(&p)
                .first()
                .map(|m| m.render(&tr))
                .unwrap_or_default();
            return Ok(refused(text));
        }
        Err(e) => return Err(e.into()),
    }
    let page = LoginPage {
        c: Chrome::anonymous(tr, &state, "/login").with_notice(Some(tr.t("setup-done"))),
        error: None,
        pre_csrf: form.csrf,
        next: "/".into(),
    };
    Ok(page.into_response())
}

pub async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        include_str!("../../../static/style.css"),
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        include_str!("../../../static/copy.js"),
    )
        .into_response()
}

pub async fn not_found() -> WebError {
    WebError::NotFound
}

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
struct SettingsPage {
    c: Chrome,
    can_email: bool,
    can_microsoft: bool,
    can_google: bool,
    can_users: bool,
    can_network: bool,
    can_audit: bool,
}

pub async fn settings_menu(State(state): State<AppState>, ui: Ui) -> Result<Response, WebError> {
    ui.require(Permission::ViewSettings)?;
    Ok(SettingsPage {
        can_email: ui.can(Permission::ManageEmail),
        can_microsoft: ui.can(Permission::ManageMicrosoft),
        can_google: ui.can(Permission::ManageGoogle),
        can_users: ui.can(Permission::ManageUsers),
        can_network: ui.can(Permission::ManageNetwork),
        can_audit: ui.can(Permission::ReadAudit),
        c: Chrome::for_ui(&ui, &state, "/settings"),
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct AuditPage {
    c: Chrome,
    entries: Vec<AuditRow>,
}

/// An audit entry in the language of the page.
struct AuditRow {
    at: String,
    actor: String,
    source: String,
    /// The action's code, as the store and the API have it.
    action: String,
    /// Its label; the code itself for an action this version does not know.
    label: String,
    detail: String,
    /// The detail is English text shown as it is (prose of an older
    /// version, or a text without a code of its own).
    quoted: bool,
}

impl AuditRow {
    fn new(e: AuditEntry, tr: &Tr, offset: time::UtcOffset) -> Self {
        let label = Action::parse(&e.action)
            .and_then(|a| tr.try_t(&format!("audit-action-{}", a.as_str())))
            .unwrap_or_else(|| e.action.clone());
        Self {
            at: fmt_time(e.at, offset),
            detail: quote::reason_html(&e.detail, tr),
            quoted: matches!(e.detail.code.as_str(), "legacy" | "text"),
            actor: e.actor,
            source: e.source,
            action: e.action,
            label,
        }
    }
}

pub async fn audit_page(State(state): State<AppState>, ui: Ui) -> Result<Response, WebError> {
    ui.require(Permission::ReadAudit)?;
    let offset = display_offset(&state).await;
    let entries = state
        .store
        .audit_entries(500, 0)
        .await?
        .into_iter()
        .map(|e| AuditRow::new(e, &ui.tr, offset))
        .collect();
    Ok(AuditPage {
        c: Chrome::for_ui(&ui, &state, "/settings/management/audit-log"),
        entries,
    }
    .into_response())
}
