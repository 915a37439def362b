//! The OAuth 2.0 pages' actions: Refresh (the connection check), a new
//! device code, Google's Register Authorization Information, Refresh Token
//! Now and Send Test E-mail. The changes themselves are `crate::admin`'s.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::account::{BasicForm, DeviceView, google_view, microsoft_view};
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

pub async fn microsoft_new_code(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageMicrosoft)?;
    ui.check_csrf(&form.csrf)?;
    state
        .admin(ui.actor())
        .new_device_code(&state.live())
        .await?;
    Ok(Redirect::to("/settings/send/oauth/microsoft").into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_google_register.html")]
struct RegisterPage {
    c: Chrome,
    errors: Vec<String>,
    url: String,
    loopback: bool,
}

/// How long a shown Google authorization URL is offered again on reload.
const GOOGLE_URL_REUSE_SECS: i64 = 10 * 60;

/// A new authorization URL for Google (the operation audits it),
/// remembered for reloads of the page.
pub async fn new_google_authorization(
    state: &AppState,
    actor: crate::admin::Actor,
) -> Result<crate::tokens::GoogleAuthorization, AdminError> {
    let (account_id, auth) = state
        .admin(actor)
        .google_authorization(&state.live())
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

pub async fn google_register_page(
    State(state): State<AppState>,
    ui: Ui,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageGoogle)?;
    let a = state.store.account_for(Provider::Google).await?;
    // Reloading shows the URL already issued; an account switched off gets
    // the operation's refusal.
    let auth = match current_google_authorization(&state, &a).filter(|_| a.enabled) {
        Some(auth) => auth,
        None => new_google_authorization(&state, ui.actor()).await?,
    };
    Ok(RegisterPage {
        c: Chrome::for_ui(&ui, &state, "/settings/send/oauth/google/register"),
        errors: Vec::new(),
        url: auth.url,
        loopback: auth.loopback_listening,
    }
    .into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    csrf: String,
    code: String,
}

pub async fn google_register_submit(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageGoogle)?;
    ui.check_csrf(&form.csrf)?;
    match state
        .admin(ui.actor())
        .google_code(&state.live(), &form.code)
        .await
    {
        Ok(_) => Ok(Redirect::to("/settings/send/oauth/google").into_response()),
        Err(AdminError::Tokens(e)) => {
            // A fresh URL: the old state and verifier may be spent.
            let auth = new_google_authorization(&state, ui.actor()).await?;
            Ok((
                StatusCode::BAD_REQUEST,
                RegisterPage {
                    c: Chrome::for_ui(&ui, &state, "/settings/send/oauth/google/register"),
                    errors: vec![messages::tokens(&e).render(&ui.tr)],
                    url: auth.url,
                    loopback: auth.loopback_listening,
                },
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TestForm {
    csrf: String,
    to: String,
}

/// The provider named in a page path, after the caller's role is checked.
fn provider_for(ui: &Ui, name: &str) -> Result<Provider, WebError> {
    let provider = Provider::parse(name).ok_or(WebError::NotFound)?;
    ui.require(Permission::manage(provider))?;
    Ok(provider)
}

/// The provider's settings page again, with a notice.
async fn provider_page(
    state: &AppState,
    ui: &Ui,
    provider: Provider,
    notice: Option<String>,
) -> Result<Response, WebError> {
    let a = state.store.account_for(provider).await?;
    Ok(match provider {
        Provider::Microsoft => microsoft_view(state, ui, &a, device_view(state, &a).await?, notice)
            .await
            .into_response(),
        Provider::Google => google_view(state, ui, &a, notice).await.into_response(),
    })
}

/// The seed's Refresh button.
pub async fn refresh_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    let provider = provider_for(&ui, &name)?;
    ui.check_csrf(&form.csrf)?;
    state
        .admin(ui.actor())
        .check_connection(&state.live(), provider)
        .await?;
    Ok(Redirect::to(&format!("/settings/send/oauth/{}", provider.as_str())).into_response())
}

/// Refresh Token Now.
pub async fn refresh_token_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    let provider = provider_for(&ui, &name)?;
    ui.check_csrf(&form.csrf)?;
    let notice = state
        .admin(ui.actor())
        .refresh_token(&state.live(), provider)
        .await
        .err()
        .map(|e| WebError::from(e).user_text(&ui.tr));
    provider_page(&state, &ui, provider, notice).await
}

/// Send Test E-mail.
pub async fn send_test_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Form(form): Form<TestForm>,
) -> Result<Response, WebError> {
    let provider = provider_for(&ui, &name)?;
    ui.check_csrf(&form.csrf)?;
    state
        .admin(ui.actor())
        .send_test(&state.live(), provider, &form.to)
        .await?;
    Ok(super::done(
        &format!("/settings/send/oauth/{}", provider.as_str()),
        "test-sent",
    ))
}
