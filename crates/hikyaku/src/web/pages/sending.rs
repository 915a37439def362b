//! Send → E-mail Settings (upstream SMTP server per account, sender, default
//! account), SMTP submitters and the address allowlist, and the Send Job
//! History with Retry now / Delete for Administrators.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Chrome, display_offset, fmt_time};
use crate::provider::Provider;
use crate::queue::{JobFilter, JobState, JobStore as _};
use crate::roles::Permission;
use crate::store::StoreError;
use crate::store::accounts::EmailSettings;
use crate::web::AppState;
use crate::web::auth::{self, Ui};
use crate::web::errors::WebError;
use crate::web::i18n::{Msg, render_all};
use crate::web::messages;

pub struct EmailAccountView {
    pub provider: &'static str,
    pub label: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_security: String,
    pub sender: String,
    pub mailbox: Option<String>,
    pub is_default: bool,
    /// Whether the signed-in role may change what sends through it.
    pub manageable: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "email.html")]
struct EmailPage {
    c: Chrome,
    errors: Vec<String>,
    accounts: Vec<EmailAccountView>,
    /// Whether the role may add what sends through the default account.
    default_manageable: bool,
    submitters: Vec<(String, String)>,
    allowlist: Vec<(String, String)>,
}

async fn account_label(state: &AppState, ui: &Ui, id: Option<i64>) -> String {
    match id {
        None => ui.tr.t("default-account"),
        Some(id) => match state.store.account(id).await {
            Ok(a) => ui.tr.t(&format!("provider-{}", a.provider.as_str())),
            Err(_) => id.to_string(),
        },
    }
}

/// What it takes to make a submitter or allowlist entry send through
/// `account` (`None`: the default account, if one is chosen): managing that
/// account's provider.
pub async fn sending_permission(
    state: &AppState,
    account: Option<i64>,
) -> Result<Option<Permission>, WebError> {
    let provider = match account {
        Some(id) => Some(state.store.account(id).await?.provider),
        None => state
            .store
            .accounts()
            .await?
            .into_iter()
            .find(|a| a.is_default)
            .map(|a| a.provider),
    };
    Ok(provider.map(Permission::manage))
}

/// What it takes to remove the submitter `name`: the same as to add it.
pub async fn submitter_permission(
    state: &AppState,
    name: &str,
) -> Result<Option<Permission>, WebError> {
    match state
        .store
        .submitters()
        .await?
        .into_iter()
        .find(|s| s.name == name)
    {
        Some(s) => sending_permission(state, s.account_id).await,
        None => Ok(None),
    }
}

/// What it takes to remove the allowlist entry `cidr`: the same as to add it.
pub async fn allow_entry_permission(
    state: &AppState,
    cidr: &str,
) -> Result<Option<Permission>, WebError> {
    match state
        .store
        .allowlist()
        .await?
        .into_iter()
        .find(|e| e.cidr == cidr)
    {
        Some(e) => sending_permission(state, e.account_id).await,
        None => Ok(None),
    }
}

async fn render_email(
    state: &AppState,
    ui: &Ui,
    notice: Option<String>,
    errors: Vec<Msg>,
) -> Result<Response, WebError> {
    let errors = render_all(&ui.tr, &errors);
    let accounts: Vec<EmailAccountView> = state
        .store
        .accounts()
        .await?
        .into_iter()
        .map(|a| EmailAccountView {
            provider: a.provider.as_str(),
            label: ui.tr.t(&format!("provider-{}", a.provider.as_str())),
            smtp_host: a.smtp_host,
            smtp_port: a.smtp_port,
            smtp_security: a.smtp_security.to_string(),
            sender: a.sender.unwrap_or_default(),
            mailbox: a.mailbox,
            is_default: a.is_default,
            manageable: ui.can(Permission::manage(a.provider)),
        })
        .collect();
    let mut submitters = Vec::new();
    for s in state.store.submitters().await? {
        submitters.push((s.name, account_label(state, ui, s.account_id).await));
    }
    let mut allowlist = Vec::new();
    for e in state.store.allowlist().await? {
        allowlist.push((e.cidr, account_label(state, ui, e.account_id).await));
    }
    let status = super::form_status(&errors);
    Ok((
        status,
        EmailPage {
            c: Chrome::for_ui(ui, state, "/settings/send/email").with_notice(notice),
            errors,
            default_manageable: accounts
                .iter()
                .find(|a| a.is_default)
                .is_none_or(|a| a.manageable),
            accounts,
            submitters,
            allowlist,
        },
    )
        .into_response())
}

pub async fn email_page(
    State(state): State<AppState>,
    ui: Ui,
    Query(q): Query<super::DoneQuery>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageEmail)?;
    render_email(&state, &ui, q.notice(&ui.tr), Vec::new()).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EmailForm {
    csrf: String,
    provider: String,
    smtp_host: String,
    smtp_port: String,
    smtp_security: String,
    sender: String,
    is_default: Option<String>,
}

/// Validates E-mail Settings; each message says what to correct.
pub fn validate_email(
    host: &str,
    port: &str,
    security: &str,
    sender: &str,
) -> Result<(u16, Option<String>), Vec<Msg>> {
    let mut errors = Vec::new();
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !host_ok && host.parse::<std::net::IpAddr>().is_err() {
        errors.push(Msg::new("err-smtp-host").arg("host", host));
    }
    let port = match port.trim().parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            errors.push(Msg::new("err-smtp-port"));
            0
        }
    };
    if !matches!(security, "starttls" | "implicit") {
        errors.push(Msg::new("err-smtp-security"));
    }
    let sender = sender.trim();
    if !sender.is_empty()
        && (!sender.contains('@')
            || sender
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>'))
    {
        errors.push(Msg::new("err-sender").arg("sender", sender));
    }
    if errors.is_empty() {
        Ok((port, Some(sender.to_string()).filter(|s| !s.is_empty())))
    } else {
        Err(errors)
    }
}

pub async fn email_submit(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<EmailForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageEmail)?;
    ui.check_csrf(&form.csrf)?;
    let provider =
        Provider::parse(&form.provider).ok_or_else(|| unknown_provider(&form.provider))?;
    ui.require(Permission::manage(provider))?;
    let host = form.smtp_host.trim().to_ascii_lowercase();
    let (port, sender) =
        match validate_email(&host, &form.smtp_port, &form.smtp_security, &form.sender) {
            Ok(v) => v,
            Err(errors) => return render_email(&state, &ui, None, errors).await,
        };
    let account = state.store.account_for(provider).await?;
    let settings = EmailSettings {
        smtp_host: host,
        smtp_port: port,
        smtp_security: form.smtp_security.clone(),
        sender,
        is_default: form.is_default.is_some(),
    };
    state
        .store
        .save_email_settings(account.id, &settings, state.clock.unix())
        .await?;
    state
        .audit(
            &ui.name,
            &ui.source,
            "email_settings",
            &format!(
                "{}: {}:{} {} sender={} default={}",
                provider.as_str(),
                settings.smtp_host,
                port,
                settings.smtp_security,
                settings.sender.as_deref().unwrap_or("-"),
                settings.is_default
            ),
        )
        .await;
    Ok(super::done("/settings/send/email", "saved"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SubmitterForm {
    csrf: String,
    name: String,
    password: String,
    provider: String,
}

fn unknown_provider(name: &str) -> WebError {
    WebError::BadRequest(Msg::new("err-unknown-provider").arg("provider", name))
}

async fn account_id_for(state: &AppState, provider: &str) -> Result<Option<i64>, WebError> {
    if provider.is_empty() {
        return Ok(None);
    }
    let p = Provider::parse(provider).ok_or_else(|| unknown_provider(provider))?;
    Ok(Some(state.store.account_for(p).await?.id))
}

pub async fn submitter_add(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<SubmitterForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageEmail)?;
    ui.check_csrf(&form.csrf)?;
    if let Err(e) = super::validate_new_user(&form.name, &form.password) {
        return render_email(&state, &ui, None, vec![e]).await;
    }
    let account = account_id_for(&state, &form.provider).await?;
    if let Some(p) = sending_permission(&state, account).await? {
        ui.require(p)?;
    }
    let hash = auth::hash_password(form.password).await?;
    match state
        .store
        .add_submitter(&form.name, &hash, account, state.clock.unix())
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(c)) => {
            return render_email(&state, &ui, None, vec![messages::conflict(&c)]).await;
        }
        Err(e) => return Err(e.into()),
    }
    state
        .audit(&ui.name, &ui.source, "submitter_add", &form.name)
        .await;
    Ok(super::done("/settings/send/email", "saved"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NameForm {
    csrf: String,
    name: String,
    cidr: String,
    provider: String,
}

pub async fn submitter_delete(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<NameForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageEmail)?;
    ui.check_csrf(&form.csrf)?;
    if let Some(p) = submitter_permission(&state, &form.name).await? {
        ui.require(p)?;
    }
    state.store.delete_submitter(&form.name).await?;
    state
        .audit(&ui.name, &ui.source, "submitter_delete", &form.name)
        .await;
    Ok(super::done("/settings/send/email", "saved"))
}

pub async fn allowlist_add(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<NameForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageEmail)?;
    ui.check_csrf(&form.csrf)?;
    let cidr = match crate::intake::cidr::Cidr::parse(&form.cidr) {
        Ok(c) => c,
        Err(e) => return render_email(&state, &ui, None, vec![messages::cidr(&e)]).await,
    };
    let account = account_id_for(&state, &form.provider).await?;
    if let Some(p) = sending_permission(&state, account).await? {
        ui.require(p)?;
    }
    match state
        .store
        .add_allow_entry(&cidr.to_string(), account, state.clock.unix())
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(c)) => {
            return render_email(&state, &ui, None, vec![messages::conflict(&c)]).await;
        }
        Err(e) => return Err(e.into()),
    }
    state
        .audit(&ui.name, &ui.source, "allowlist_add", &cidr.to_string())
        .await;
    Ok(super::done("/settings/send/email", "saved"))
}

pub async fn allowlist_delete(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<NameForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageEmail)?;
    ui.check_csrf(&form.csrf)?;
    if let Some(p) = allow_entry_permission(&state, &form.cidr).await? {
        ui.require(p)?;
    }
    state.store.delete_allow_entry(&form.cidr).await?;
    state
        .audit(&ui.name, &ui.source, "allowlist_delete", &form.cidr)
        .await;
    Ok(super::done("/settings/send/email", "saved"))
}

pub struct JobView {
    pub id: String,
    pub time: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub size: i64,
    pub account: String,
    pub state: String,
    pub state_label: String,
    pub attempts: i64,
    pub next: String,
    pub reply: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "jobs.html")]
struct JobsPage {
    c: Chrome,
    jobs: Vec<JobView>,
    states: Vec<(&'static str, String)>,
    state: String,
    q: String,
    can_manage: bool,
    /// Links to the newer and the older page, when there is one.
    newer: Option<String>,
    older: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct JobsQuery {
    state: String,
    q: String,
    /// Page number, 0 for the newest jobs.
    page: u32,
}

/// Jobs on one page of the history.
const JOBS_PER_PAGE: u32 = 100;

/// The history's address with these filters, on `page`.
fn jobs_href(query: &JobsQuery, page: u32) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("state", &query.state)
        .append_pair("q", &query.q)
        .append_pair("page", &page.to_string());
    format!("/jobs?{}", q.finish())
}

pub async fn jobs_page(
    State(state): State<AppState>,
    ui: Ui,
    Query(query): Query<JobsQuery>,
) -> Result<Response, WebError> {
    ui.require(Permission::ViewStatus)?;
    render_jobs(&state, &ui, &query, None).await
}

async fn render_jobs(
    state: &AppState,
    ui: &Ui,
    query: &JobsQuery,
    notice: Option<String>,
) -> Result<Response, WebError> {
    let offset = display_offset(state).await;
    let filter = JobFilter {
        state: query.state.parse::<JobState>().ok(),
        account_id: None,
        search: Some(query.q.clone()).filter(|q| !q.is_empty()),
    };
    let accounts = state.store.accounts().await?;
    // One more than a page: whether an older page exists.
    let mut found = state
        .store
        .jobs(
            &filter,
            i64::from(JOBS_PER_PAGE) + 1,
            i64::from(query.page) * i64::from(JOBS_PER_PAGE),
        )
        .await?;
    let has_older = found.len() > JOBS_PER_PAGE as usize;
    found.truncate(JOBS_PER_PAGE as usize);
    let jobs = found
        .into_iter()
        .map(|j| JobView {
            time: fmt_time(j.created_at, offset),
            from: j.header_from.clone().unwrap_or_else(|| j.mail_from.clone()),
            to: j.rcpt_to.join(", "),
            subject: j.subject.clone().unwrap_or_default(),
            size: j.size,
            // The account that delivered (or refused) it, else the one it is
            // bound to, else the default.
            account: j
                .via_account_id
                .or(j.account_id)
                .and_then(|id| accounts.iter().find(|a| a.id == id))
                .map(|a| ui.tr.t(&format!("provider-{}", a.provider.as_str())))
                .unwrap_or_else(|| ui.tr.t("default-account")),
            state_label: ui.tr.t(&format!("job-state-{}", j.state)),
            next: if j.state.is_waiting() {
                fmt_time(j.next_attempt_at, offset)
            } else {
                String::new()
            },
            reply: j
                .last_reply
                .as_deref()
                .map(|r| crate::web::reasons::job(r).render(&ui.tr))
                .unwrap_or_default(),
            attempts: j.attempts,
            state: j.state.as_str().to_owned(),
            id: j.id,
        })
        .collect();
    Ok(JobsPage {
        c: Chrome::for_ui(ui, state, &jobs_href(query, query.page)).with_notice(notice),
        newer: (query.page > 0).then(|| jobs_href(query, query.page - 1)),
        older: has_older.then(|| jobs_href(query, query.page.saturating_add(1))),
        jobs,
        states: JobState::ALL
            .iter()
            .map(|s| (s.as_str(), ui.tr.t(&format!("job-state-{s}"))))
            .collect(),
        state: query.state.clone(),
        q: query.q.clone(),
        can_manage: ui.can(Permission::ManageJobs),
    }
    .into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct JobForm {
    csrf: String,
    id: String,
}

pub async fn job_retry(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<JobForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageJobs)?;
    ui.check_csrf(&form.csrf)?;
    state.store.retry_job(&form.id, state.clock.unix()).await?;
    state.wake_delivery();
    state
        .audit(&ui.name, &ui.source, "job_retry", &form.id)
        .await;
    Ok(Redirect::to("/jobs").into_response())
}

pub async fn job_delete(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<JobForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageJobs)?;
    ui.check_csrf(&form.csrf)?;
    state.store.delete_job(&form.id).await?;
    state
        .audit(&ui.name, &ui.source, "job_delete", &form.id)
        .await;
    Ok(Redirect::to("/jobs").into_response())
}
