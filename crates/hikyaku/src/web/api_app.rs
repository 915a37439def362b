//! `/api/v1/accounts/{id}/app-credentials`: an app-only account's
//! credentials over the JSON API. Key material comes as text: a PEM
//! certificate with its key, or base64 of a PKCS#12 file; the service
//! account key as its JSON object, its text, or base64. Nothing secret is
//! ever returned: only whether it is set.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api::{ApiJson, refused, settings_saved};
use super::auth::ApiCaller;
use super::errors::WebError;
use super::i18n::Msg;
use crate::admin::credentials::{AppInput, CredentialInput};
use crate::store::accounts::Account;
use crate::tokens::apponly::{app_scope, credential_expiry_warning};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/accounts/{id}/app-credentials",
            put(app_put).layer(axum::extract::DefaultBodyLimit::max(
                super::pages::app::UPLOAD_LIMIT,
            )),
        )
        .route(
            "/api/v1/accounts/{id}/app-credentials/check",
            post(app_check),
        )
}

/// An app-only account as the API shows it: no secret, only whether it is set.
pub fn app_json(a: &Account, now: i64) -> Value {
    let warning = credential_expiry_warning(a, now);
    json!({
        "id": a.id,
        "name": a.name,
        "provider": a.provider.as_str(),
        "cloud": a.cloud.as_str(),
        "credential_kind": a.credential_kind.as_str(),
        "mailbox": a.mailbox,
        "endpoint": a.endpoint,
        "client_id": a.client_id,
        "scope": app_scope(a),
        "client_secret_set": a.has_client_secret,
        "certificate_set": a.has_certificate && a.has_private_key,
        "service_account_key_set": a.has_service_account_key,
        "service_account_email": a.service_account_email,
        "credential_expires_at": a.credential_expires_at,
        "credential_warning": warning.as_ref().map(ToString::to_string),
        "credential_warning_code": warning.as_ref().map(|r| r.code.clone()),
        "token_status": a.token_status,
        "token_reason": a.token_reason.as_ref().map(ToString::to_string),
        "token_reason_code": a.token_reason.as_ref().map(|r| r.code.clone()),
        "token_warning": a.token_warning.as_ref().map(ToString::to_string),
        "access_token_expires_at": a.access_expires_at,
    })
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct AppBody {
    #[serde(deserialize_with = "super::api::present")]
    mailbox: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    tenant: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    endpoint: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    client_id: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    client_secret: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    secret_expires: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    certificate: Option<String>,
    #[serde(deserialize_with = "super::api::present")]
    certificate_password: Option<String>,
    service_account_key: Option<Value>,
}

/// PEM text as it is; anything else is base64 of the file.
fn file_text(text: &str, field: &str) -> Result<Vec<u8>, WebError> {
    if text.contains("-----BEGIN ") || text.trim_start().starts_with('{') {
        return Ok(text.as_bytes().to_vec());
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| {
            WebError::BadRequest(Msg::new("app-err-api-base64").arg("field", field.to_string()))
        })
}

impl AppBody {
    fn input(self) -> Result<AppInput, WebError> {
        let credential = if let Some(key) = self.service_account_key {
            let bytes = match key {
                Value::String(s) => file_text(&s, "service_account_key")?,
                other => other.to_string().into_bytes(),
            };
            CredentialInput::GoogleServiceAccount {
                key_json: Some(bytes),
            }
        } else if let Some(cert) = self.certificate {
            CredentialInput::MicrosoftCertificate {
                file: Some(file_text(&cert, "certificate")?),
                password: self.certificate_password,
            }
        } else if self.client_secret.is_some() || self.secret_expires.is_some() {
            CredentialInput::MicrosoftSecret {
                secret: self.client_secret,
                expires: self.secret_expires,
            }
        } else {
            CredentialInput::Keep
        };
        Ok(AppInput {
            tenant: self.tenant,
            endpoint: self.endpoint,
            client_id: self.client_id,
            mailbox: self.mailbox,
            credential,
        })
    }
}

async fn app_put(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<AppBody>,
) -> Result<Response, WebError> {
    let input = body.input()?;
    let now = state.clock.unix();
    let saved = state
        .admin(caller.actor())
        .set_app_credentials(&state.live(), id, &input)
        .await;
    settings_saved(saved.map(|a| app_json(&a, now)))
}

async fn app_check(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, WebError> {
    let a = state
        .admin(caller.actor())
        .check_app(&state.live(), id)
        .await
        .map_err(refused)?;
    Ok(Json(app_json(&a, state.clock.unix())))
}

#[cfg(test)]
mod tests {
    use super::AppBody;

    #[test]
    fn an_app_credential_field_sent_as_null_is_refused() {
        for field in ["mailbox", "tenant", "client_secret", "certificate"] {
            let text = format!(r#"{{"{field}": null}}"#);
            assert!(serde_json::from_str::<AppBody>(&text).is_err(), "{field}");
        }
        let body: AppBody = serde_json::from_str(r#"{"tenant": "contoso"}"#).unwrap();
        assert_eq!(body.tenant.as_deref(), Some("contoso"));
        assert_eq!(body.mailbox, None);
    }
}
