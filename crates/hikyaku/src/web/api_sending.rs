//! The JSON API of the sending side: the job history (with Retry now and
//! Delete), E-mail Settings, submitters, the address allowlist, CA
//! certificates and Send Test E-mail. Same operations and checks as the pages.

use axum::extract::{Path, Query, State};
use axum::http::header::ACCEPT_LANGUAGE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api::{ApiJson, refused};
use super::auth::ApiCaller;
use super::errors::WebError;
use super::i18n::Msg;
use super::refusals::form_errors;
use crate::admin::Problem;
use crate::admin::accounts::EmailInput;
use crate::i18n::{Locale, Tr};
use crate::intake::cidr::Cidr;
use crate::provider::Provider;
use crate::queue::{JobFilter, JobState, JobStore as _};
use crate::roles::Permission;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs", get(jobs_list))
        .route("/api/v1/jobs.csv", get(jobs_csv))
        .route("/api/v1/jobs/{id}", get(job_get).delete(job_delete))
        .route("/api/v1/jobs/{id}/retry", post(job_retry))
        .route("/api/v1/email/{provider}", get(email_get).put(email_put))
        .route("/api/v1/oauth/{provider}/test-email", post(test_email))
        .route(
            "/api/v1/submitters",
            get(submitters_list).post(submitters_add),
        )
        .route("/api/v1/submitters/{name}", delete(submitters_delete))
        .route("/api/v1/allowlist", get(allowlist_list).post(allowlist_add))
        .route("/api/v1/allowlist/{entry}", delete(allowlist_delete))
        .route("/api/v1/ca-certificates", get(ca_list).post(ca_add))
        .route("/api/v1/ca-certificates/{id}", delete(ca_delete))
}

fn provider(text: &str) -> Result<Provider, WebError> {
    Provider::parse(text).ok_or(WebError::NotFound)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JobsQuery {
    state: Option<String>,
    q: Option<String>,
    /// Jobs bound to this account (its id).
    account: Option<i64>,
    /// Created at or after / before (unix seconds).
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
    /// The id of the last job of the previous page: the next page starts
    /// below it, however deep (no rows skipped one by one).
    before: Option<String>,
}

/// The filters of a history query.
fn wanted(q: &JobsQuery) -> Result<JobFilter, WebError> {
    Ok(JobFilter {
        state: wanted_state(q)?,
        account_id: q.account,
        search: q.q.clone(),
        since: q.since,
        until: q.until,
    })
}

/// The state filter of a history query; an unknown state is refused with
/// the list of states.
fn wanted_state(q: &JobsQuery) -> Result<Option<JobState>, WebError> {
    Ok(match q.state.as_deref().map(str::parse::<JobState>) {
        Some(Err(_)) => {
            let states: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
            return Err(WebError::BadRequest(
                Msg::new("err-api-unknown-state")
                    .arg("state", q.state.as_deref().unwrap_or_default())
                    .arg("states", states.join(", ")),
            ));
        }
        Some(Ok(s)) => Some(s),
        None => None,
    })
}

async fn jobs_list(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ViewStatus)?;
    let filter = wanted(&q)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    if let Some(id) = q.before.as_deref().filter(|id| !id.is_empty()) {
        let last = match state.store.job(id).await {
            Ok(j) => j,
            Err(crate::store::StoreError::NotFound) => {
                return Err(WebError::BadRequest(
                    Msg::new("err-api-before-unknown").arg("id", id),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let cursor = (last.created_at, last.id);
        return Ok(Json(json!(
            state.store.jobs_page(&filter, Some(&cursor), limit).await?
        )));
    }
    let offset = q.offset.unwrap_or(0).max(0);
    let accounts = state.store.accounts().await?;
    let jobs = state.store.jobs(&filter, limit, offset).await?;
    Ok(Json(Value::Array(
        jobs.iter()
            .map(|j| super::jobs_csv::job_json(j, &accounts))
            .collect(),
    )))
}

/// Every job the filters select, as CSV (`text/csv`).
async fn jobs_csv(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(q): Query<JobsQuery>,
) -> Result<Response, WebError> {
    caller.require(Permission::ViewStatus)?;
    let filter = wanted(&q)?;
    Ok(super::jobs_csv::response(
        &state.store,
        filter,
        super::jobs_csv::Style::Api,
        "jobs.csv",
    )
    .await?)
}

async fn job_get(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ViewStatus)?;
    let job = state.store.job(&id).await?;
    let accounts = state.store.accounts().await?;
    Ok(Json(super::jobs_csv::job_json(&job, &accounts)))
}

async fn job_retry(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, WebError> {
    state
        .admin(caller.actor())
        .retry_job(&state.live(), &id)
        .await
        .map_err(refused)?;
    let job = state.store.job(&id).await?;
    let accounts = state.store.accounts().await?;
    Ok(Json(super::jobs_csv::job_json(&job, &accounts)))
}

async fn job_delete(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, WebError> {
    state
        .admin(caller.actor())
        .delete_job(&id)
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) fn email_json(a: &crate::store::accounts::Account) -> Value {
    json!({
        "id": a.id,
        "provider": a.provider.as_str(),
        "smtp_host": a.smtp_host,
        "smtp_port": a.smtp_port,
        "smtp_security": a.smtp_security,
        "sender": a.sender,
        "mailbox": a.mailbox,
        "is_default": a.is_default,
    })
}

async fn email_get(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(p): Path<String>,
) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ManageEmail)?;
    Ok(Json(email_json(
        &state.store.account_for(provider(&p)?).await?,
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmailBody {
    smtp_host: String,
    smtp_port: u16,
    smtp_security: String,
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    is_default: bool,
}

pub(super) async fn email_save(
    state: &AppState,
    caller: &ApiCaller,
    id: i64,
    b: EmailBody,
) -> Result<Response, WebError> {
    let input = EmailInput {
        smtp_host: b.smtp_host,
        smtp_port: b.smtp_port.to_string(),
        smtp_security: b.smtp_security,
        sender: b.sender.unwrap_or_default(),
        is_default: b.is_default,
    };
    let saved = state.admin(caller.actor()).save_email(id, &input).await;
    super::api::settings_saved(saved.map(|a| email_json(&a)))
}

async fn email_put(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(p): Path<String>,
    ApiJson(b): ApiJson<EmailBody>,
) -> Result<Response, WebError> {
    caller.require(Permission::ManageEmail)?;
    let id = super::api::default_of(&state, &caller, &p).await?;
    email_save(&state, &caller, id, b).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestBody {
    to: String,
}

/// Queues the test e-mail, written in the language the request's
/// Accept-Language asks for (English without one).
pub(super) async fn test_send(
    state: &AppState,
    caller: &ApiCaller,
    headers: &HeaderMap,
    id: i64,
    b: TestBody,
) -> Result<Response, WebError> {
    let tr = Tr::new(Locale::negotiate(
        None,
        headers.get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()),
    ));
    let id = state
        .admin(caller.actor())
        .send_test(&state.live(), id, &b.to, &tr)
        .await
        .map_err(refused)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": id }))).into_response())
}

async fn test_email(
    State(state): State<AppState>,
    caller: ApiCaller,
    headers: HeaderMap,
    Path(p): Path<String>,
    ApiJson(b): ApiJson<TestBody>,
) -> Result<Response, WebError> {
    let id = super::api::default_of(&state, &caller, &p).await?;
    test_send(&state, &caller, &headers, id, b).await
}

async fn provider_of(state: &AppState, id: Option<i64>) -> Option<&'static str> {
    match id {
        Some(id) => state
            .store
            .account(id)
            .await
            .ok()
            .map(|a| a.provider.as_str()),
        None => None,
    }
}

async fn submitters_list(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ManageEmail)?;
    let mut out = Vec::new();
    for s in state.store.submitters().await? {
        out.push(json!({ "name": s.name, "provider": provider_of(&state, s.account_id).await, "created_at": s.created_at }));
    }
    Ok(Json(json!(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitterBody {
    name: String,
    password: String,
    #[serde(default)]
    provider: Option<String>,
}

async fn submitters_add(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(b): ApiJson<SubmitterBody>,
) -> Result<Response, WebError> {
    let provider = b.provider.filter(|p| !p.is_empty());
    state
        .admin(caller.actor())
        .add_submitter(&b.name, b.password, provider.as_deref().unwrap_or(""))
        .await
        .map_err(refused)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": b.name, "provider": provider })),
    )
        .into_response())
}

async fn submitters_delete(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<StatusCode, WebError> {
    state
        .admin(caller.actor())
        .delete_submitter(&name)
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn allowlist_list(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ManageEmail)?;
    let mut out = Vec::new();
    for e in state.store.allowlist().await? {
        out.push(json!({ "cidr": e.cidr, "provider": provider_of(&state, e.account_id).await, "created_at": e.created_at }));
    }
    Ok(Json(json!(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowBody {
    cidr: String,
    #[serde(default)]
    provider: Option<String>,
}

async fn allowlist_add(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(b): ApiJson<AllowBody>,
) -> Result<Response, WebError> {
    let provider = b.provider.filter(|p| !p.is_empty());
    let cidr = state
        .admin(caller.actor())
        .add_allow_entry(&b.cidr, provider.as_deref().unwrap_or(""))
        .await
        .map_err(refused)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "cidr": cidr, "provider": provider })),
    )
        .into_response())
}

/// The entry is the CIDR with `/` written as `_` or percent-encoded.
async fn allowlist_delete(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(entry): Path<String>,
) -> Result<StatusCode, WebError> {
    caller.require(Permission::ManageEmail)?;
    let cidr = Cidr::parse(&entry.replace('_', "/"))
        .map_err(|e| refused(Problem::Cidr(e).into()))?
        .to_string();
    state
        .admin(caller.actor())
        .delete_allow_entry(&cidr)
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn ca_list(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, WebError> {
    caller.require(Permission::ManageNetwork)?;
    Ok(Json(json!(state.store.ca_certificates().await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaBody {
    pem: String,
}

async fn ca_add(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(b): ApiJson<CaBody>,
) -> Result<Response, WebError> {
    match state
        .admin(caller.actor())
        .add_cas(&state.live(), &b.pem)
        .await
    {
        Ok(n) => Ok((
            StatusCode::CREATED,
            Json(json!({ "added": n, "certificates": state.store.ca_certificates().await? })),
        )
            .into_response()),
        // A refused upload, also one already there, is the request's fault.
        Err(e) => match form_errors(e)?.into_iter().next() {
            Some(reason) => Err(WebError::BadRequest(reason)),
            None => Err(WebError::Internal("a refusal without a reason".into())),
        },
    }
}

async fn ca_delete(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<StatusCode, WebError> {
    state
        .admin(caller.actor())
        .delete_ca(&state.live(), id)
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}
