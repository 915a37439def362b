//! The JSON API of accounts: `/api/v1/accounts` (list, create) and
//! `/api/v1/accounts/{id}` (get, update, delete with `?jobs=move:ID|fail`),
//! and each account's actions (connection check, refresh, device code,
//! Google's authorization URL and code, test e-mail, Basic and E-mail
//! Settings). The provider routes (`/api/v1/oauth/{provider}`, …) are the
//! same actions on the default delegated account of that provider.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api::{
    ApiJson, BasicBody, CodeBody, account_json, authorization_code, authorization_url, basic_put,
    check, device_code, managed, oauth_body, refresh, refused, settings_saved,
};
use super::api_sending::{EmailBody, TestBody, email_json, email_save, test_send};
use super::auth::ApiCaller;
use super::errors::WebError;
use super::i18n::Msg;
use crate::admin::account_setup::{AccountInput, input_of};
use crate::roles::Permission;
use crate::store::accounts::Account;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/accounts", get(list).post(create))
        .route(
            "/api/v1/accounts/{id}",
            get(show).put(update).delete(remove),
        )
        .route("/api/v1/accounts/{id}/oauth", get(oauth_get).put(oauth_put))
        .route(
            "/api/v1/accounts/{id}/connection-check",
            post(connection_check),
        )
        .route("/api/v1/accounts/{id}/refresh", post(refresh_now))
        .route("/api/v1/accounts/{id}/device-code", post(new_device_code))
        .route("/api/v1/accounts/{id}/authorization-url", post(google_url))
        .route(
            "/api/v1/accounts/{id}/authorization-code",
            post(google_code),
        )
        .route("/api/v1/accounts/{id}/test-email", post(test_email))
        .route("/api/v1/accounts/{id}/email", get(email_get).put(email_put))
}

/// An account as the list and `GET /api/v1/accounts/{id}` give it: the
/// account-level settings beside the statuses. Secrets only as `…_set`.
fn object_json(a: &Account) -> Value {
    let mut body = account_json(a);
    let extra = json!({
        "cloud": a.cloud.as_str(),
        "credential_kind": a.credential_kind.as_str(),
        "smtp_host": a.smtp_host,
        "smtp_port": a.smtp_port,
        "smtp_scope": a.delegated_smtp_scope(),
        "graph_host": a.effective_graph_host(),
        "send_as": a.send_as,
        "rate_per_minute": a.rate_per_minute,
        "max_connections": a.max_connections,
        "is_default": a.is_default,
        "transport": a.transport.as_str(),
        "graph_large_messages": a.graph_large_messages,
        "granted_scope": a.granted_scope,
        "max_message_size": a.max_message_size(),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

async fn list(State(state): State<AppState>, caller: ApiCaller) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ManageMicrosoft)?;
    let accounts: Vec<Value> = state
        .store
        .accounts()
        .await?
        .iter()
        .filter(|a| caller.require(Permission::manage(a.provider)).is_ok())
        .map(object_json)
        .collect();
    Ok(Json(Value::Array(accounts)))
}

/// The body of `POST /api/v1/accounts` and `PUT /api/v1/accounts/{id}`.
/// A field left out keeps the stored value (PUT) or takes the default.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AccountBody {
    #[serde(deserialize_with = "super::api::present")]
    name: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    provider: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    cloud: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    credential_kind: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    mailbox: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    endpoint: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    smtp_host: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    smtp_scope: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    graph_host: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    send_as: Option<Vec<String>>,
    #[serde(deserialize_with = "super::api::present")]
    rate_per_minute: Option<u32>,
    #[serde(deserialize_with = "super::api::present")]
    max_connections: Option<u32>,
    #[serde(deserialize_with = "super::api::present")]
    enabled: Option<bool>,
    #[serde(deserialize_with = "super::api::present")]
    transport: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    graph_large_messages: Option<bool>,
}

impl AccountBody {
    /// The input over `base` (the stored account's, or empty when creating).
    fn over(self, base: AccountInput) -> AccountInput {
        let limit = |v: Option<u32>, old: String| v.map_or(old, |n| n.to_string());
        AccountInput {
            name: self.name.unwrap_or(base.name),
            provider: self.provider.unwrap_or(base.provider),
            cloud: self.cloud.unwrap_or(base.cloud),
            credential_kind: self.credential_kind.unwrap_or(base.credential_kind),
            mailbox: self.mailbox.unwrap_or(base.mailbox),
            endpoint: self.endpoint.unwrap_or(base.endpoint),
            smtp_host: self.smtp_host.unwrap_or(base.smtp_host),
            smtp_scope: self.smtp_scope.unwrap_or(base.smtp_scope),
            graph_host: self.graph_host.unwrap_or(base.graph_host),
            send_as: self.send_as.map_or(base.send_as, |l| l.join("\n")),
            rate_per_minute: limit(self.rate_per_minute, base.rate_per_minute),
            max_connections: limit(self.max_connections, base.max_connections),
            enabled: self.enabled.unwrap_or(base.enabled),
            transport: self.transport.unwrap_or(base.transport),
            graph_large_messages: self
                .graph_large_messages
                .unwrap_or(base.graph_large_messages),
        }
    }
}

async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(body): ApiJson<AccountBody>,
) -> Result<Response, WebError> {
    let input = body.over(AccountInput {
        enabled: true,
        ..Default::default()
    });
    match state.admin(caller.actor()).add_account(&input).await {
        Ok(a) => Ok((StatusCode::CREATED, Json(object_json(&a))).into_response()),
        Err(e) => settings_saved(Err(e)),
    }
}

async fn show(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, WebError> {
    let a = managed(&state, &caller, id).await?;
    Ok(Json(object_json(&a)))
}

async fn update(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<AccountBody>,
) -> Result<Response, WebError> {
    let a = managed(&state, &caller, id).await?;
    if body
        .provider
        .as_deref()
        .is_some_and(|p| p != a.provider.as_str())
        || body
            .credential_kind
            .as_deref()
            .is_some_and(|k| k != a.credential_kind.as_str())
    {
        return Err(WebError::BadRequest(Msg::new("err-api-account-fixed")));
    }
    let input = body.over(input_of(&a, a.enabled));
    let saved = state
        .admin(caller.actor())
        .update_account(&state.live(), id, &input)
        .await;
    settings_saved(saved.map(|a| object_json(&a)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeleteQuery {
    jobs: String,
}

async fn remove(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    Query(q): Query<DeleteQuery>,
) -> Result<Response, WebError> {
    managed(&state, &caller, id).await?;
    let jobs = super::pages::parse_disposal(&q.jobs)
        .map_err(|()| WebError::BadRequest(Msg::new("err-jobs-disposal")))?;
    let changed = state
        .admin(caller.actor())
        .delete_account(&state.live(), id, jobs)
        .await
        .map_err(refused)?;
    Ok(Json(json!({ "deleted": id, "jobs": changed })).into_response())
}

async fn oauth_get(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, WebError> {
    let a = managed(&state, &caller, id).await?;
    Ok(Json(oauth_body(&state, &a).await))
}

async fn oauth_put(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<BasicBody>,
) -> Result<Response, WebError> {
    managed(&state, &caller, id).await?;
    basic_put(&state, &caller, id, body).await
}

async fn connection_check(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, WebError> {
    managed(&state, &caller, id).await?;
    check(&state, &caller, id).await
}

async fn refresh_now(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, WebError> {
    managed(&state, &caller, id).await?;
    refresh(&state, &caller, id).await
}

async fn new_device_code(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, WebError> {
    managed(&state, &caller, id).await?;
    device_code(&state, &caller, id).await
}

async fn google_url(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, WebError> {
    managed(&state, &caller, id).await?;
    authorization_url(&state, &caller, id).await
}

async fn google_code(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Json<Value>, WebError> {
    managed(&state, &caller, id).await?;
    authorization_code(&state, &caller, id, body).await
}

async fn test_email(
    State(state): State<AppState>,
    caller: ApiCaller,
    headers: HeaderMap,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<TestBody>,
) -> Result<Response, WebError> {
    managed(&state, &caller, id).await?;
    test_send(&state, &caller, &headers, id, body).await
}

async fn email_get(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ManageEmail)?;
    let a = managed(&state, &caller, id).await?;
    Ok(Json(email_json(&a)))
}

async fn email_put(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<Response, WebError> {
    caller.require(Permission::ManageEmail)?;
    managed(&state, &caller, id).await?;
    email_save(&state, &caller, id, body).await
}

#[cfg(test)]
mod tests {
    use super::AccountBody;

    #[test]
    fn a_field_sent_as_null_is_refused_and_one_left_out_is_kept() {
        assert!(serde_json::from_str::<AccountBody>(r#"{"enabled": null}"#).is_err());
        assert!(serde_json::from_str::<AccountBody>(r#"{"name": null}"#).is_err());
        let body: AccountBody = serde_json::from_str(r#"{"enabled": false}"#).unwrap();
        assert_eq!(body.enabled, Some(false));
        assert_eq!(body.name, None);
    }
}
