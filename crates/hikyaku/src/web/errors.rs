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

use super::i18n::{Locale, Tr};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error, Clone)]
pub enum WebError {
    #[error("sign-in required")]
    LoginRequired,
    #[error("forbidden")]
    Forbidden,
    #[error("CSRF token missing or wrong")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::LoginRequired => StatusCode::UNAUTHORIZED,
            WebError::Forbidden | WebError::Csrf => StatusCode::FORBIDDEN,
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
            WebError::LoginRequired => "unauthorized",
            WebError::Forbidden => "forbidden",
            WebError::Csrf => "csrf_failed",
            WebError::NotFound => "not_found",
            WebError::BadRequest(_) => "bad_request",
            WebError::Conflict(_) => "conflict",
            WebError::Unavailable(_) => "unavailable",
            WebError::Internal(_) => "internal",
        }
    }

    fn user_text(&self, tr: &Tr) -> String {
        match self {
            WebError::LoginRequired => tr.t("login-title"),
            WebError::Forbidden => tr.t("forbidden"),
            WebError::Csrf => tr.t("csrf-failed"),
            WebError::NotFound => tr.t("not-found"),
            WebError::BadRequest(m) | WebError::Conflict(m) | WebError::Unavailable(m) => m.clone(),
            WebError::Internal(_) => tr.t("error-title"),
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => WebError::NotFound,
            StoreError::Conflict(m) => WebError::Conflict(m),
            StoreError::Full => WebError::Unavailable(e.to_string()),
            other => WebError::Internal(other.to_string()),
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
            "message": error.user_text(&Tr::new(Locale::En)),
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
