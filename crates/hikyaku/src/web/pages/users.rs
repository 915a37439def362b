//! Management → Users (Administrator): users, their roles and passwords,
//! and API tokens; and the page where every user changes their own
//! password. Each change is one operation of `crate::admin::users`.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Chrome, DoneQuery, display_offset, done, fmt_time};
use crate::admin::AdminError;
use crate::admin::users::TokenRequest;
use crate::roles::{Permission, Role};
use crate::store::users::TokenState;
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;
use crate::web::refusals::form_errors;

const USERS_PAGE: &str = "/settings/management/users";
const PASSWORD_PAGE: &str = "/account/password";

/// A user as the page lists it.
struct UserRow {
    name: String,
    role: String,
    role_code: &'static str,
    created: String,
}

/// An API token as the page lists it (never its value).
struct TokenRow {
    name: String,
    user: String,
    /// What it may do now (its role narrowed to its user's).
    role: String,
    /// Set when the user's role narrows the token's own role.
    narrowed_from: Option<String>,
    created: String,
    expires: String,
    last_used: String,
    state: String,
    state_code: &'static str,
}

/// A token just made: its value is shown this once.
struct Created {
    name: String,
    token: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "users.html")]
struct UsersPage {
    c: Chrome,
    error: Option<String>,
    users: Vec<UserRow>,
    tokens: Vec<TokenRow>,
    created: Option<Created>,
    roles: Vec<(&'static str, String)>,
}

async fn render_users(
    state: &AppState,
    ui: &Ui,
    notice: Option<String>,
    error: Option<String>,
    created: Option<Created>,
) -> Result<Response, WebError> {
    let offset = display_offset(state).await;
    let tr = ui.tr;
    let role_label = |r: Role| tr.t(&format!("role-{}", r.as_str()));
    let users = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| UserRow {
            role: role_label(u.role),
            role_code: u.role.as_str(),
            created: fmt_time(u.created_at, offset),
            name: u.name,
        })
        .collect();
    let now = state.clock.unix();
    let tokens = state
        .admin(ui.actor())
        .api_tokens()
        .await?
        .into_iter()
        .map(|t| {
            let effective = t.effective_role();
            let token_state = t.state(now);
            TokenRow {
                user: t.user.clone().unwrap_or_else(|| "—".into()),
                role: role_label(effective),
                narrowed_from: (effective != t.role).then(|| role_label(t.role)),
                created: fmt_time(t.created_at, offset),
                expires: t
                    .expires_at
                    .map_or_else(|| tr.t("token-never"), |at| fmt_time(at, offset)),
                last_used: t
                    .last_used_at
                    .map_or_else(|| tr.t("token-never-used"), |at| fmt_time(at, offset)),
                state: tr.t(&format!("token-state-{}", token_state.as_str())),
                state_code: token_state.as_str(),
                name: t.name,
            }
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        UsersPage {
            c: Chrome::for_ui(ui, state, USERS_PAGE).with_notice(notice),
            error,
            users,
            tokens,
            created,
            roles: Role::ALL
                .into_iter()
                .map(|r| (r.as_str(), role_label(r)))
                .collect(),
        },
    )
        .into_response())
}

pub async fn users_page(
    State(state): State<AppState>,
    ui: Ui,
    Query(q): Query<DoneQuery>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageUsers)?;
    render_users(&state, &ui, q.notice(&ui.tr), None, None).await
}

/// The users page after a change: its notice, or the refusal beside the form.
async fn users_done(
    state: &AppState,
    ui: &Ui,
    result: Result<(), AdminError>,
) -> Result<Response, WebError> {
    match result {
        Ok(()) => Ok(done(USERS_PAGE, "saved")),
        Err(e) => {
            let text = form_errors(e)?.first().map(|m| m.render(&ui.tr));
            render_users(state, ui, None, text, None).await
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UserForm {
    csrf: String,
    username: String,
    password: String,
    role: String,
}

pub async fn users_add(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<UserForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageUsers)?;
    ui.check_csrf(&form.csrf)?;
    let added = state
        .admin(ui.actor())
        .add_user(&form.username, form.password, &form.role)
        .await;
    users_done(&state, &ui, added.map(|_| ())).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UserDeleteForm {
    csrf: String,
    username: String,
}

pub async fn users_delete(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<UserDeleteForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageUsers)?;
    ui.check_csrf(&form.csrf)?;
    let deleted = state.admin(ui.actor()).delete_user(&form.username).await;
    users_done(&state, &ui, deleted).await
}

pub async fn users_role(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<UserForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageUsers)?;
    ui.check_csrf(&form.csrf)?;
    let changed = state
        .admin(ui.actor())
        .set_user_role(&form.username, &form.role)
        .await;
    users_done(&state, &ui, changed.map(|_| ())).await
}

pub async fn users_reset_password(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<UserForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageUsers)?;
    ui.check_csrf(&form.csrf)?;
    let reset = state
        .admin(ui.actor())
        .reset_password(&form.username, form.password)
        .await;
    users_done(&state, &ui, reset).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenForm {
    csrf: String,
    name: String,
    role: String,
    expires_in: String,
}

/// Creates an API token of the signed-in Administrator and shows its value
/// once, on the page this request answers (nothing else keeps it).
pub async fn tokens_add(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<TokenForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageUsers)?;
    ui.check_csrf(&form.csrf)?;
    let made = state
        .admin(ui.actor())
        .add_api_token(&TokenRequest {
            name: form.name,
            role: Some(form.role),
            user: Some(ui.name.clone()),
            expires_in: Some(form.expires_in),
        })
        .await;
    match made {
        Ok(t) => {
            let notice = Some(ui.tr.t("token-created-notice"));
            let created = Created {
                name: t.name,
                token: t.token,
            };
            render_users(&state, &ui, notice, None, Some(created)).await
        }
        Err(e) => {
            let text = form_errors(e)?.first().map(|m| m.render(&ui.tr));
            render_users(&state, &ui, None, text, None).await
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenRevokeForm {
    csrf: String,
    name: String,
}

pub async fn tokens_revoke(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<TokenRevokeForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageUsers)?;
    ui.check_csrf(&form.csrf)?;
    let revoked = state.admin(ui.actor()).revoke_api_token(&form.name).await;
    users_done(&state, &ui, revoked).await
}

#[derive(Template, WebTemplate)]
#[template(path = "password.html")]
struct PasswordPage {
    c: Chrome,
    error: Option<String>,
}

fn password_page(
    state: &AppState,
    ui: &Ui,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (
        status,
        PasswordPage {
            c: Chrome::for_ui(ui, state, PASSWORD_PAGE).with_notice(notice),
            error,
        },
    )
        .into_response()
}

/// Change Password: every signed-in user, whatever their role.
pub async fn own_password_page(
    State(state): State<AppState>,
    ui: Ui,
    Query(q): Query<DoneQuery>,
) -> Response {
    password_page(&state, &ui, q.notice(&ui.tr), None)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    csrf: String,
    current: String,
    password: String,
    confirm: String,
}

pub async fn own_password_submit(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    ui.check_csrf(&form.csrf)?;
    if form.password != form.confirm {
        let error = Some(ui.tr.t("password-mismatch"));
        return Ok(password_page(&state, &ui, None, error));
    }
    let changed = state
        .admin(ui.actor())
        .change_own_password(
            &ui.name,
            form.current,
            form.password,
            Some(&ui.session_hash),
        )
        .await;
    match changed {
        Ok(()) => Ok(done(PASSWORD_PAGE, "password-changed")),
        Err(e) => {
            let error = form_errors(e)?.first().map(|m| m.render(&ui.tr));
            Ok(password_page(&state, &ui, None, error))
        }
    }
}

/// Whether a token row is usable (the template greys out the others).
impl TokenRow {
    fn active(&self) -> bool {
        self.state_code == TokenState::Active.as_str()
    }
}
