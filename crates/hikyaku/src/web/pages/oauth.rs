//! OAuth 2.0 operations shared by the Remote UI pages and the JSON API:
//! saving Basic Settings (validated; switching off discards the tokens, as the
//! seed's note says), Refresh (the connection check), the device code, and
//! Google's Register Authorization Information.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::account::{BasicForm, DeviceView, basic_settings, google_view, microsoft_view};
use super::{Chrome, CsrfOnly, display_offset, fmt_time};
use crate::provider::Provider;
use crate::queue::JobStore as _;
use crate::roles::Permission;
use crate::store::accounts::Account;
use crate::tokens::validate_microsoft_endpoint;
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;
use crate::web::i18n::Msg;
use crate::web::messages;

/// Basic Settings as entered, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BasicInput {
    pub enabled: bool,
    pub verify_cert: bool,
    pub verify_cn: bool,
    pub endpoint: Option<String>,
    pub client_id: Option<String>,
    /// Google only; empty or absent keeps the stored secret.
    pub client_secret: Option<String>,
}

impl BasicInput {
    pub fn from_form(f: &BasicForm) -> Self {
        let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        Self {
            enabled: f.enabled.is_some(),
            verify_cert: f.verify_cert.is_some(),
            verify_cn: f.verify_cn.is_some(),
            endpoint: text(&f.endpoint),
            client_id: text(&f.client_id),
            client_secret: text(&f.client_secret),
        }
    }
}

/// Validates and saves Basic Settings. The outer error is a failure of the
/// server; the inner `Err` lists what the administrator must correct.
pub async fn save_basic(
    state: &AppState,
    provider: Provider,
    input: &BasicInput,
    actor: &str,
    source: &str,
) -> Result<Result<(), Vec<Msg>>, WebError> {
    let account = state.store.account_for(provider).await?;
    let mut errors = Vec::new();
    let mut endpoint = None;
    let mut client_id = input.client_id.clone();
    match provider {
        Provider::Microsoft => {
            match input.endpoint.as_deref() {
                Some(text) => match validate_microsoft_endpoint(text) {
                    Ok(check) => endpoint = Some(check.normalized),
                    Err(reason) => errors.push(messages::endpoint_field(&reason)),
                },
                None if input.enabled => errors.push(Msg::new("err-ms-endpoint-missing")),
                None => endpoint = account.endpoint.clone(),
            }
            if input.enabled && client_id.is_none() {
                errors.push(Msg::new("err-ms-client-id-missing"));
            }
        }
        Provider::Google => {
            endpoint = None;
            if input.enabled && client_id.is_none() {
                errors.push(Msg::new("err-google-client-id-missing"));
            }
            if input.enabled && input.client_secret.is_none() && !account.has_client_secret {
                errors.push(Msg::new("err-google-client-secret-missing"));
            }
            if let Some(id) = &client_id
                && (id.contains(char::is_whitespace) || id.len() > 256)
            {
                errors.push(Msg::new("err-client-id-spaces"));
            }
        }
    }
    if let Some(id) = &client_id {
        if id.len() > 256 || id.chars().any(|c| c.is_control()) {
            errors.push(Msg::new("err-client-id-invalid"));
        }
    } else {
        client_id = account.client_id.clone();
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let sealed = match &input.client_secret {
        Some(secret) if provider == Provider::Google => Some(
            state
                .key
                .seal_str(&format!("account:{}:client_secret", account.id), secret)
                .map_err(|e| WebError::Internal(e.to_string()))?,
        ),
        _ => None,
    };
    let changed_identity =
        account.endpoint != endpoint || account.client_id != client_id || sealed.is_some();
    // Switching off, or pointing at another tenant or client, ends the old
    // authorization: the seed requires the setup to be done again.
    let reset = (!input.enabled && account.enabled)
        || (changed_identity && account.token_status != "not_registered");
    if reset
        && account.has_refresh_token
        && let Err(e) = state.tokens.disable(account.id).await
    {
        tracing::warn!(account = account.id, error = %e, "discarding the tokens did not fully succeed");
    }
    let mut input = input.clone();
    input.endpoint = endpoint;
    input.client_id = client_id;
    state
        .store
        .save_basic_settings(
            account.id,
            &basic_settings(&input, sealed),
            reset || !input.enabled,
            state.clock.unix(),
        )
        .await?;
    let detail = format!(
        "{}: enabled={} verify_cert={} verify_cn={} endpoint={} client_id={}{}{}",
        provider.as_str(),
        input.enabled,
        input.verify_cert,
        input.verify_cn && input.verify_cert,
        input.endpoint.as_deref().unwrap_or("-"),
        input.client_id.as_deref().unwrap_or("-"),
        if input.client_secret.is_some() {
            " client_secret=(changed)"
        } else {
            ""
        },
        if reset { " (tokens discarded)" } else { "" },
    );
    state
        .audit(actor, source, "oauth_basic_settings", &detail)
        .await;
    Ok(Ok(()))
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
        verification_uri: d.verification_uri,
        user_code: d.user_code,
        message: d.message,
        expires: fmt_time(d.expires_at, offset),
    }))
}

/// The seed's Refresh button: check the connection (which, for Microsoft,
/// requests a device code once it succeeds) and show the page again.
pub async fn refresh(state: &AppState, provider: Provider) -> Result<Account, WebError> {
    let account = state.store.account_for(provider).await?;
    if account.enabled {
        state
            .tokens
            .check_connection(account.id)
            .await
            .map_err(WebError::from)?;
    }
    Ok(state.store.account(account.id).await?)
}

pub async fn microsoft_new_code(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageMicrosoft)?;
    ui.check_csrf(&form.csrf)?;
    let a = state.store.account_for(Provider::Microsoft).await?;
    if !a.enabled {
        return Err(WebError::bad("err-microsoft-off"));
    }
    state
        .tokens
        .start_device_authorization(a.id)
        .await
        .map_err(WebError::from)?;
    state
        .audit(
            &ui.name,
            &ui.source,
            "oauth_device_code",
            "microsoft: new user code requested",
        )
        .await;
    Ok(Redirect::to("/settings/send/oauth/microsoft").into_response())
}

/// Refresh Token Now (both providers).
pub async fn refresh_token(state: &AppState, provider: Provider) -> Result<(), WebError> {
    let a = state.store.account_for(provider).await?;
    state
        .tokens
        .force_refresh(a.id)
        .await
        .map_err(WebError::from)
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

/// A new authorization URL for Google, remembered for reloads of the page.
pub async fn new_google_authorization(
    state: &AppState,
    account_id: i64,
) -> Result<crate::tokens::GoogleAuthorization, WebError> {
    let auth = state
        .tokens
        .google_authorization_url(account_id)
        .await
        .map_err(WebError::from)?;
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
    if !a.enabled {
        return Err(WebError::bad("err-google-off"));
    }
    let auth = match current_google_authorization(&state, &a) {
        Some(auth) => auth,
        None => {
            let auth = new_google_authorization(&state, a.id).await?;
            state
                .audit(
                    &ui.name,
                    &ui.source,
                    "oauth_google_register",
                    "authorization URL issued",
                )
                .await;
            auth
        }
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
    let a = state.store.account_for(Provider::Google).await?;
    match state.tokens.google_submit_code(a.id, &form.code).await {
        Ok(()) => {
            state
                .audit(
                    &ui.name,
                    &ui.source,
                    "oauth_google_authorized",
                    "authorization code accepted",
                )
                .await;
            Ok(Redirect::to("/settings/send/oauth/google").into_response())
        }
        Err(e) => {
            state
                .audit(
                    &ui.name,
                    &ui.source,
                    "oauth_google_code_refused",
                    &e.to_string(),
                )
                .await;
            // A fresh URL: the old state and verifier may be spent.
            let auth = new_google_authorization(&state, a.id).await?;
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
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TestForm {
    csrf: String,
    to: String,
}

/// Send Test E-mail: queues a short message from the account's mailbox to
/// `to`, through that account. Returns the job id.
pub async fn send_test(
    state: &AppState,
    provider: Provider,
    to: &str,
    actor: &str,
    source: &str,
) -> Result<String, WebError> {
    let a = state.store.account_for(provider).await?;
    let Some(mailbox) = a.mailbox.clone().filter(|_| a.token_status == "active") else {
        return Err(WebError::bad("err-token-not-active"));
    };
    let to = crate::intake::local::check_address(to)
        .map_err(|e| WebError::BadRequest(messages::local(&e)))?;
    let from = a.sender.clone().unwrap_or(mailbox);
    let label = match provider {
        Provider::Microsoft => "OAuth 2.0 (Microsoft)",
        Provider::Google => "OAuth 2.0 (Google)",
    };
    let request = crate::intake::local::SendRequest {
        from: from.clone(),
        to: vec![to.clone()],
        subject: format!("hikyaku test e-mail ({label})"),
        body: format!(
            "This test e-mail was sent by hikyaku through {label} as {from}.\r\nIf you can read it, sending works.\r\n"
        ),
        ..Default::default()
    };
    // A short text message: no attachment to size.
    let message = crate::intake::local::build_message(&request, usize::MAX)
        .map_err(|e| WebError::BadRequest(messages::local(&e)))?;
    let job = crate::intake::store_sink::new_job(
        &format!("test:{actor}"),
        source,
        Some(a.id),
        &from,
        vec![to.clone()],
        message,
    );
    state.store.enqueue(&job, state.clock.unix()).await?;
    state.wake_delivery();
    state
        .audit(
            actor,
            source,
            "send_test",
            &format!("{}: to {to}, job {}", provider.as_str(), job.id),
        )
        .await;
    Ok(job.id)
}

/// The permission an OAuth page of `provider` needs (the seed: Google is
/// Administrator only).
pub fn provider_permission(provider: Provider) -> Permission {
    match provider {
        Provider::Microsoft => Permission::ManageMicrosoft,
        Provider::Google => Permission::ManageGoogle,
    }
}

/// The provider named in a page path, after the caller's role is checked.
fn provider_for(ui: &Ui, name: &str) -> Result<Provider, WebError> {
    let provider = Provider::parse(name).ok_or(WebError::NotFound)?;
    ui.require(provider_permission(provider))?;
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
    refresh(&state, provider).await?;
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
    let notice = refresh_token(&state, provider)
        .await
        .err()
        .map(|e| e.user_text(&ui.tr));
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
    send_test(&state, provider, &form.to, &ui.name, &ui.source).await?;
    Ok(super::done(
        &format!("/settings/send/oauth/{}", provider.as_str()),
        "test-sent",
    ))
}
