//! The JSON API under `/api/v1`: the same operations as the pages, for
//! scripts and monitoring. Callers authenticate with a bearer API token (or a
//! session cookie plus the `X-CSRF-Token` header). Status values are
//! lowercase snake_case. `openapi.json` describes every route.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::ApiCaller;
use super::errors::WebError;
use super::i18n::{Msg, Reason};
use crate::admin::accounts::BasicInput;
use crate::admin::{AdminError, Problem};
use crate::provider::Provider;
use crate::queue::JobStore as _;
use crate::roles::Permission;
use crate::store::accounts::Account;

/// JSON body extractor whose rejection is a clear `bad_request`.
pub struct ApiJson<T>(pub T);

/// The 422 body of refused settings: the messages in English.
pub fn invalid_settings(errors: &[Msg]) -> Json<Value> {
    let errors: Vec<String> = errors.iter().map(Msg::en).collect();
    Json(json!({ "error": "invalid_settings", "message": errors.join("; "), "errors": errors }))
}

/// An operation's refusal as the API words it: where a page would point at
/// its own controls, the API names its own requests.
pub fn refused(e: AdminError) -> WebError {
    match e {
        AdminError::Invalid(list) => match list.first() {
            Some(Problem::MicrosoftOff) => WebError::bad("err-api-microsoft-off"),
            Some(Problem::GoogleOff) => WebError::bad("err-api-google-off"),
            Some(Problem::UnknownRole(role)) => {
                WebError::BadRequest(Msg::new("err-api-unknown-role").arg("role", role))
            }
            _ => AdminError::Invalid(list).into(),
        },
        e => e.into(),
    }
}

/// A settings change: the account or setting as saved, or a 422 listing
/// every problem to correct.
pub fn settings_saved(result: Result<Value, AdminError>) -> Result<Response, WebError> {
    match result {
        Ok(body) => Ok(Json(body).into_response()),
        Err(AdminError::Invalid(list)) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            invalid_settings(&super::refusals::problems(&list)),
        )
            .into_response()),
        Err(e) => Err(refused(e)),
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = match Json::<Value>::from_request(req, state).await {
            Ok(Json(v)) => v,
            Err(e) => {
                return Err(WebError::BadRequest(match e {
                    JsonRejection::MissingJsonContentType(_) => {
                        Msg::new("err-api-json-content-type")
                    }
                    other => Msg::new("err-api-json-body").arg("detail", other.body_text()),
                }));
            }
        };
        // Every body of the API is an object; serde would also read a struct
        // from an array of its fields in order, which no client means.
        if !value.is_object() {
            return Err(WebError::BadRequest(
                Msg::new("err-api-json-body").arg("detail", "the body must be a JSON object"),
            ));
        }
        serde_json::from_value(value).map(ApiJson).map_err(|e| {
            WebError::BadRequest(Msg::new("err-api-json-body").arg("detail", e.to_string()))
        })
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/status", get(status))
        .route("/api/v1/oauth/{provider}", get(oauth_get).put(oauth_put))
        .route(
            "/api/v1/oauth/{provider}/connection-check",
            post(oauth_check),
        )
        .route("/api/v1/oauth/{provider}/refresh", post(oauth_refresh))
        .route(
            "/api/v1/oauth/microsoft/device-code",
            post(microsoft_device_code),
        )
        .route(
            "/api/v1/oauth/google/authorization-url",
            post(google_authorization_url),
        )
        .route(
            "/api/v1/oauth/google/authorization-code",
            post(google_authorization_code),
        )
        .route("/api/v1/users", get(users_list).post(users_add))
        .route("/api/v1/users/{name}", delete(users_delete))
        .route("/api/v1/audit-log", get(audit_log))
        .route("/api/v1/network/proxy", get(proxy_get).put(proxy_put))
        .merge(super::api_sending::router())
        .merge(super::api_users::router())
        .merge(super::api_accounts::router())
        // App-only credentials of an account.
        .merge(super::api_app::router())
}

/// `200` while this instance can serve; `503` while its shared PostgreSQL
/// store does not answer, so that a load balancer sends elsewhere until it
/// is back (the pool reconnects by itself).
async fn health(State(state): State<AppState>) -> Response {
    if state.store.postgres().is_some() {
        let answered = tokio::time::timeout(Duration::from_secs(3), state.store.ping()).await;
        if !matches!(answered, Ok(Ok(()))) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": "database", "version": env!("CARGO_PKG_VERSION") })),
            )
                .into_response();
        }
    }
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })).into_response()
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../../openapi.json"),
    )
        .into_response()
}

/// For an optional body field the schema does not make nullable: `null`
/// is refused, as the schema says; leaving the field out is how a value is
/// kept or defaulted.
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

fn parse_provider(text: &str) -> Result<Provider, WebError> {
    Provider::parse(text).ok_or(WebError::NotFound)
}

/// A reason's English text, as the API has always given it.
fn english(r: &Option<Reason>) -> Option<String> {
    r.as_ref().map(Reason::to_string)
}

/// A reason's code, for scripts to branch on.
fn code(r: &Option<Reason>) -> Option<&str> {
    r.as_ref().map(|r| r.code.as_str())
}

pub(super) fn account_json(a: &Account) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "provider": a.provider.as_str(),
        "enabled": a.enabled,
        "verify_server_certificate": a.verify_cert,
        "verify_cn": a.verify_cn,
        "endpoint": a.endpoint,
        "client_id": a.client_id,
        "client_secret_set": a.has_client_secret,
        "connection_status": a.connection_status,
        "connection_reason": english(&a.connection_reason),
        "connection_reason_code": code(&a.connection_reason),
        "connection_warning": english(&a.connection_warning),
        "connection_warning_code": code(&a.connection_warning),
        "connection_checked_at": a.connection_checked_at,
        "clock_skew_secs": a.clock_skew_secs,
        "token_status": a.token_status,
        "token_reason": english(&a.token_reason),
        "token_reason_code": code(&a.token_reason),
        "token_warning": english(&a.token_warning),
        "token_warning_code": code(&a.token_warning),
        "mailbox": a.mailbox,
        "identity_verified": a.identity_verified,
        "access_token_expires_at": a.access_expires_at,
        "last_refreshed_at": a.last_refreshed_at,
        "authorized_at": a.authorized_at,
    })
}

async fn status(State(state): State<AppState>, caller: ApiCaller) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ViewStatus)?;
    let accounts = state.store.accounts().await?;
    let counts: serde_json::Map<String, Value> = state
        .store
        .job_counts()
        .await?
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let last_error = state
        .store
        .last_job_error()
        .await?
        .map(|(at, reply)| json!({ "at": at, "reply": reply.to_string() }));
    Ok(Json(json!({
        "accounts": accounts.iter().map(|a| json!({
            "id": a.id,
            "name": a.name,
            "provider": a.provider.as_str(),
            "enabled": a.enabled,
            "cloud": a.cloud.as_str(),
            "credential_kind": a.credential_kind.as_str(),
            "is_default": a.is_default,
            "token_status": a.token_status,
            "token_reason": english(&a.token_reason),
            "token_reason_code": code(&a.token_reason),
            "access_token_expires_at": a.access_expires_at,
            "credential_expires_at": a.credential_expires_at,
            "connection_status": a.connection_status,
            "connection_reason": english(&a.connection_reason),
            "connection_reason_code": code(&a.connection_reason),
            "connection_checked_at": a.connection_checked_at,
            "mailbox": a.mailbox,
        })).collect::<Vec<_>>(),
        "queue": counts,
        "last_error": last_error,
    })))
}

/// The default delegated account of the provider a route names, after
/// the caller's right to manage it is checked.
pub(super) async fn default_of(
    state: &AppState,
    caller: &ApiCaller,
    provider: &str,
) -> Result<i64, WebError> {
    let provider = parse_provider(provider)?;
    caller.require(Permission::manage(provider))?;
    Ok(state.store.account_for(provider).await?.id)
}

/// Account `id`, after the caller's right to manage it is checked.
pub(super) async fn managed(
    state: &AppState,
    caller: &ApiCaller,
    id: i64,
) -> Result<Account, WebError> {
    let a = state.store.account(id).await?;
    caller.require(Permission::manage(a.provider))?;
    Ok(a)
}

/// An account's Basic Settings and statuses, with a pending device code.
pub(super) async fn oauth_body(state: &AppState, a: &Account) -> Value {
    let mut body = account_json(a);
    if a.provider == Provider::Microsoft
        && a.enabled
        && a.token_status == "authorizing"
        && let Ok(Some(d)) = state.tokens.pending_device_code(a.id).await
    {
        body["device_code"] = json!({
            "verification_uri": d.verification_uri,
            "user_code": d.user_code,
            "message": d.message,
            "expires_at": d.expires_at,
        });
    }
    body
}

async fn oauth_get(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(provider): Path<String>,
) -> Result<Json<Value>, WebError> {
    let id = default_of(&state, &caller, &provider).await?;
    let a = state.store.account(id).await?;
    Ok(Json(oauth_body(&state, &a).await))
}

/// The body of `PUT /api/v1/oauth/{provider}`: [`BasicInput`], but unknown
/// keys are refused (a misspelt `enable` must not silently switch nothing on),
/// as the document's `additionalProperties: false` says.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct BasicBody {
    enabled: bool,
    verify_cert: bool,
    verify_cn: bool,
    endpoint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

impl From<BasicBody> for BasicInput {
    fn from(b: BasicBody) -> Self {
        BasicInput {
            enabled: b.enabled,
            verify_cert: b.verify_cert,
            verify_cn: b.verify_cn,
            endpoint: b.endpoint,
            client_id: b.client_id,
            client_secret: b.client_secret,
        }
    }
}

pub(super) async fn basic_put(
    state: &AppState,
    caller: &ApiCaller,
    id: i64,
    body: BasicBody,
) -> Result<Response, WebError> {
    let saved = state
        .admin(caller.actor())
        .save_basic(&state.live(), id, &BasicInput::from(body))
        .await;
    settings_saved(saved.map(|a| account_json(&a)))
}

async fn oauth_put(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(provider): Path<String>,
    ApiJson(body): ApiJson<BasicBody>,
) -> Result<Response, WebError> {
    let id = default_of(&state, &caller, &provider).await?;
    basic_put(&state, &caller, id, body).await
}

pub(super) async fn check(
    state: &AppState,
    caller: &ApiCaller,
    id: i64,
) -> Result<Json<Value>, WebError> {
    let a = state
        .admin(caller.actor())
        .check_connection(&state.live(), id)
        .await
        .map_err(refused)?;
    Ok(Json(account_json(&a)))
}

async fn oauth_check(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(provider): Path<String>,
) -> Result<Json<Value>, WebError> {
    let id = default_of(&state, &caller, &provider).await?;
    check(&state, &caller, id).await
}

pub(super) async fn refresh(
    state: &AppState,
    caller: &ApiCaller,
    id: i64,
) -> Result<Json<Value>, WebError> {
    state
        .admin(caller.actor())
        .refresh_token(&state.live(), id)
        .await
        .map_err(refused)?;
    let a = state.store.account(id).await?;
    Ok(Json(account_json(&a)))
}

async fn oauth_refresh(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(provider): Path<String>,
) -> Result<Json<Value>, WebError> {
    let id = default_of(&state, &caller, &provider).await?;
    refresh(&state, &caller, id).await
}

pub(super) async fn device_code(
    state: &AppState,
    caller: &ApiCaller,
    id: i64,
) -> Result<Json<Value>, WebError> {
    let d = state
        .admin(caller.actor())
        .new_device_code(&state.live(), id)
        .await
        .map_err(refused)?;
    Ok(Json(json!({
        "verification_uri": d.verification_uri,
        "user_code": d.user_code,
        "message": d.message,
        "expires_at": d.expires_at,
        "interval": d.interval,
    })))
}

async fn microsoft_device_code(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, WebError> {
    let id = default_of(&state, &caller, "microsoft").await?;
    device_code(&state, &caller, id).await
}

pub(super) async fn authorization_url(
    state: &AppState,
    caller: &ApiCaller,
    id: i64,
) -> Result<Json<Value>, WebError> {
    let g = super::pages::oauth::new_google_authorization(state, caller.actor(), id)
        .await
        .map_err(refused)?;
    Ok(Json(
        json!({ "url": g.url, "redirect_uri": g.redirect_uri, "loopback_listening": g.loopback_listening }),
    ))
}

async fn google_authorization_url(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, WebError> {
    let id = default_of(&state, &caller, "google").await?;
    authorization_url(&state, &caller, id).await
}

#[derive(Deserialize)]
pub(super) struct CodeBody {
    code: String,
}

pub(super) async fn authorization_code(
    state: &AppState,
    caller: &ApiCaller,
    id: i64,
    body: CodeBody,
) -> Result<Json<Value>, WebError> {
    let a = state
        .admin(caller.actor())
        .google_code(&state.live(), id, &body.code)
        .await
        .map_err(refused)?;
    Ok(Json(account_json(&a)))
}

async fn google_authorization_code(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Json<Value>, WebError> {
    let id = default_of(&state, &caller, "google").await?;
    authorization_code(&state, &caller, id, body).await
}

async fn users_list(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ManageUsers)?;
    let users = state.store.list_users().await?;
    Ok(Json(json!(
        users
            .iter()
            .map(|u| json!({ "name": u.name, "role": u.role.as_str(), "created_at": u.created_at }))
            .collect::<Vec<_>>()
    )))
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    password: String,
    role: String,
}

async fn users_add(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<Response, WebError> {
    let role = state
        .admin(caller.actor())
        .add_user(&body.name, body.password, &body.role)
        .await
        .map_err(refused)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": body.name, "role": role.as_str() })),
    )
        .into_response())
}

async fn users_delete(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<StatusCode, WebError> {
    state
        .admin(caller.actor())
        .delete_user(&name)
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn audit_log(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ReadAudit)?;
    let entries: Vec<Value> = state
        .store
        .audit_entries(500, 0)
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": e.at,
                "actor": e.actor,
                "source": e.source,
                "action": e.action,
                "detail": e.detail.to_string(),
                "detail_code": e.detail.code,
            })
        })
        .collect();
    Ok(Json(Value::Array(entries)))
}

/// The proxy as the API shows it: the password only as `password_set`.
fn proxy_json(p: Option<&crate::proxy::ProxySettings>) -> Value {
    match p {
        Some(p) => json!({
            "enabled": true,
            "host": p.host,
            "port": p.port,
            "username": p.username,
            "password_set": p.password.is_some(),
            "no_proxy": p.no_proxy,
        }),
        None => json!({
            "enabled": false,
            "host": null,
            "port": null,
            "username": null,
            "password_set": false,
            "no_proxy": [],
        }),
    }
}

async fn proxy_get(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ManageNetwork)?;
    Ok(Json(proxy_json(
        crate::proxy::current(&state.proxy).as_ref(),
    )))
}

/// The body of `PUT /api/v1/network/proxy`. An empty or missing host turns
/// the proxy off; a missing password keeps the stored one.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ProxyBody {
    host: String,
    port: Option<i64>,
    username: Option<String>,
    password: Option<String>,
    remove_password: bool,
    no_proxy: Vec<String>,
}

async fn proxy_put(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(body): ApiJson<ProxyBody>,
) -> Result<Response, WebError> {
    let input = crate::proxy::ProxyInput {
        host: body.host,
        port: body.port.map(|p| p.to_string()).unwrap_or_default(),
        username: body.username.unwrap_or_default(),
        password: body.password.unwrap_or_default(),
        remove_password: body.remove_password,
        no_proxy: body.no_proxy.join("\n"),
    };
    let saved = state
        .admin(caller.actor())
        .save_proxy(&state.live(), &input)
        .await;
    settings_saved(saved.map(|p| proxy_json(p.as_ref())))
}
