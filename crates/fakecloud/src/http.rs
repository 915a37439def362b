//! The HTTPS side: one axum router for both identity providers, served over
//! TLS by axum-server, with request recording, a shifted `Date` header and
//! token-endpoint fault injection.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::ConnectionShutdown;

use crate::state::{HttpFault, RecordedRequest, Shared, parse_form};
use crate::{entra, google, graphdraft, mailapi};

/// Bodies the fake accepts: forms, and messages up to Gmail's 35 MiB.
const MAX_BODY: usize = 40 << 20;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(entra::discovery),
        )
        .route("/{tenant}/oauth2/v2.0/devicecode", post(entra::devicecode))
        .route("/{tenant}/oauth2/v2.0/token", post(entra::token))
        .route(
            "/devicelogin",
            get(entra::devicelogin_page).post(entra::devicelogin_submit),
        )
        .route("/.well-known/openid-configuration", get(google::discovery))
        .route(
            "/o/oauth2/v2/auth",
            get(google::auth_page).post(google::auth_submit),
        )
        .route("/token", post(google::token))
        .route("/revoke", post(google::revoke))
        .route(
            "/v1.0/users/{mailbox}/sendMail",
            post(mailapi::graph_send_mail),
        )
        .route("/v1.0/users/{mailbox}/messages", post(graphdraft::create))
        .route(
            "/v1.0/users/{mailbox}/messages/{id}",
            axum::routing::patch(graphdraft::update).delete(graphdraft::delete),
        )
        .route(
            "/v1.0/users/{mailbox}/messages/{id}/attachments",
            post(graphdraft::add_attachment),
        )
        .route(
            "/v1.0/users/{mailbox}/messages/{id}/attachments/createUploadSession",
            post(graphdraft::create_upload_session),
        )
        .route(
            "/v1.0/users/{mailbox}/messages/{id}/send",
            post(graphdraft::send),
        )
        .route(
            "/graph-upload/{token}",
            axum::routing::put(graphdraft::upload_chunk),
        )
        .route(
            "/upload/gmail/v1/users/{mailbox}/messages/send",
            post(mailapi::gmail_upload).put(mailapi::gmail_upload_put),
        )
        .fallback(not_found)
        // The extractors' own 2 MB default would refuse large messages.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            record_and_date,
        ))
        .with_state(shared)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<h1>404. That’s an error.</h1>"),
    )
        .into_response()
}

/// Records every request (with its form body) and stamps the `Date` header,
/// shifted by `date_offset_secs` so clients can be tested against clock skew.
async fn record_and_date(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response(),
    };
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    shared.lock().requests.push(RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        form: if is_form {
            parse_form(&bytes)
        } else {
            Vec::new()
        },
    });
    let mut resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let now = SystemTime::now();
    let offset = Duration::from_secs(shared.opts.date_offset_secs.unsigned_abs());
    let shifted = if shared.opts.date_offset_secs >= 0 {
        now.checked_add(offset)
    } else {
        now.checked_sub(offset)
    }
    .unwrap_or(now);
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(shifted)) {
        // hyper only adds its own Date when the response has none.
        resp.headers_mut().insert(header::DATE, v);
    }
    resp
}

/// Applies the configured token-endpoint fault. `Some(response)` means
/// "answer this instead"; `Down` never returns (the connection is aborted).
pub(crate) fn token_fault<'a>(
    shared: &'a Shared,
    req: &Request,
) -> impl Future<Output = Option<Response>> + Send + 'a {
    // Taken out first: `&Request` is not `Send`, so it must not live across an await.
    let conn = req.extensions().get::<ConnectionShutdown>().cloned();
    apply_fault(shared, conn)
}

async fn apply_fault(shared: &Shared, conn: Option<ConnectionShutdown>) -> Option<Response> {
    let fault = shared.lock().token_fault.clone();
    match fault {
        HttpFault::None => None,
        HttpFault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        HttpFault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("fault")
            );
            Some((status, body).into_response())
        }
        HttpFault::Down => {
            if let Some(conn) = conn {
                // Drops the connection with this request in flight.
                conn.shutdown();
                std::future::pending::<()>().await;
            }
            // Only reached when not served by axum-server (e.g. router tests).
            Some(StatusCode::SERVICE_UNAVAILABLE.into_response())
        }
    }
}

/// Splits a request into its form body (the recording middleware has
/// already buffered it).
pub(crate) async fn read_form(req: Request) -> Vec<(String, String)> {
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .unwrap_or_else(|_| Bytes::new());
    parse_form(&bytes)
}

/// Like [`read_form`], for token endpoints: client credentials sent with
/// HTTP Basic (RFC 6749 §2.3.1, oauth2's default) are added to the form as
/// `client_id`/`client_secret`, so both ways of authenticating work.
pub(crate) async fn read_token_form(req: Request) -> Vec<(String, String)> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_credentials);
    let mut form = read_form(req).await;
    if let Some((id, secret)) = basic {
        for (k, v) in [("client_id", id), ("client_secret", secret)] {
            if !form.iter().any(|(fk, _)| fk == k) {
                form.push((k.to_owned(), v));
            }
        }
    }
    form
}

fn basic_credentials(value: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    // Both parts are form-urlencoded before base64 (RFC 6749 §2.3.1).
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

/// Minimal HTML escaping for values echoed into the fake's pages.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Wraps page content in a minimal HTML document.
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n{}\n</body></html>\n",
        esc(title),
        body
    )
}
