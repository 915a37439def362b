//! Help in the product: the steps outside hikyaku that the settings pages
//! need (the Entra app registration, Google's OAuth client), in the page's
//! language, linked from the fields that need them.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::Chrome;
use crate::roles::Permission;
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;

#[derive(Template, WebTemplate)]
#[template(path = "help.html")]
struct HelpPage {
    c: Chrome,
    title: String,
    intro: String,
    steps: Vec<String>,
    note: String,
    /// The settings page the help is for.
    back: &'static str,
    back_label: String,
}

/// A help page from its Fluent messages `{topic}-title`, `-intro`, `-1`…`-n`, `-note`.
fn help(
    ui: &Ui,
    state: &AppState,
    path: &str,
    topic: &str,
    steps: usize,
    back: &'static str,
    back_key: &str,
) -> Response {
    let tr = ui.tr;
    HelpPage {
        c: Chrome::for_ui(ui, state, path),
        title: tr.t(&format!("{topic}-title")),
        intro: tr.t(&format!("{topic}-intro")),
        steps: (1..=steps).map(|i| tr.t(&format!("{topic}-{i}"))).collect(),
        note: tr.t(&format!("{topic}-note")),
        back,
        back_label: tr.t(back_key),
    }
    .into_response()
}

pub async fn help_entra(State(state): State<AppState>, ui: Ui) -> Result<Response, WebError> {
    ui.require(Permission::ViewStatus)?;
    Ok(help(
        &ui,
        &state,
        "/help/microsoft-entra",
        "help-entra",
        5,
        "/settings/send/oauth/microsoft",
        "menu-oauth-microsoft",
    ))
}

pub async fn help_google(State(state): State<AppState>, ui: Ui) -> Result<Response, WebError> {
    ui.require(Permission::ViewStatus)?;
    Ok(help(
        &ui,
        &state,
        "/help/google-cloud",
        "help-google",
        4,
        "/settings/send/oauth/google",
        "menu-oauth-google",
    ))
}
