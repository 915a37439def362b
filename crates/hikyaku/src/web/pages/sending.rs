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
use crate::admin::accounts::EmailInput;
use crate::admin::{AdminError, Problem};
use crate::provider::Provider;
use crate::queue::{JobFilter, JobState, JobStore as _};
use crate::roles::Permission;
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;
use crate::web::i18n::{Msg, render_all};

pub struct EmailAccountView {
    pub id: i64,
    /// The form's id and the value submitters bind to: the provider for its
    /// default account (as before accounts were many), else the id.
    pub key: String,
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
    /// The last Test connection, if any.
    pub test: Option<super::TestView>,
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

/// An account as the pages name it: its provider, and its name when that
/// differs from the provider's (every account but the two first ones).
pub fn account_title(tr: &crate::web::i18n::Tr, a: &crate::store::accounts::Account) -> String {
    let provider = tr.t(&format!("provider-{}", a.provider.as_str()));
    if a.name == a.provider.as_str() {
        provider
    } else {
        format!("{} ({provider})", a.name)
    }
}

async fn account_label(state: &AppState, ui: &Ui, id: Option<i64>) -> String {
    match id {
        None => ui.tr.t("default-account"),
        Some(id) => match state.store.account(id).await {
            Ok(a) => account_title(&ui.tr, &a),
            Err(_) => id.to_string(),
        },
    }
}

async fn render_email(
    state: &AppState,
    ui: &Ui,
    notice: Option<String>,
    errors: Vec<Msg>,
) -> Result<Response, WebError> {
    let errors = render_all(&ui.tr, &errors);
    let all = state.store.accounts().await?;
    let defaults: Vec<i64> = all
        .iter()
        .filter(|a| !a.credential_kind.is_app_only())
        .fold(Vec::new(), |mut ids: Vec<(Provider, i64)>, a| {
            if !ids.iter().any(|(p, _)| *p == a.provider) {
                ids.push((a.provider, a.id));
            }
            ids
        })
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let mut accounts: Vec<EmailAccountView> = Vec::new();
    for a in all {
        let test = super::test_view(state, &ui.tr, &a).await;
        accounts.push(EmailAccountView {
            test,
            id: a.id,
            key: if defaults.contains(&a.id) {
                a.provider.as_str().to_string()
            } else {
                a.id.to_string()
            },
            provider: a.provider.as_str(),
            label: account_title(&ui.tr, &a),
            smtp_host: a.smtp_host,
            smtp_port: a.smtp_port,
            smtp_security: a.smtp_security.to_string(),
            sender: a.sender.unwrap_or_default(),
            mailbox: a.mailbox,
            is_default: a.is_default,
            manageable: ui.can(Permission::manage(a.provider)),
        });
    }
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
            // A binding to no account may send through any of them.
            default_manageable: accounts.iter().all(|a| a.manageable),
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
    /// The account's id; empty: the default account of `provider`.
    account: String,
    provider: String,
    smtp_host: String,
    smtp_port: String,
    smtp_security: String,
    sender: String,
    is_default: Option<String>,
}

pub async fn email_submit(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<EmailForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageEmail)?;
    ui.check_csrf(&form.csrf)?;
    let admin = state.admin(ui.actor());
    let id = if form.account.trim().is_empty() {
        let provider = Provider::parse(&form.provider).ok_or_else(|| {
            WebError::from(AdminError::from(Problem::UnknownProvider(
                form.provider.clone(),
            )))
        })?;
        admin.default_account(provider).await?
    } else {
        admin.find_account(&form.account).await?.id
    };
    let input = EmailInput {
        smtp_host: form.smtp_host,
        smtp_port: form.smtp_port,
        smtp_security: form.smtp_security,
        sender: form.sender,
        is_default: form.is_default.is_some(),
    };
    let saved = admin.save_email(id, &input).await;
    if saved.is_ok() {
        // A setting the account would send with is tested at once: a
        // failure warns, and the setting stays saved.
        let a = state.store.account(id).await?;
        if a.enabled && a.token_status == "active" && !super::run_and_keep(&state, &a).await? {
            return Ok(super::done("/settings/send/email", "saved-test-failed"));
        }
    }
    email_done(&state, &ui, saved.map(|_| ())).await
}

/// The E-mail Settings page after a change: its notice, or the refusal
/// beside the forms.
async fn email_done(
    state: &AppState,
    ui: &Ui,
    result: Result<(), AdminError>,
) -> Result<Response, WebError> {
    match result {
        Ok(()) => Ok(super::done("/settings/send/email", "saved")),
        Err(e) => render_email(state, ui, None, crate::web::refusals::form_errors(e)?).await,
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SubmitterForm {
    csrf: String,
    name: String,
    password: String,
    provider: String,
}

pub async fn submitter_add(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<SubmitterForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageEmail)?;
    ui.check_csrf(&form.csrf)?;
    let added = state
        .admin(ui.actor())
        .add_submitter(&form.name, form.password, &form.provider)
        .await;
    email_done(&state, &ui, added).await
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
    state.admin(ui.actor()).delete_submitter(&form.name).await?;
    Ok(super::done("/settings/send/email", "saved"))
}

pub async fn allowlist_add(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<NameForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageEmail)?;
    ui.check_csrf(&form.csrf)?;
    let added = state
        .admin(ui.actor())
        .add_allow_entry(&form.cidr, &form.provider)
        .await;
    email_done(&state, &ui, added.map(|_| ())).await
}

pub async fn allowlist_delete(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<NameForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageEmail)?;
    ui.check_csrf(&form.csrf)?;
    state
        .admin(ui.actor())
        .delete_allow_entry(&form.cidr)
        .await?;
    Ok(super::done("/settings/send/email", "saved"))
}

pub struct JobView {
    pub id: String,
    pub time: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    /// The subject is in ASCII only: quoted as English text, not the page's.
    pub subject_ascii: bool,
    pub size: i64,
    pub account: String,
    pub state: String,
    pub state_label: String,
    pub attempts: i64,
    pub next: String,
    pub reply: String,
    /// The transport (and the provider's message id, when sent over HTTP).
    pub transport: String,
    pub provider_id: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "jobs.html")]
struct JobsPage {
    c: Chrome,
    jobs: Vec<JobView>,
    states: Vec<(&'static str, String)>,
    state: String,
    q: String,
    /// Why a filter could not be used.
    errors: Vec<String>,
    /// (id, title) of each account, and the one chosen ("" for all).
    accounts: Vec<(String, String)>,
    account: String,
    /// The day range as entered.
    since: String,
    until: String,
    can_manage: bool,
    /// The filtered rows as CSV.
    csv_href: String,
    /// Links to the newer and the older page, when there is one.
    newer: Option<String>,
    older: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct JobsQuery {
    state: String,
    q: String,
    /// Jobs bound to this account (its id); empty for all.
    account: String,
    /// The first and the last day shown (`YYYY-MM-DD`, in the display
    /// time zone); empty for no bound.
    since: String,
    until: String,
    /// Page number, 0 for the newest jobs.
    page: u32,
}

/// Jobs on one page of the history.
const JOBS_PER_PAGE: u32 = 100;

/// The filters of `query` as a query string (without the page).
fn filter_pairs(query: &JobsQuery) -> url::form_urlencoded::Serializer<'static, String> {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("state", &query.state)
        .append_pair("q", &query.q);
    // Only the filters in use, so that the usual links stay as they were.
    for (name, value) in [
        ("account", &query.account),
        ("since", &query.since),
        ("until", &query.until),
    ] {
        if !value.is_empty() {
            q.append_pair(name, value);
        }
    }
    q
}

/// The history's address with these filters, on `page`.
fn jobs_href(query: &JobsQuery, page: u32) -> String {
    let mut q = filter_pairs(query);
    q.append_pair("page", &page.to_string());
    format!("/jobs?{}", q.finish())
}

/// The CSV export's address with these filters.
fn jobs_csv_href(query: &JobsQuery) -> String {
    format!("/jobs.csv?{}", filter_pairs(query).finish())
}

/// The start of `day` (`YYYY-MM-DD`) in the display time zone, `days_after`
/// days later (unix seconds).
fn day_start(day: &str, days_after: i64, offset: time::UtcOffset) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day.trim(), &format).ok()?;
    let t = date.midnight().assume_offset(offset) + time::Duration::days(days_after);
    Some(t.unix_timestamp())
}

/// The history's filters as the store takes them; a filter that cannot be
/// read is refused with what to enter instead.
fn job_filter(query: &JobsQuery, offset: time::UtcOffset) -> Result<JobFilter, Msg> {
    let account_id = match query.account.trim() {
        "" => None,
        a => Some(
            a.parse::<i64>()
                .map_err(|_| Msg::new("jobs-filter-bad-account").arg("value", a))?,
        ),
    };
    // The last day is shown whole: the bound is the start of the next.
    let day = |value: &str, days_after: i64| -> Result<Option<i64>, Msg> {
        if value.trim().is_empty() {
            return Ok(None);
        }
        day_start(value, days_after, offset)
            .map(Some)
            .ok_or_else(|| Msg::new("jobs-filter-bad-day").arg("value", value))
    };
    Ok(JobFilter {
        state: query.state.parse::<JobState>().ok(),
        search: Some(query.q.clone()).filter(|q| !q.is_empty()),
        account_id,
        since: day(&query.since, 0)?,
        until: day(&query.until, 1)?,
    })
}

/// Every row the filters select, as CSV (the link beside the filters).
pub async fn jobs_csv(
    State(state): State<AppState>,
    ui: Ui,
    Query(query): Query<JobsQuery>,
) -> Result<Response, WebError> {
    ui.require(Permission::ViewStatus)?;
    let offset = display_offset(&state).await;
    let filter = job_filter(&query, offset).map_err(WebError::BadRequest)?;
    let style = crate::web::jobs_csv::Style::Page { tr: ui.tr, offset };
    Ok(crate::web::jobs_csv::response(&state.store, filter, style, "send-job-history.csv").await?)
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
    let accounts = state.store.accounts().await?;
    let (mut found, errors) = match job_filter(query, offset) {
        // One more than a page: whether an older page exists.
        Ok(filter) => (
            state
                .store
                .jobs(
                    &filter,
                    i64::from(JOBS_PER_PAGE) + 1,
                    i64::from(query.page) * i64::from(JOBS_PER_PAGE),
                )
                .await?,
            Vec::new(),
        ),
        // No rows rather than rows the filter did not choose; the form
        // keeps what was entered, to be corrected.
        Err(msg) => (Vec::new(), vec![msg.render(&ui.tr)]),
    };
    let has_older = found.len() > JOBS_PER_PAGE as usize;
    found.truncate(JOBS_PER_PAGE as usize);
    let jobs = found
        .into_iter()
        .map(|j| {
            let (transport, provider_id) = crate::web::jobs_csv::transport_of(&j, &accounts);
            (j, transport, provider_id)
        })
        .map(|(j, transport, provider_id)| JobView {
            transport: transport
                .map(|t| ui.tr.t(&format!("accounts-transport-{}", t.as_str())))
                .unwrap_or_default(),
            provider_id: provider_id.unwrap_or_default(),
            time: fmt_time(j.created_at, offset),
            from: j.header_from.clone().unwrap_or_else(|| j.mail_from.clone()),
            to: j.rcpt_to.join(", "),
            subject_ascii: j.subject.as_deref().unwrap_or_default().is_ascii(),
            subject: j.subject.clone().unwrap_or_default(),
            size: j.size,
            // The account that delivered (or refused) it, else the one it is
            // bound to, else the default.
            account: j
                .via_account_id
                .or(j.account_id)
                .and_then(|id| accounts.iter().find(|a| a.id == id))
                .map(|a| account_title(&ui.tr, a))
                .unwrap_or_else(|| ui.tr.t("default-account")),
            state_label: ui.tr.t(&format!("job-state-{}", j.state)),
            next: if j.state.is_waiting() {
                fmt_time(j.next_attempt_at, offset)
            } else {
                String::new()
            },
            reply: j
                .last_reply_reason
                .as_ref()
                .map(|r| super::quote::reason_html(r, &ui.tr))
                .unwrap_or_default(),
            attempts: j.attempts,
            state: j.state.as_str().to_owned(),
            id: j.id,
        })
        .collect();
    let status = super::form_status(&errors);
    let account_options = accounts
        .iter()
        .map(|a| (a.id.to_string(), account_title(&ui.tr, a)))
        .collect();
    let page = JobsPage {
        c: Chrome::for_ui(ui, state, &jobs_href(query, query.page)).with_notice(notice),
        errors,
        accounts: account_options,
        account: query.account.trim().to_owned(),
        since: query.since.clone(),
        until: query.until.clone(),
        csv_href: jobs_csv_href(query),
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
    };
    Ok((status, page).into_response())
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
    state
        .admin(ui.actor())
        .retry_job(&state.live(), &form.id)
        .await?;
    Ok(Redirect::to("/jobs").into_response())
}

pub async fn job_delete(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<JobForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageJobs)?;
    ui.check_csrf(&form.csrf)?;
    state.admin(ui.actor()).delete_job(&form.id).await?;
    Ok(Redirect::to("/jobs").into_response())
}
