//! Management → Network: the outbound HTTP(S) proxy.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Chrome;
use crate::proxy::{self, ProxyInput};
use crate::roles::Permission;
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;
use crate::web::i18n::render_all;

#[derive(Template, WebTemplate)]
#[template(path = "network.html")]
struct NetworkPage {
    c: Chrome,
    errors: Vec<String>,
    enabled: bool,
    host: String,
    port: String,
    username: String,
    password_set: bool,
    no_proxy: String,
}

async fn render_network(
    state: &AppState,
    ui: &Ui,
    notice: Option<String>,
    errors: Vec<String>,
    submitted: Option<&ProxyInput>,
) -> Result<Response, WebError> {
    let live = proxy::current(&state.proxy);
    let password_set = live.as_ref().is_some_and(|p| p.password.is_some());
    // After a refused save the form shows what was typed (never the password).
    let (host, port, username, no_proxy) = match (submitted, &live) {
        (Some(i), _) => (
            i.host.clone(),
            i.port.clone(),
            i.username.clone(),
            i.no_proxy.clone(),
        ),
        (None, Some(p)) => (
            p.host.clone(),
            p.port.to_string(),
            p.username.clone().unwrap_or_default(),
            p.no_proxy.join("\n"),
        ),
        (None, None) => Default::default(),
    };
    let status = super::form_status(&errors);
    Ok((
        status,
        NetworkPage {
            c: Chrome::for_ui(ui, state, "/settings/management/network").with_notice(notice),
            errors,
            enabled: live.is_some(),
            host,
            port,
            username,
            password_set,
            no_proxy,
        },
    )
        .into_response())
}

/// The network settings page.
const NETWORK_PAGE: &str = "/settings/management/network";

pub async fn network_page(
    State(state): State<AppState>,
    ui: Ui,
    Query(q): Query<super::DoneQuery>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageNetwork)?;
    render_network(&state, &ui, q.notice(&ui.tr), Vec::new(), None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NetworkForm {
    csrf: String,
    host: String,
    port: String,
    username: String,
    password: String,
    remove_password: Option<String>,
    no_proxy: String,
}

pub async fn network_submit(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<NetworkForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageNetwork)?;
    ui.check_csrf(&form.csrf)?;
    let input = ProxyInput {
        host: form.host,
        port: form.port,
        username: form.username,
        password: form.password,
        remove_password: form.remove_password.is_some(),
        no_proxy: form.no_proxy,
    };
    match state
        .admin(ui.actor())
        .save_proxy(&state.live(), &input)
        .await
    {
        Ok(_) => Ok(super::done(NETWORK_PAGE, "saved")),
        Err(e) => {
            let errors = render_all(&ui.tr, &crate::web::refusals::form_errors(e)?);
            render_network(&state, &ui, None, errors, Some(&input)).await
        }
    }
}
