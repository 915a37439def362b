//! Send → Accounts → (an app-only account) → App-only credentials: the
//! client secret or certificate of a Microsoft app, or a Google service
//! account's key, with the Token Status, the credential's expiry and a
//! Check button. Key files arrive as a multipart upload; nothing secret is
//! ever shown back.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Multipart, Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Chrome;
use crate::admin::credentials::{AppInput, AppProblem, CredentialInput};
use crate::i18n::Msg;
use crate::provider::Provider;
use crate::roles::Permission;
use crate::store::accounts::Account;
use crate::tokens::apponly::{app_scope, credential_expiry_warning};
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;
use crate::web::i18n::render_all;

/// Largest upload of the form (a PFX or JSON key is a few kilobytes).
pub const UPLOAD_LIMIT: usize = 256 * 1024;

/// The message of an app-only settings problem.
pub fn problem(p: &AppProblem) -> Msg {
    match p {
        AppProblem::Credential(crate::tokens::appkeys::CredentialError::MissingField(f)) => {
            Msg::new(p.code()).arg("field", f)
        }
        _ => Msg::new(p.code()),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "app_credentials.html")]
struct AppPage {
    c: Chrome,
    errors: Vec<String>,
    id: i64,
    name: String,
    microsoft: bool,
    cloud: String,
    kind: String,
    kind_label: String,
    token_status: String,
    token_label: String,
    token_reason: Option<String>,
    token_warning: Option<String>,
    expiry_warning: Option<String>,
    expires: Option<String>,
    access_expires: Option<String>,
    mailbox: String,
    tenant: String,
    client_id: String,
    secret_set: bool,
    certificate_set: bool,
    key_set: bool,
    service_account_email: String,
    scope: String,
    token_url: String,
}

fn page_path(id: i64) -> String {
    format!("/settings/send/accounts/{id}/app")
}

fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// The account, after checking that this role may manage it (Google:
/// Administrator only) and that it is app-only.
async fn managed(state: &AppState, ui: &Ui, id: i64) -> Result<Account, WebError> {
    let a = state.store.account(id).await?;
    ui.require(Permission::manage(a.provider))?;
    if !a.credential_kind.is_app_only() {
        return Err(WebError::NotFound);
    }
    Ok(a)
}

async fn render(
    state: &AppState,
    ui: &Ui,
    a: &Account,
    notice: Option<String>,
    errors: Vec<String>,
) -> Result<Response, WebError> {
    let tr = &ui.tr;
    let now = state.clock.unix();
    let tenant = a
        .endpoint
        .as_deref()
        .and_then(|e| crate::tokens::validate_microsoft_endpoint(e).ok())
        .map(|c| c.tenant)
        .filter(|t| t != "common")
        .unwrap_or_default();
    let token_url = match a.provider {
        Provider::Microsoft => a
            .endpoint
            .as_deref()
            .map(|e| format!("{}/token", e.trim_end_matches('/')))
            .unwrap_or_default(),
        Provider::Google => String::new(),
    };
    let status = super::form_status(&errors);
    Ok((
        status,
        AppPage {
            c: Chrome::for_ui(ui, state, &page_path(a.id)).with_notice(notice),
            errors,
            id: a.id,
            name: a.name.clone(),
            microsoft: a.provider == Provider::Microsoft,
            cloud: a.cloud.as_str().to_string(),
            kind: a.credential_kind.as_str().to_string(),
            kind_label: tr.t(&format!("app-kind-{}", a.credential_kind.as_str())),
            token_status: a.token_status.as_str().to_string(),
            token_label: tr.t(&format!("token-status-{}", a.token_status)),
            token_reason: a.token_reason.as_ref().map(|r| r.render(tr)),
            token_warning: a.token_warning.as_ref().map(|r| r.render(tr)),
            expiry_warning: credential_expiry_warning(a, now).map(|r| r.render(tr)),
            expires: a.credential_expires_at.map(date),
            access_expires: a.access_expires_at.map(date),
            mailbox: a.mailbox.clone().unwrap_or_default(),
            tenant,
            client_id: a.client_id.clone().unwrap_or_default(),
            secret_set: a.has_client_secret,
            certificate_set: a.has_certificate && a.has_private_key,
            key_set: a.has_service_account_key,
            service_account_email: a.service_account_email.clone().unwrap_or_default(),
            scope: app_scope(a),
            token_url,
        },
    )
        .into_response())
}

pub async fn app_page(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
    Query(q): Query<super::DoneQuery>,
) -> Result<Response, WebError> {
    let a = managed(&state, &ui, id).await?;
    render(&state, &ui, &a, q.notice(&ui.tr), Vec::new()).await
}

/// The fields of the multipart form.
#[derive(Default)]
struct Fields {
    csrf: String,
    mailbox: String,
    tenant: String,
    client_id: String,
    kind: String,
    secret: String,
    expires: String,
    password: String,
    certificate: Vec<u8>,
    key: Vec<u8>,
}

async fn read_fields(mut form: Multipart) -> Result<Fields, WebError> {
    let mut f = Fields::default();
    let bad = |_| WebError::BadRequest(Msg::new("app-err-upload"));
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(bad)?;
        let text = || String::from_utf8_lossy(&bytes).trim().to_string();
        match name.as_str() {
            "csrf" => f.csrf = text(),
            "mailbox" => f.mailbox = text(),
            "tenant" => f.tenant = text(),
            "client_id" => f.client_id = text(),
            "kind" => f.kind = text(),
            "secret" => f.secret = text(),
            "expires" => f.expires = text(),
            "password" => f.password = String::from_utf8_lossy(&bytes).to_string(),
            "certificate" => f.certificate = bytes.to_vec(),
            "key" => f.key = bytes.to_vec(),
            _ => {}
        }
    }
    Ok(f)
}

fn some(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

pub async fn app_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
    form: Multipart,
) -> Result<Response, WebError> {
    let a = managed(&state, &ui, id).await?;
    let f = read_fields(form).await?;
    ui.check_csrf(&f.csrf)?;
    let credential = match (a.provider, f.kind.as_str()) {
        (Provider::Google, _) => CredentialInput::GoogleServiceAccount {
            key_json: Some(f.key).filter(|k| !k.is_empty()),
        },
        (Provider::Microsoft, "microsoft_certificate") => CredentialInput::MicrosoftCertificate {
            file: Some(f.certificate).filter(|c| !c.is_empty()),
            password: Some(f.password).filter(|p| !p.is_empty()),
        },
        (Provider::Microsoft, _) => CredentialInput::MicrosoftSecret {
            secret: some(f.secret),
            expires: some(f.expires),
        },
    };
    let input = AppInput {
        tenant: some(f.tenant),
        endpoint: None,
        client_id: some(f.client_id),
        mailbox: some(f.mailbox),
        credential,
    };
    match state
        .admin(ui.actor())
        .set_app_credentials(&state.live(), id, &input)
        .await
    {
        Ok(_) => Ok(super::done(&page_path(id), "saved")),
        Err(e) => {
            let errors = render_all(&ui.tr, &crate::web::refusals::form_errors(e)?);
            let a = state.store.account(id).await?;
            render(&state, &ui, &a, None, errors).await
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CheckForm {
    csrf: String,
}

/// Check: a new token now (Token Status shows the outcome).
pub async fn app_check(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
    Form(form): Form<CheckForm>,
) -> Result<Response, WebError> {
    managed(&state, &ui, id).await?;
    ui.check_csrf(&form.csrf)?;
    state
        .admin(ui.actor())
        .check_app(&state.live(), id)
        .await
        .map_err(crate::web::api::refused)?;
    Ok(axum::response::Redirect::to(&page_path(id)).into_response())
}
