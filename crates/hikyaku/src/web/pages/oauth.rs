//! The OAuth 2.0 pages' actions: Refresh (the connection check), a new
//! device code, Google's Register Authorization Information, Refresh Token
//! Now and Send Test E-mail. The changes themselves are `crate::admin`'s.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::account::{BasicForm, DeviceView, account_view, base_of, delegated_account};
use super::{Chrome, CsrfOnly, display_offset, fmt_time};
use crate::admin::AdminError;
use crate::admin::accounts::BasicInput;
use crate::provider::Provider;
use crate::roles::Permission;
use crate::store::accounts::Account;
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;
use crate::web::messages;

/// Basic Settings as the Edit form sends them: checkboxes are absent when
/// off, empty fields are not given.
pub fn basic_input(f: &BasicForm) -> BasicInput {
    let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    BasicInput {
        enabled: f.enabled.is_some(),
        verify_cert: f.verify_cert.is_some(),
        verify_cn: f.verify_cn.is_some(),
        endpoint: text(&f.endpoint),
        client_id: text(&f.client_id),
        client_secret: text(&f.client_secret),
    }
}

/// The pending device code of a Microsoft account, for display.
pub async fn device_view(state: &AppState, a: &Account) -> Result<Option<DeviceView>, WebError> {
    // A new code may be pending beside an Active token (re-authorization).
    if !a.enabled || !a.has_authorization {
        return Ok(None);
    }
    let offset = display_offset(state).await;
    let code = state
        .tokens
        .pending_device_code(a.id)
        .await
        .map_err(WebError::from)?;
    Ok(code.map(|d| DeviceView {
        link: d.is_browser_link(),
        verification_uri: d.verification_uri,
        user_code: d.user_code,
        message: d.message,
        expires: fmt_time(d.expires_at, offset),
    }))
}

/// A new device code for account `a`, then its page.
async fn new_code(
    state: &AppState,
    ui: &Ui,
    a: &Account,
    csrf: &str,
) -> Result<Response, WebError> {
    ui.check_csrf(csrf)?;
    state
        .admin(ui.actor())
        .new_device_code(&state.live(), a.id)
        .await?;
    Ok(Redirect::to(&base_of(state, a).await.0).into_response())
}

pub async fn microsoft_new_code(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageMicrosoft)?;
    let a = state.store.account_for(Provider::Microsoft).await?;
    new_code(&state, &ui, &a, &form.csrf).await
}

pub async fn account_new_code(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    let a = delegated_account(&state, &ui, id).await?;
    new_code(&state, &ui, &a, &form.csrf).await
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_google_register.html")]
struct RegisterPage {
    c: Chrome,
    base: String,
    account_name: Option<String>,
    errors: Vec<String>,
    url: String,
    loopback: bool,
}

/// How long a shown Google authorization URL is offered again on reload.
const GOOGLE_URL_REUSE_SECS: i64 = 10 * 60;

/// A new authorization URL for Google account `id` (the operation audits
/// it), remembered for reloads of the page.
pub async fn new_google_authorization(
    state: &AppState,
    actor: crate::admin::Actor,
    id: i64,
) -> Result<crate::tokens::GoogleAuthorization, AdminError> {
    let (account_id, auth) = state
        .admin(actor)
        .google_authorization(&state.live(), id)
        .await?;
    if let Ok(mut cache) = state.google_pending.lock() {
        cache.insert(account_id, (auth.clone(), state.clock.unix()));
    }
    Ok(auth)
}

/// The URL shown last, while that authorization is still pending and recent.
fn current_google_authorization(
    state: &AppState,
    a: &Account,
) -> Option<crate::tokens::GoogleAuthorization> {
    if !a.has_authorization {
        return None;
    }
    let cache = state.google_pending.lock().ok()?;
    let (auth, at) = cache.get(&a.id)?;
    (state.clock.unix() - at < GOOGLE_URL_REUSE_SECS).then(|| auth.clone())
}

async fn register_view(
    state: &AppState,
    ui: &Ui,
    a: &Account,
    errors: Vec<String>,
    auth: crate::tokens::GoogleAuthorization,
) -> Response {
    let (base, account_name) = base_of(state, a).await;
    let status = super::form_status(&errors);
    (
        status,
        RegisterPage {
            c: Chrome::for_ui(ui, state, &format!("{base}/register")),
            base,
            account_name,
            errors,
            url: auth.url,
            loopback: auth.loopback_listening,
        },
    )
        .into_response()
}

async fn register_page(state: &AppState, ui: &Ui, a: &Account) -> Result<Response, WebError> {
    // Reloading shows the URL already issued; an account switched off gets
    // the operation's refusal.
    let auth = match current_google_authorization(state, a).filter(|_| a.enabled) {
        Some(auth) => auth,
        None => new_google_authorization(state, ui.actor(), a.id).await?,
    };
    Ok(register_view(state, ui, a, Vec::new(), auth).await)
}

pub async fn google_register_page(
    State(state): State<AppState>,
    ui: Ui,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageGoogle)?;
    let a = state.store.account_for(Provider::Google).await?;
    register_page(&state, &ui, &a).await
}

pub async fn account_register_page(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let a = delegated_account(&state, &ui, id).await?;
    register_page(&state, &ui, &a).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    csrf: String,
    code: String,
}

async fn register_submit(
    state: &AppState,
    ui: &Ui,
    a: &Account,
    form: CodeForm,
) -> Result<Response, WebError> {
    ui.check_csrf(&form.csrf)?;
    match state
        .admin(ui.actor())
        .google_code(&state.live(), a.id, &form.code)
        .await
    {
        Ok(_) => Ok(Redirect::to(&base_of(state, a).await.0).into_response()),
        Err(AdminError::Tokens(e)) => {
            // A fresh URL: the old state and verifier may be spent.
            let auth = new_google_authorization(state, ui.actor(), a.id).await?;
            let errors = vec![messages::tokens(&e).render(&ui.tr)];
            Ok(register_view(state, ui, a, errors, auth).await)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn google_register_submit(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageGoogle)?;
    let a = state.store.account_for(Provider::Google).await?;
    register_submit(&state, &ui, &a, form).await
}

pub async fn account_register_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    let a = delegated_account(&state, &ui, id).await?;
    register_submit(&state, &ui, &a, form).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TestForm {
    csrf: String,
    to: String,
}

/// The account named in a page path (a provider: its default delegated
/// account; a number: that account), after the caller's role is checked.
async fn account_in_path(state: &AppState, ui: &Ui, name: &str) -> Result<Account, WebError> {
    if let Ok(id) = name.parse::<i64>() {
        return delegated_account(state, ui, id).await;
    }
    let provider = Provider::parse(name).ok_or(WebError::NotFound)?;
    ui.require(Permission::manage(provider))?;
    Ok(state.store.account_for(provider).await?)
}

/// The seed's Refresh button.
pub async fn refresh_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    let a = account_in_path(&state, &ui, &name).await?;
    ui.check_csrf(&form.csrf)?;
    state
        .admin(ui.actor())
        .check_connection(&state.live(), a.id)
        .await?;
    Ok(Redirect::to(&base_of(&state, &a).await.0).into_response())
}

/// Refresh Token Now.
pub async fn refresh_token_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    let a = account_in_path(&state, &ui, &name).await?;
    ui.check_csrf(&form.csrf)?;
    let notice = state
        .admin(ui.actor())
        .refresh_token(&state.live(), a.id)
        .await
        .err()
        .map(|e| WebError::from(e).user_text(&ui.tr));
    let a = state.store.account(a.id).await?;
    account_view(&state, &ui, &a, notice).await
}

/// Send Test E-mail.
pub async fn send_test_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Form(form): Form<TestForm>,
) -> Result<Response, WebError> {
    let a = account_in_path(&state, &ui, &name).await?;
    ui.check_csrf(&form.csrf)?;
    state
        .admin(ui.actor())
        .send_test(&state.live(), a.id, &form.to, &ui.tr)
        .await?;
    Ok(super::done(&base_of(&state, &a).await.0, "test-sent"))
}
