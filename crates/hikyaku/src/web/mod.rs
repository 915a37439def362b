//! The Remote UI (server-rendered HTML in Japanese and English) and the JSON
//! API beside it. Both call the same operations (`crate::admin`) for every
//! change; every route checks the caller's role on the server.

pub mod api;
mod api_accounts;
mod api_app;
mod api_sending;
mod api_users;
pub mod auth;
pub mod errors;
pub mod i18n;
mod jobs_csv;
pub mod messages;
pub mod pages;
mod prometheus;
mod refusals;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::secrets::MasterKey;
use crate::store::Store;

/// Everything a request handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub config: Config,
    pub key: Arc<MasterKey>,
    pub clock: SharedClock,
    pub throttle: auth::Throttle,
    /// Whether the Remote UI is served over HTTPS (cookies get `Secure`).
    pub https: bool,
    /// Plain HTTP on a non-loopback address: show the warning banner.
    pub insecure_banner: bool,
    pub tokens: crate::tokens::TokenService,
    /// The administrator's extra CA certificates, shared with every client.
    pub extra_cas: crate::tls::ExtraCas,
    /// The extra CAs that also anchor the Google account.
    pub google_cas: crate::tls::ExtraCas,
    /// The outbound proxy (Management → Network), shared with the token service.
    pub proxy: crate::proxy::SharedProxy,
    /// Wakes the delivery workers (after Retry now or a new message).
    pub wake: std::sync::Arc<dyn Fn() + Send + Sync>,
    /// The Google authorization URL last shown per account, so that reloading
    /// the Register page does not invalidate the URL the administrator opened.
    pub google_pending:
        std::sync::Mutex<std::collections::HashMap<i64, (crate::tokens::GoogleAuthorization, i64)>>,
    /// A real Argon2id hash to verify against for unknown users.
    pub dummy_hash: String,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    pub fn idle_secs(&self) -> i64 {
        self.config.web.session_idle_secs()
    }

    /// The operations layer, acting for `actor`.
    pub fn admin(&self, actor: crate::admin::Actor) -> crate::admin::Admin<'_> {
        crate::admin::Admin::new(&self.store, &*self.clock, actor)
    }

    /// The running server's parts that some operations change.
    pub fn live(&self) -> crate::admin::Live<'_> {
        crate::admin::Live {
            key: &self.key,
            tokens: &self.tokens,
            cas: &self.extra_cas,
            google_cas: &self.google_cas,
            proxy: &self.proxy,
            wake: &*self.wake,
        }
    }

    /// Appends an audit entry of something that is no administrator's
    /// change (sign-in, sign-out).
    pub async fn audit(
        &self,
        actor: &str,
        source: &str,
        action: crate::store::audit::Action,
        detail: &crate::i18n::Reason,
    ) {
        crate::admin::record(&self.store, &*self.clock, actor, source, action, detail).await;
    }
}

/// Largest body of the sign-in and setup forms, in bytes.
const ANONYMOUS_FORM_LIMIT: usize = 8 * 1024;

/// The whole router: pages, API, static files, and the security headers.
pub fn router(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(pages::portal))
        // Forms anyone may send before signing in are small: a larger body
        // is refused (413) before it is read, so that it cannot fill memory.
        .route(
            "/login",
            get(pages::login_page)
                .post(pages::login_submit)
                .layer(axum::extract::DefaultBodyLimit::max(ANONYMOUS_FORM_LIMIT)),
        )
        .route("/logout", post(pages::logout))
        .route(
            "/setup",
            get(pages::setup_page)
                .post(pages::setup_submit)
                .layer(axum::extract::DefaultBodyLimit::max(ANONYMOUS_FORM_LIMIT)),
        )
        .route("/lang/{code}", get(pages::switch_language))
        .route("/settings", get(pages::settings_menu))
        .route(
            "/settings/management/users",
            get(pages::users_page).post(pages::users_add),
        )
        .route(
            "/settings/management/users/delete",
            post(pages::users_delete),
        )
        .route("/settings/management/users/role", post(pages::users_role))
        .route(
            "/settings/management/users/password",
            post(pages::users_reset_password),
        )
        .route("/settings/management/api-tokens", post(pages::tokens_add))
        .route(
            "/settings/management/api-tokens/revoke",
            post(pages::tokens_revoke),
        )
        .route(
            "/account/password",
            get(pages::own_password_page).post(pages::own_password_submit),
        )
        .route("/settings/management/audit-log", get(pages::audit_page))
        .route(
            "/settings/management/datetime",
            get(pages::datetime_page).post(pages::datetime_submit),
        )
        .route(
            "/settings/management/ca-certificates",
            get(pages::ca_page)
                .post(pages::ca_add)
                .layer(axum::extract::DefaultBodyLimit::max(pages::CA_UPLOAD_LIMIT)),
        )
        .route(
            "/settings/management/ca-certificates/delete",
            post(pages::ca_delete),
        )
        .route(
            "/settings/management/network",
            get(pages::network_page).post(pages::network_submit),
        )
        .route(
            "/settings/send/email",
            get(pages::email_page).post(pages::email_submit),
        )
        .route("/settings/send/submitters", post(pages::submitter_add))
        .route(
            "/settings/send/submitters/delete",
            post(pages::submitter_delete),
        )
        .route("/settings/send/allowlist", post(pages::allowlist_add))
        .route(
            "/settings/send/allowlist/delete",
            post(pages::allowlist_delete),
        )
        .route("/settings/send/oauth/microsoft", get(pages::microsoft_page))
        .route(
            "/settings/send/oauth/microsoft/edit",
            get(pages::microsoft_edit_page).post(pages::microsoft_edit_submit),
        )
        .route(
            "/settings/send/oauth/microsoft/new-code",
            post(pages::microsoft_new_code),
        )
        .route("/settings/send/oauth/google", get(pages::google_page))
        .route(
            "/settings/send/oauth/google/edit",
            get(pages::google_edit_page).post(pages::google_edit_submit),
        )
        .route(
            "/settings/send/oauth/google/register",
            get(pages::google_register_page).post(pages::google_register_submit),
        )
        .route(
            "/settings/send/oauth/{provider}/refresh",
            post(pages::refresh_submit),
        )
        .route(
            "/settings/send/oauth/{provider}/refresh-token",
            post(pages::refresh_token_submit),
        )
        .route(
            "/settings/send/oauth/{provider}/test",
            post(pages::send_test_submit),
        )
        // Accounts (Send → Accounts) and each delegated account's screens
        // of the printer manual under its id.
        .route(
            "/settings/send/accounts",
            get(pages::accounts_page).post(pages::account_add),
        )
        .route("/settings/send/accounts/new", get(pages::account_new_page))
        .route("/settings/send/accounts/{id}", get(pages::account_page))
        .route(
            "/settings/send/accounts/{id}/settings",
            get(pages::account_settings_page).post(pages::account_settings_submit),
        )
        .route(
            "/settings/send/accounts/{id}/enable",
            post(pages::account_enable_submit),
        )
        .route(
            "/settings/send/accounts/{id}/delete",
            get(pages::account_delete_page).post(pages::account_delete_submit),
        )
        .route(
            "/settings/send/accounts/{id}/edit",
            get(pages::account_edit_page).post(pages::account_edit_submit),
        )
        .route(
            "/settings/send/accounts/{id}/new-code",
            post(pages::account_new_code),
        )
        .route(
            "/settings/send/accounts/{id}/register",
            get(pages::account_register_page).post(pages::account_register_submit),
        )
        .route(
            "/settings/send/accounts/{id}/refresh",
            post(pages::refresh_submit),
        )
        .route(
            "/settings/send/accounts/{id}/refresh-token",
            post(pages::refresh_token_submit),
        )
        .route(
            "/settings/send/accounts/{id}/test",
            post(pages::send_test_submit),
        )
        // App-only credentials of an account (secret, certificate, service account key).
        .route(
            "/settings/send/accounts/{id}/app",
            get(pages::app::app_page)
                .post(pages::app::app_submit)
                .layer(axum::extract::DefaultBodyLimit::max(
                    pages::app::UPLOAD_LIMIT,
                )),
        )
        .route(
            "/settings/send/accounts/{id}/app/check",
            post(pages::app::app_check),
        )
        .route("/jobs", get(pages::jobs_page))
        .route("/jobs/retry", post(pages::job_retry))
        .route("/jobs/delete", post(pages::job_delete))
        .route("/static/style.css", get(pages::stylesheet))
        // Operations: Prometheus metrics and the job history as CSV.
        .route("/metrics", get(prometheus::metrics))
        .route("/jobs.csv", get(pages::jobs_csv))
        // The first-time administrator: devices, test connection, help.
        .route("/devices", get(pages::devices_page))
        .route("/settings/send/email/test", post(pages::email_test_submit))
        .route("/help/microsoft-entra", get(pages::help_entra))
        .route("/help/google-cloud", get(pages::help_google))
        .route("/static/copy.js", get(pages::script));
    pages
        .merge(api::router())
        .fallback(pages::not_found)
        .layer(middleware::from_fn(errors::render_errors))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}
