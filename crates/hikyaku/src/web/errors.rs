//! The one mapping from errors to HTTP. Handlers return [`WebError`]; its
//! `IntoResponse` leaves a marker in the response, and [`render_errors`] turns
//! that into a localized HTML page for the Remote UI or a JSON body for the
//! API, with a request id that is also logged. User text never carries
//! internals; those go to the log only.

use axum::Json;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::i18n::{Msg, Tr};
use crate::store::{Conflict, StoreError};

#[derive(Debug, thiserror::Error, Clone)]
pub enum WebError {
    #[error("sign-in required")]
    LoginRequired,
    /// A credential that was presented and refused (an expired or revoked
    /// API token): 401 with the reason.
    #[error("{0}")]
    Unauthorized(Msg),
    #[error("forbidden")]
    Forbidden,
    /// Refused by the role matrix: the least role that may do it.
    #[error("forbidden: needs the {} role", .0.as_str())]
    NeedsRole(crate::roles::Role),
    #[error("CSRF token missing or wrong")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(Msg),
    #[error("{0}")]
    Conflict(Msg),
    #[error("{0}")]
    Unavailable(Msg),
    #[error("internal error")]
    Internal(String),
}

impl WebError {
    /// A 400 with the message `key` (no arguments).
    pub fn bad(key: &'static str) -> Self {
        WebError::BadRequest(Msg::new(key))
    }

    fn status(&self) -> StatusCode {
        match self {
            WebError::LoginRequired | WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Forbidden | WebError::NeedsRole(_) | WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The lowercase code of the JSON API.
    fn code(&self) -> &'static str {
        match self {
            WebError::LoginRequired | WebError::Unauthorized(_) => "unauthorized",
            WebError::Forbidden | WebError::NeedsRole(_) => "forbidden",
            WebError::Csrf => "csrf_failed",
            WebError::NotFound => "not_found",
            WebError::BadRequest(_) => "bad_request",
            WebError::Conflict(_) => "conflict",
            WebError::Unavailable(_) => "unavailable",
            WebError::Internal(_) => "internal",
        }
    }

    /// The message for a user, in the language of `tr`.
    pub fn user_text(&self, tr: &Tr) -> String {
        match self {
            WebError::LoginRequired => tr.t("login-title"),
            WebError::Forbidden => tr.t("forbidden"),
            WebError::NeedsRole(role) => tr.args(
                "forbidden-needs-role",
                &[("role", tr.t(&format!("role-{}", role.as_str())))],
            ),
            WebError::Csrf => tr.t("csrf-failed"),
            WebError::NotFound => tr.t("not-found"),
            WebError::BadRequest(m)
            | WebError::Conflict(m)
            | WebError::Unavailable(m)
            | WebError::Unauthorized(m) => m.render(tr),
            WebError::Internal(_) => tr.t("error-title"),
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => WebError::NotFound,
            StoreError::Conflict(Conflict::Corrupt(m)) => WebError::Internal(m),
            StoreError::Conflict(c) => WebError::Conflict(super::messages::conflict(&c)),
            StoreError::Full => WebError::Unavailable(Msg::new("err-disk-full")),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<crate::tokens::TokensError> for WebError {
    /// A temporary token error (the provider unreachable) is a 503, a store
    /// failure is the store's, anything else is the request's fault.
    fn from(e: crate::tokens::TokensError) -> Self {
        use crate::tokens::TokensError;
        match e {
            TokensError::Store(s) if !s.is_temporary() => s.into(),
            TokensError::Secrets(s) => WebError::Internal(s.to_string()),
            e if e.is_temporary() => WebError::Unavailable(super::messages::tokens(&e)),
            e => WebError::BadRequest(super::messages::tokens(&e)),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// An error response that did not come from a handler (axum's own rejections
/// of a malformed path, query or body, 404, 405) becomes the API's JSON shape.
async fn api_rejection(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let code = match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        s if s >= 500 => "internal",
        _ => "bad_request",
    };
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    (
        status,
        Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}

/// Middleware: renders a [`WebError`] left in a response.
pub async fn render_errors(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let locale = super::auth::request_locale(request.headers());
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let response = next.run(request).await;
    let Some(error) = response.extensions().get::<WebError>().cloned() else {
        if api && (response.status().is_client_error() || response.status().is_server_error()) {
            return api_rejection(response).await;
        }
        return response;
    };
    let request_id = crate::secrets::random_token(6);
    if let WebError::Internal(detail) = &error {
        tracing::error!(request_id, detail, "request failed");
    } else {
        tracing::debug!(request_id, error = %error, "request refused");
    }
    let tr = Tr::new(locale);
    if api {
        let body = serde_json::json!({
            "error": error.code(),
            "message": error.user_text(&Tr::new(super::i18n::Locale::En)),
            "request_id": request_id,
        });
        return (error.status(), Json(body)).into_response();
    }
    if matches!(error, WebError::LoginRequired) {
        let next =
            url::form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect::<String>();
        return Redirect::to(&format!("/login?next={next}")).into_response();
    }
    let page = super::pages::ErrorPage {
        tr,
        title: tr.t("error-title"),
        message: error.user_text(&tr),
        request_id,
        // A refusal by role happens to a signed-in user: keep the way on.
        signed_in: matches!(error, WebError::Forbidden | WebError::NeedsRole(_)),
    };
    let html = match askama::Template::render(&page) {
        Ok(h) => h,
        Err(_) => String::from("error"),
    };
    (
        error.status(),
        [(header::CACHE_CONTROL, "no-store")],
        Html(html),
    )
        .into_response()
}
