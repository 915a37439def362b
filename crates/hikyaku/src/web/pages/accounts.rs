//! Send → Accounts: every sending account with its provider, cloud,
//! credential kind, mailbox and statuses; add, edit (cloud and overrides,
//! send-as list, limits), switch off and on, and delete (asking what becomes
//! of the jobs still waiting). The changes are `crate::admin`'s.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Chrome;
use super::account::base_of;
use super::sending::account_title;
use crate::admin::account_setup::{AccountInput, input_of};
use crate::cloud::Cloud;
use crate::provider::Provider;
use crate::roles::Permission;
use crate::store::accounts::{Account, CredentialKind, JobsOnDelete};
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;
use crate::web::i18n::{Msg, Tr, render_all};
use crate::web::refusals::form_errors;

/// Where the list lives.
const LIST: &str = "/settings/send/accounts";

/// One line of the list.
pub struct AccountRow {
    pub id: i64,
    pub name: String,
    pub provider: String,
    pub cloud: String,
    pub kind: String,
    pub mailbox: String,
    pub enabled: bool,
    pub connection_status: String,
    pub connection_label: String,
    pub token_status: String,
    pub token_label: String,
    pub token_reason: Option<String>,
    pub send_as: String,
    pub limits: String,
    /// The account's settings page (the manual's screens, or the app-only page).
    pub settings: String,
    pub manageable: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "accounts.html")]
struct ListPage {
    c: Chrome,
    accounts: Vec<AccountRow>,
    can_add: bool,
}

/// The add or edit form.
#[derive(Template, WebTemplate)]
#[template(path = "accounts_form.html")]
struct FormPage {
    c: Chrome,
    errors: Vec<String>,
    /// `None` when adding.
    id: Option<i64>,
    action: String,
    f: AccountForm,
    providers: Vec<(&'static str, String)>,
    clouds: Vec<(&'static str, String)>,
    transports: Vec<(&'static str, String)>,
    /// Defaults shown beside the limit fields.
    default_rate: u64,
    default_connections: u64,
}

#[derive(Template, WebTemplate)]
#[template(path = "accounts_delete.html")]
struct DeletePage {
    c: Chrome,
    errors: Vec<String>,
    id: i64,
    title: String,
    waiting: i64,
    waiting_text: String,
    /// Where the jobs may move: the form value and its label.
    targets: Vec<(String, String)>,
}

fn cloud_label(tr: &Tr, c: Cloud) -> String {
    tr.t(&format!("cloud-{}", c.as_str()))
}

fn kind_label(tr: &Tr, k: CredentialKind) -> String {
    tr.t(&format!("credential-kind-{}", k.as_str()))
}

/// The account's settings page.
async fn settings_href(state: &AppState, a: &Account) -> String {
    if a.credential_kind.is_app_only() {
        format!("{LIST}/{}/app", a.id)
    } else {
        base_of(state, a).await.0
    }
}

pub async fn accounts_page(
    State(state): State<AppState>,
    ui: Ui,
    Query(q): Query<super::DoneQuery>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageMicrosoft)?;
    let tr = ui.tr;
    let mut rows = Vec::new();
    for a in state.store.accounts().await? {
        let limit =
            |v: Option<u32>| v.map_or_else(|| tr.t("account-limit-default"), |n| n.to_string());
        rows.push(AccountRow {
            id: a.id,
            name: a.name.clone(),
            provider: tr.t(&format!("provider-{}", a.provider.as_str())),
            cloud: cloud_label(&tr, a.cloud),
            kind: kind_label(&tr, a.credential_kind),
            mailbox: a.mailbox.clone().unwrap_or_default(),
            enabled: a.enabled,
            connection_status: a.connection_status.to_string(),
            connection_label: tr.t(&format!("connection-status-{}", a.connection_status)),
            token_status: a.token_status.to_string(),
            token_label: tr.t(&format!("token-status-{}", a.token_status)),
            token_reason: a.token_reason.as_ref().map(|r| r.render(&tr)),
            send_as: a.send_as.join(", "),
            limits: tr.args(
                "account-limits-value",
                &[
                    ("rate", limit(a.rate_per_minute)),
                    ("connections", limit(a.max_connections)),
                ],
            ),
            settings: settings_href(&state, &a).await,
            manageable: ui.can(Permission::manage(a.provider)),
        });
    }
    Ok(ListPage {
        c: Chrome::for_ui(&ui, &state, LIST).with_notice(q.notice(&tr)),
        accounts: rows,
        can_add: true,
    }
    .into_response())
}

/// The add and edit form's fields. Checkboxes are absent when off.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct AccountForm {
    pub csrf: String,
    pub name: String,
    pub provider: String,
    pub cloud: String,
    pub credential_kind: String,
    pub mailbox: String,
    pub endpoint: String,
    pub smtp_host: String,
    pub smtp_scope: String,
    pub graph_host: String,
    pub send_as: String,
    pub rate_per_minute: String,
    pub max_connections: String,
    pub enabled: Option<String>,
    pub transport: String,
    pub graph_large_messages: Option<String>,
}

impl AccountForm {
    fn input(&self) -> AccountInput {
        AccountInput {
            name: self.name.clone(),
            provider: self.provider.clone(),
            cloud: self.cloud.clone(),
            credential_kind: self.credential_kind.clone(),
            mailbox: self.mailbox.clone(),
            endpoint: self.endpoint.clone(),
            smtp_host: self.smtp_host.clone(),
            smtp_scope: self.smtp_scope.clone(),
            graph_host: self.graph_host.clone(),
            send_as: self.send_as.clone(),
            rate_per_minute: self.rate_per_minute.clone(),
            max_connections: self.max_connections.clone(),
            enabled: self.enabled.is_some(),
            transport: self.transport.clone(),
            graph_large_messages: self.graph_large_messages.is_some(),
        }
    }

    /// The stored account as the form shows it (effective values filled in).
    fn of(a: &Account) -> Self {
        let i = input_of(a, a.enabled);
        AccountForm {
            csrf: String::new(),
            name: i.name,
            provider: i.provider,
            cloud: i.cloud,
            credential_kind: i.credential_kind,
            mailbox: i.mailbox,
            endpoint: i.endpoint,
            smtp_host: i.smtp_host,
            smtp_scope: a.delegated_smtp_scope(),
            graph_host: a.effective_graph_host(),
            send_as: i.send_as,
            rate_per_minute: i.rate_per_minute,
            max_connections: i.max_connections,
            enabled: a.enabled.then(|| "on".to_string()),
            transport: i.transport,
            graph_large_messages: a.graph_large_messages.then(|| "on".to_string()),
        }
    }
}

fn form_page(
    state: &AppState,
    ui: &Ui,
    id: Option<i64>,
    f: AccountForm,
    errors: Vec<Msg>,
) -> Response {
    let tr = ui.tr;
    let errors = render_all(&tr, &errors);
    let status = super::form_status(&errors);
    let action = match id {
        Some(id) => format!("{LIST}/{id}/settings"),
        None => LIST.to_string(),
    };
    let providers = Provider::ALL
        .into_iter()
        .filter(|p| ui.can(Permission::manage(*p)))
        .map(|p| (p.as_str(), tr.t(&format!("provider-{}", p.as_str()))))
        .collect();
    let clouds = Cloud::ALL
        .into_iter()
        .map(|c| (c.as_str(), cloud_label(&tr, c)))
        .collect();
    // An account's own provider offers two; a new one may pick any, and
    // the check says which fit its provider.
    let transports = crate::store::accounts::Transport::ALL
        .into_iter()
        .filter(|t| Provider::parse(&f.provider).is_none_or(|p| t.fits(p)))
        .map(|t| {
            (
                t.as_str(),
                tr.t(&format!("accounts-transport-{}", t.as_str())),
            )
        })
        .collect();
    (
        status,
        FormPage {
            c: Chrome::for_ui(ui, state, &action),
            errors,
            id,
            action,
            f,
            providers,
            clouds,
            transports,
            default_rate: state.config.delivery.rate_per_minute,
            default_connections: state.config.delivery.connections_per_account,
        },
    )
        .into_response()
}

pub async fn account_new_page(State(state): State<AppState>, ui: Ui) -> Result<Response, WebError> {
    ui.require(Permission::ManageMicrosoft)?;
    let f = AccountForm {
        provider: "microsoft".into(),
        cloud: "worldwide".into(),
        enabled: Some("on".into()),
        ..Default::default()
    };
    Ok(form_page(&state, &ui, None, f, Vec::new()))
}

pub async fn account_add(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<AccountForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageMicrosoft)?;
    ui.check_csrf(&form.csrf)?;
    // This form adds delegated accounts; app-only credentials have their
    // own page once the account exists.
    let input = AccountInput {
        credential_kind: String::new(),
        ..form.input()
    };
    match state.admin(ui.actor()).add_account(&input).await {
        Ok(a) => Ok(super::done(&settings_href(&state, &a).await, "saved")),
        Err(e) => Ok(form_page(&state, &ui, None, form, form_errors(e)?)),
    }
}

/// The account `id`, when the caller may manage it.
async fn managed(state: &AppState, ui: &Ui, id: i64) -> Result<Account, WebError> {
    let a = state.store.account(id).await?;
    ui.require(Permission::manage(a.provider))?;
    Ok(a)
}

pub async fn account_settings_page(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let a = managed(&state, &ui, id).await?;
    Ok(form_page(
        &state,
        &ui,
        Some(a.id),
        AccountForm::of(&a),
        Vec::new(),
    ))
}

pub async fn account_settings_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
    Form(form): Form<AccountForm>,
) -> Result<Response, WebError> {
    let a = managed(&state, &ui, id).await?;
    ui.check_csrf(&form.csrf)?;
    match state
        .admin(ui.actor())
        .update_account(&state.live(), a.id, &form.input())
        .await
    {
        Ok(_) => Ok(super::done(LIST, "saved")),
        Err(e) => {
            let f = AccountForm {
                provider: a.provider.as_str().into(),
                credential_kind: a.credential_kind.as_str().into(),
                mailbox: a.mailbox.clone().unwrap_or_default(),
                ..form
            };
            Ok(form_page(&state, &ui, Some(a.id), f, form_errors(e)?))
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EnableForm {
    csrf: String,
    /// `on` switches the account on, anything else off.
    enabled: String,
}

pub async fn account_enable_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
    Form(form): Form<EnableForm>,
) -> Result<Response, WebError> {
    let a = managed(&state, &ui, id).await?;
    ui.check_csrf(&form.csrf)?;
    state
        .admin(ui.actor())
        .set_account_enabled(&state.live(), a.id, form.enabled == "on")
        .await?;
    Ok(super::done(LIST, "saved"))
}

async fn delete_page(
    state: &AppState,
    ui: &Ui,
    a: &Account,
    errors: Vec<Msg>,
) -> Result<Response, WebError> {
    let tr = ui.tr;
    let errors = render_all(&tr, &errors);
    let status = super::form_status(&errors);
    let targets = state
        .store
        .accounts()
        .await?
        .into_iter()
        .filter(|t| t.id != a.id && ui.can(Permission::manage(t.provider)))
        .map(|t| {
            (
                format!("move:{}", t.id),
                tr.args("account-jobs-move", &[("account", account_title(&tr, &t))]),
            )
        })
        .collect();
    let waiting = state.store.pending_jobs_of(a.id).await?;
    Ok((
        status,
        DeletePage {
            c: Chrome::for_ui(ui, state, &format!("{LIST}/{}/delete", a.id)),
            errors,
            id: a.id,
            title: account_title(&tr, a),
            waiting,
            waiting_text: tr.args("account-delete-waiting", &[("count", waiting.to_string())]),
            targets,
        },
    )
        .into_response())
}

pub async fn account_delete_page(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let a = managed(&state, &ui, id).await?;
    delete_page(&state, &ui, &a, Vec::new()).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DeleteForm {
    csrf: String,
    /// `move:ID`, `fail`, or empty when no job waits.
    jobs: String,
}

/// What a delete does with the waiting jobs: `move:ID`, `fail`, or nothing
/// chosen. `Err` for anything else.
pub fn parse_disposal(text: &str) -> Result<Option<JobsOnDelete>, ()> {
    match text.trim() {
        "" => Ok(None),
        "fail" => Ok(Some(JobsOnDelete::Fail)),
        other => other
            .strip_prefix("move:")
            .and_then(|id| id.parse::<i64>().ok())
            .map(|id| Some(JobsOnDelete::Move(id)))
            .ok_or(()),
    }
}

pub async fn account_delete_submit(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<i64>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, WebError> {
    let a = managed(&state, &ui, id).await?;
    ui.check_csrf(&form.csrf)?;
    let Ok(jobs) = parse_disposal(&form.jobs) else {
        return delete_page(&state, &ui, &a, vec![Msg::new("err-jobs-disposal")]).await;
    };
    match state
        .admin(ui.actor())
        .delete_account(&state.live(), a.id, jobs)
        .await
    {
        Ok(_) => Ok(super::done(LIST, "saved")),
        Err(e) => {
            let errors = form_errors(e)?;
            delete_page(&state, &ui, &a, errors).await
        }
    }
}
