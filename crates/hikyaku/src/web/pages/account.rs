//! The Portal and the two OAuth 2.0 settings areas (the seed's screens):
//! Basic Settings, Edit Basic Settings, Server Connection Status, Token Status,
//! and for Google the Register Authorization Information page.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Chrome, display_offset, fmt_time};
use crate::admin::accounts::BasicInput;
use crate::provider::Provider;
use crate::queue::{JobState, JobStore as _};
use crate::roles::Permission;
use crate::store::accounts::Account;
use crate::tokens::apponly::credential_expiry_warning;
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;
use crate::web::i18n::{Reason, Tr, render_all};
use crate::web::refusals::form_errors;

/// One provider's line on the Portal.
pub struct PortalAccount {
    pub key: String,
    pub label: String,
    pub token_status: String,
    pub token_status_label: String,
    pub token_reason: Option<String>,
    pub connection_status: String,
    pub connection_status_label: String,
    /// An app-only account's secret or certificate expires within 30 days
    /// or has expired.
    pub expiry_warning: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "portal.html")]
struct PortalPage {
    c: Chrome,
    warnings: Vec<String>,
    accounts: Vec<PortalAccount>,
    queue: String,
    last_error: String,
    chart: super::chart::PortalChart,
    /// The set-up checklist until every step is done (settings viewers only).
    checklist: Option<Vec<super::ChecklistItem>>,
    connect: super::ConnectView,
}

/// Warnings that the Portal and the OAuth pages show: clock skew beyond 5 min.
pub fn skew_warnings(tr: &Tr, accounts: &[Account]) -> Vec<String> {
    accounts
        .iter()
        .filter(|a| a.enabled)
        .filter_map(|a| a.clock_skew_secs.filter(|s| s.abs() > 300).map(|s| (a, s)))
        .map(|(a, s)| {
            tr.args(
                "datetime-skew-warning",
                &[
                    (
                        "provider",
                        tr.t(&format!("provider-{}", a.provider.as_str())),
                    ),
                    ("secs", s.to_string()),
                ],
            )
        })
        .collect()
}

pub async fn portal(State(state): State<AppState>, ui: Ui) -> Result<Response, WebError> {
    ui.require(Permission::ViewStatus)?;
    let tr = ui.tr;
    let accounts = state.store.accounts().await?;
    let counts = state.store.job_counts().await?;
    let count = |s: JobState| {
        counts
            .iter()
            .find(|(k, _)| *k == s)
            .map(|(_, n)| *n)
            .unwrap_or(0)
            .to_string()
    };
    let queue = tr.args(
        "portal-queue-counts",
        &JobState::ALL.map(|s| (s.as_str(), count(s))),
    );
    let offset = display_offset(&state).await;
    let last_error = match state.store.last_job_error().await? {
        Some((at, reply)) => format!(
            "{} — {}",
            fmt_time(at, offset),
            super::quote::reason_html(&reply, &tr)
        ),
        None => super::quote::escape_html(&tr.t("portal-no-error")),
    };
    let mut defaults = Vec::new();
    for p in Provider::ALL {
        if let Ok(d) = state.store.account_for(p).await {
            defaults.push(d.id);
        }
    }
    let now = state.clock.unix();
    let mut warnings = skew_warnings(&tr, &accounts);
    for a in accounts.iter().filter(|a| a.enabled && !a.verify_cert) {
        warnings.push(format!(
            "{}: {}",
            tr.t(&format!("provider-{}", a.provider.as_str())),
            tr.t("verify-off-warning")
        ));
    }
    let page = PortalPage {
        warnings,
        accounts: accounts
            .iter()
            .map(|a| PortalAccount {
                // The default delegated accounts keep their old element ids.
                key: if defaults.contains(&a.id) {
                    a.provider.as_str().to_string()
                } else {
                    a.id.to_string()
                },
                label: super::sending::account_title(&tr, a),
                token_status: a.token_status.to_string(),
                token_status_label: tr.t(&format!("token-status-{}", a.token_status)),
                token_reason: a
                    .token_reason
                    .as_ref()
                    .map(|r| super::quote::reason_html(r, &tr)),
                connection_status: a.connection_status.to_string(),
                connection_status_label: tr
                    .t(&format!("connection-status-{}", a.connection_status)),
                expiry_warning: credential_expiry_warning(a, now).map(|r| r.render(&tr)),
            })
            .collect(),
        queue,
        last_error,
        chart: super::chart::portal_chart(&state.store, &tr, now, offset).await?,
        checklist: if ui.can(Permission::ViewSettings) {
            super::checklist(&state, &tr).await?
        } else {
            None
        },
        connect: super::connect_view(&state, &ui).await?,
        c: Chrome::for_ui(&ui, &state, "/"),
    };
    Ok(page.into_response())
}

fn on_off(tr: &Tr, b: bool) -> String {
    tr.t(if b { "on" } else { "off" })
}

/// The pending device code as the Microsoft page shows it.
pub struct DeviceView {
    pub verification_uri: String,
    /// The address may be a link (see `tokens::microsoft::is_browser_link`).
    pub link: bool,
    pub user_code: String,
    pub message: String,
    pub expires: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_microsoft.html")]
pub struct MicrosoftPage {
    pub c: Chrome,
    /// Where this account's screens live (the old address for the default account).
    pub base: String,
    /// The account's name, shown for every account but the default ones.
    pub account_name: Option<String>,
    pub warnings: Vec<String>,
    pub enabled: String,
    pub verify_cert: String,
    pub verify_cn: String,
    pub endpoint: String,
    pub client_id: String,
    pub connection_status: String,
    pub connection_label: String,
    pub connection_reason: Option<String>,
    pub skew: Option<String>,
    pub device: Option<DeviceView>,
    pub token_status: String,
    pub token_label: String,
    pub token_reason: Option<String>,
    pub token_warning: Option<String>,
    pub mailbox: Option<String>,
    pub access_expires: Option<String>,
    pub last_refreshed: Option<String>,
    pub can_new_code: bool,
    pub active: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_google.html")]
pub struct GooglePage {
    pub c: Chrome,
    /// Where this account's screens live (the old address for the default account).
    pub base: String,
    /// The account's name, shown for every account but the default ones.
    pub account_name: Option<String>,
    pub warnings: Vec<String>,
    pub enabled: String,
    pub enabled_bool: bool,
    pub verify_cert: String,
    pub verify_cn: String,
    pub client_id: String,
    pub has_secret: bool,
    pub connection_status: String,
    pub connection_label: String,
    pub connection_reason: Option<String>,
    pub skew: Option<String>,
    pub token_status: String,
    pub token_label: String,
    pub token_reason: Option<String>,
    pub token_warning: Option<String>,
    pub mailbox: Option<String>,
    pub access_expires: Option<String>,
    pub last_refreshed: Option<String>,
    pub active: bool,
}

/// A clock skew such as "+3 s" in the language of `tr`.
pub fn signed_seconds(tr: &Tr, secs: i64) -> String {
    tr.args("seconds-signed", &[("secs", format!("{secs:+}"))])
}

/// The stored token reason and warning of `a` in the language of `tr`.
fn token_texts(tr: &Tr, a: &Account) -> (Option<String>, Option<String>) {
    let render = |r: &Option<Reason>| r.as_ref().map(|r| r.render(tr));
    (render(&a.token_reason), render(&a.token_warning))
}

/// Status lines shared by both OAuth pages.
pub struct StatusView {
    pub warnings: Vec<String>,
    pub connection_label: String,
    pub connection_reason: Option<String>,
    pub skew: Option<String>,
    pub token_label: String,
    pub mailbox: Option<String>,
    pub access_expires: Option<String>,
    pub last_refreshed: Option<String>,
}

pub async fn status_view(state: &AppState, tr: &Tr, a: &Account) -> StatusView {
    let offset = display_offset(state).await;
    let mut warnings = skew_warnings(tr, std::slice::from_ref(a));
    if a.enabled && !a.verify_cert {
        warnings.push(tr.t("verify-off-warning"));
    }
    if let Some(w) = &a.connection_warning {
        warnings.push(w.render(tr));
    }
    // The settings changed after the last check: its result may not hold.
    if a.connection_checked_at.is_some_and(|at| at < a.updated_at) {
        warnings.push(tr.t("connection-stale"));
    }
    let reason = a.connection_reason.as_ref().map(|r| r.render(tr));
    let mailbox = a.mailbox.as_ref().map(|m| {
        if a.identity_verified == Some(false) {
            format!("{m} {}", tr.t("identity-unverified"))
        } else {
            m.clone()
        }
    });
    StatusView {
        warnings,
        connection_label: tr.t(&format!("connection-status-{}", a.connection_status)),
        connection_reason: reason,
        skew: a.clock_skew_secs.map(|s| signed_seconds(tr, s)),
        token_label: tr.t(&format!("token-status-{}", a.token_status)),
        mailbox,
        access_expires: a.access_expires_at.map(|t| fmt_time(t, offset)),
        last_refreshed: a.last_refreshed_at.map(|t| fmt_time(t, offset)),
    }
}

/// Where the manual's screens of account `a` live: the old addresses for
/// the default delegated account of its provider, else under the account.
pub async fn base_of(state: &AppState, a: &Account) -> (String, Option<String>) {
    match state.store.account_for(a.provider).await {
        Ok(d) if d.id == a.id => (
            format!("/settings/send/oauth/{}", a.provider.as_str()),
            None,
        ),
        _ => (
            format!("/settings/send/accounts/{}", a.id),
            Some(a.name.clone()),
        ),
    }
}

/// A delegated account the caller may manage, by id (an app-only account's
/// settings page is its own).
pub async fn delegated_account(state: &AppState, ui: &Ui, id: i64) -> Result<Account, WebError> {
    let a = state.store.account(id).await?;
    ui.require(Permission::manage(a.provider))?;
    if a.credential_kind.is_app_only() {
        return Err(WebError::NotFound);
    }
    Ok(a)
}

/// The settings page of account `a` (Microsoft or Google).
pub async fn account_view(
    state: &AppState,
    ui: &Ui,
    a: &Account,
    notice: Option<String>,
) -> Result<Response, WebError> {
    Ok(match a.provider {
        Provider::Microsoft => {
            let device = super::oauth::device_view(state, a).await?;
            microsoft_view(state, ui, a, device, notice)
                .await
                .into_response()
        }
        Provider::Google => google_view(state, ui, a, notice).await.into_response(),
    })
}

pub async fn microsoft_page(
    State(state): State<AppState>,
    ui: Ui,
    Query(q): Query<super::DoneQuery>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageMicrosoft)?;
    let a = state.store.account_for(Provider::Microsoft).await?;
    account_view(&state, &ui, &a, q.notice(&ui.tr)).await
}

/// An account's settings page by id.
pub async fn account_page(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
    Query(q): Query<super::DoneQuery>,
) -> Result<Response, WebError> {
    let a = delegated_account(&state, &ui, id).await?;
    account_view(&state, &ui, &a, q.notice(&ui.tr)).await
}

pub async fn microsoft_view(
    state: &AppState,
    ui: &Ui,
    a: &Account,
    device: Option<DeviceView>,
    notice: Option<String>,
) -> MicrosoftPage {
    let tr = ui.tr;
    let s = status_view(state, &tr, a).await;
    let (token_reason, token_warning) = token_texts(&tr, a);
    let (base, account_name) = base_of(state, a).await;
    MicrosoftPage {
        c: Chrome::for_ui(ui, state, &base).with_notice(notice),
        base,
        account_name,
        warnings: s.warnings,
        enabled: on_off(&tr, a.enabled),
        verify_cert: on_off(&tr, a.verify_cert),
        verify_cn: on_off(&tr, a.verify_cn),
        endpoint: a.endpoint.clone().unwrap_or_default(),
        client_id: a.client_id.clone().unwrap_or_default(),
        connection_status: a.connection_status.to_string(),
        connection_label: s.connection_label,
        connection_reason: s.connection_reason,
        skew: s.skew,
        can_new_code: a.enabled
            && a.connection_status == "successful"
            && a.token_status != "active",
        device,
        token_status: a.token_status.to_string(),
        token_label: s.token_label,
        token_reason,
        token_warning,
        mailbox: s.mailbox,
        access_expires: s.access_expires,
        last_refreshed: s.last_refreshed,
        active: a.token_status == "active",
    }
}

pub async fn google_page(
    State(state): State<AppState>,
    ui: Ui,
    Query(q): Query<super::DoneQuery>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageGoogle)?;
    let a = state.store.account_for(Provider::Google).await?;
    account_view(&state, &ui, &a, q.notice(&ui.tr)).await
}

pub async fn google_view(
    state: &AppState,
    ui: &Ui,
    a: &Account,
    notice: Option<String>,
) -> GooglePage {
    let tr = ui.tr;
    let s = status_view(state, &tr, a).await;
    let (token_reason, token_warning) = token_texts(&tr, a);
    let (base, account_name) = base_of(state, a).await;
    GooglePage {
        c: Chrome::for_ui(ui, state, &base).with_notice(notice),
        base,
        account_name,
        warnings: s.warnings,
        enabled: on_off(&tr, a.enabled),
        enabled_bool: a.enabled,
        verify_cert: on_off(&tr, a.verify_cert),
        verify_cn: on_off(&tr, a.verify_cn),
        client_id: a.client_id.clone().unwrap_or_default(),
        has_secret: a.has_client_secret,
        connection_status: a.connection_status.to_string(),
        connection_label: s.connection_label,
        connection_reason: s.connection_reason,
        skew: s.skew,
        token_status: a.token_status.to_string(),
        token_label: s.token_label,
        token_reason,
        token_warning,
        mailbox: s.mailbox,
        access_expires: s.access_expires,
        last_refreshed: s.last_refreshed,
        active: a.token_status == "active",
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_microsoft_edit.html")]
struct MicrosoftEditPage {
    c: Chrome,
    base: String,
    account_name: Option<String>,
    /// Turning OAuth off would discard tokens: ask first.
    confirm_off: bool,
    errors: Vec<String>,
    enabled: bool,
    verify_cert: bool,
    verify_cn: bool,
    endpoint: String,
    client_id: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_google_edit.html")]
struct GoogleEditPage {
    c: Chrome,
    base: String,
    account_name: Option<String>,
    /// Turning OAuth off would discard (and revoke) tokens: ask first.
    confirm_off: bool,
    errors: Vec<String>,
    enabled: bool,
    verify_cert: bool,
    verify_cn: bool,
    client_id: String,
    has_secret: bool,
}

/// The Edit Basic Settings page of account `a`, with `errors` and the
/// values as entered (`form`) after a refusal.
async fn edit_view(
    state: &AppState,
    ui: &Ui,
    a: &Account,
    errors: Vec<String>,
    form: Option<(&BasicInput, &BasicForm)>,
    confirm_off: bool,
) -> Response {
    let (base, account_name) = base_of(state, a).await;
    let c = Chrome::for_ui(ui, state, &format!("{base}/edit"));
    let status = super::form_status(&errors);
    let (enabled, verify_cert, verify_cn) = match form {
        Some((input, _)) => (input.enabled, input.verify_cert, input.verify_cn),
        None => (a.enabled, a.verify_cert, a.verify_cn),
    };
    let client_id = form.map_or_else(
        || a.client_id.clone().unwrap_or_default(),
        |(_, f)| f.client_id.clone(),
    );
    let page = match a.provider {
        Provider::Microsoft => MicrosoftEditPage {
            confirm_off,
            c,
            base,
            account_name,
            errors,
            enabled,
            verify_cert,
            verify_cn,
            endpoint: form.map_or_else(
                || {
                    a.endpoint
                        .clone()
                        .unwrap_or_else(|| a.cloud.microsoft_endpoint("common"))
                },
                |(_, f)| f.endpoint.clone(),
            ),
            client_id,
        }
        .into_response(),
        Provider::Google => GoogleEditPage {
            confirm_off,
            c,
            base,
            account_name,
            errors,
            enabled,
            verify_cert,
            verify_cn,
            client_id,
            has_secret: a.has_client_secret,
        }
        .into_response(),
    };
    (status, page).into_response()
}

pub async fn microsoft_edit_page(
    State(state): State<AppState>,
    ui: Ui,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageMicrosoft)?;
    let a = state.store.account_for(Provider::Microsoft).await?;
    Ok(edit_view(&state, &ui, &a, Vec::new(), None, false).await)
}

pub async fn google_edit_page(State(state): State<AppState>, ui: Ui) -> Result<Response, WebError> {
    ui.require(Permission::ManageGoogle)?;
    let a = state.store.account_for(Provider::Google).await?;
    Ok(edit_view(&state, &ui, &a, Vec::new(), None, false).await)
}

/// Edit Basic Settings of an account by id.
pub async fn account_edit_page(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let a = delegated_account(&state, &ui, id).await?;
    Ok(edit_view(&state, &ui, &a, Vec::new(), None, false).await)
}

/// The Edit Basic Settings form of either provider. Checkboxes are absent when off.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct BasicForm {
    pub csrf: String,
    pub enabled: Option<String>,
    pub verify_cert: Option<String>,
    pub verify_cn: Option<String>,
    pub endpoint: String,
    pub client_id: String,
    pub client_secret: String,
    /// The administrator confirmed that turning OAuth off discards the tokens.
    pub confirm_off: Option<String>,
}

/// Whether the form turns off an account that holds tokens, without the
/// confirmation that they are discarded.
fn needs_off_confirmation(a: &Account, form: &BasicForm) -> bool {
    a.enabled
        && form.enabled.is_none()
        && (a.has_refresh_token || a.has_authorization)
        && form.confirm_off.is_none()
}

/// Saves Basic Settings of account `a`: back to its page, or the form
/// again with the problems.
async fn edit_submit(
    state: &AppState,
    ui: &Ui,
    a: &Account,
    form: BasicForm,
) -> Result<Response, WebError> {
    ui.check_csrf(&form.csrf)?;
    let input = super::oauth::basic_input(&form);
    if needs_off_confirmation(a, &form) {
        return Ok(edit_view(state, ui, a, Vec::new(), Some((&input, &form)), true).await);
    }
    match state
        .admin(ui.actor())
        .save_basic(&state.live(), a.id, &input)
        .await
    {
        Ok(_) => Ok(super::done(&base_of(state, a).await.0, "saved")),
        Err(e) => {
            let errors = render_all(&ui.tr, &form_errors(e)?);
            let a = state.store.account(a.id).await?;
            Ok(edit_view(state, ui, &a, errors, Some((&input, &form)), false).await)
        }
    }
}

pub async fn microsoft_edit_submit(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<BasicForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageMicrosoft)?;
    let a = state.store.account_for(Provider::Microsoft).await?;
    edit_submit(&state, &ui, &a, form).await
}

pub async fn google_edit_submit(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<BasicForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageGoogle)?;
    let a = state.store.account_for(Provider::Google).await?;
    edit_submit(&state, &ui, &a, form).await
}

pub async fn account_edit_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
    Form(form): Form<BasicForm>,
) -> Result<Response, WebError> {
    let a = delegated_account(&state, &ui, id).await?;
    edit_submit(&state, &ui, &a, form).await
}
