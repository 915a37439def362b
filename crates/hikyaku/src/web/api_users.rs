//! The JSON API's users and API tokens: roles, passwords, and tokens that
//! can be listed, made with an expiry, and revoked. The same operations as
//! Management → Users (`crate::admin::users`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api::{ApiJson, refused};
use super::auth::ApiCaller;
use super::errors::WebError;
use crate::admin::users::TokenRequest;
use crate::store::users::ApiToken;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users/{name}/role", put(user_role))
        .route("/api/v1/users/{name}/password", put(user_password))
        .route("/api/v1/me/password", put(own_password))
        .route("/api/v1/api-tokens", get(tokens_list).post(tokens_add))
        .route("/api/v1/api-tokens/{name}", delete(tokens_revoke))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: String,
}

async fn user_role(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RoleBody>,
) -> Result<Json<Value>, WebError> {
    let role = state
        .admin(caller.actor())
        .set_user_role(&name, &body.role)
        .await
        .map_err(refused)?;
    Ok(Json(json!({ "name": name, "role": role.as_str() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

async fn user_password(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, WebError> {
    state
        .admin(caller.actor())
        .reset_password(&name, body.password)
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnPasswordBody {
    current_password: String,
    new_password: String,
}

/// The caller's own password (the signed-in user, or the user the token
/// belongs to); the current password is required.
async fn own_password(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(body): ApiJson<OwnPasswordBody>,
) -> Result<StatusCode, WebError> {
    // A token of no user has no password to change.
    let user = caller.user.clone().ok_or(WebError::Forbidden)?;
    state
        .admin(caller.actor())
        .change_own_password(
            &user,
            body.current_password,
            body.new_password,
            caller.session_hash.as_deref(),
        )
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

fn token_json(t: &ApiToken, now: i64) -> Value {
    json!({
        "name": t.name,
        "user": t.user,
        "role": t.effective_role().as_str(),
        "token_role": t.role.as_str(),
        "state": t.state(now).as_str(),
        "created_at": t.created_at,
        "expires_at": t.expires_at,
        "last_used_at": t.last_used_at,
        "revoked_at": t.revoked_at,
    })
}

async fn tokens_list(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, WebError> {
    let tokens = state
        .admin(caller.actor())
        .api_tokens()
        .await
        .map_err(refused)?;
    let now = state.clock.unix();
    Ok(Json(Value::Array(
        tokens.iter().map(|t| token_json(t, now)).collect(),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    name: String,
    #[serde(default, deserialize_with = "super::api::present")]
    role: Option<String>,
    #[serde(default, deserialize_with = "super::api::present")]
    expires_in: Option<String>,
}

/// Makes a token that belongs to the caller's user; its value is in this
/// answer only.
async fn tokens_add(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(body): ApiJson<NewTokenBody>,
) -> Result<Response, WebError> {
    let made = state
        .admin(caller.actor())
        .add_api_token(&TokenRequest {
            name: body.name,
            role: body.role,
            user: caller.user.clone(),
            expires_in: body.expires_in,
        })
        .await
        .map_err(refused)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": made.name,
            "user": made.user,
            "role": made.role.as_str(),
            "expires_at": made.expires_at,
            "token": made.token,
        })),
    )
        .into_response())
}

async fn tokens_revoke(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<StatusCode, WebError> {
    state
        .admin(caller.actor())
        .revoke_api_token(&name)
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::NewTokenBody;

    #[test]
    fn a_token_role_sent_as_null_is_refused_and_one_left_out_is_the_default() {
        assert!(serde_json::from_str::<NewTokenBody>(r#"{"name": "a", "role": null}"#).is_err());
        assert!(
            serde_json::from_str::<NewTokenBody>(r#"{"name": "a", "expires_in": null}"#).is_err()
        );
        let body: NewTokenBody = serde_json::from_str(r#"{"name": "a"}"#).unwrap();
        assert_eq!((body.role, body.expires_in), (None, None));
    }
}
