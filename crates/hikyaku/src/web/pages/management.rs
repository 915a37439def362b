//! Management → Date/Time and CA Certificates.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Chrome, display_offset, fmt_time, parse_offset};
use crate::roles::Permission;
use crate::store::StoreError;
use crate::store::ca::NewCa;
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;
use crate::web::i18n::Msg;
use crate::web::messages;

#[derive(Template, WebTemplate)]
#[template(path = "datetime.html")]
struct DateTimePage {
    c: Chrome,
    warnings: Vec<String>,
    now_utc: String,
    now_local: String,
    local_label: String,
    /// The display zone's offset from UTC (its row is left out when 0).
    offset_secs: i32,
    sync: String,
    skews: Vec<(String, String)>,
    zones: Vec<(String, String)>,
    zone: String,
}

/// Display time zones offered: whole and half-hour offsets, named by a city.
const ZONES: &[(&str, &str)] = &[
    ("-08:00", "UTC-08:00 (Los Angeles)"),
    ("-05:00", "UTC-05:00 (New York)"),
    ("+00:00", "UTC"),
    ("+01:00", "UTC+01:00 (Berlin, Paris)"),
    ("+05:30", "UTC+05:30 (Kolkata)"),
    ("+08:00", "UTC+08:00 (Singapore, Shanghai)"),
    ("+09:00", "UTC+09:00 (Tokyo, Seoul)"),
    ("+10:00", "UTC+10:00 (Sydney)"),
];

/// Whether the operating system says its clock is NTP-synchronized.
async fn clock_synchronized() -> Option<bool> {
    if tokio::fs::metadata("/run/systemd/timesync/synchronized")
        .await
        .is_ok()
    {
        return Some(true);
    }
    let run = tokio::process::Command::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized", "--value"])
        .output();
    match tokio::time::timeout(std::time::Duration::from_secs(2), run).await {
        Ok(Ok(out)) if out.status.success() => match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

async fn render_datetime(
    state: &AppState,
    ui: &Ui,
    notice: Option<String>,
) -> Result<Response, WebError> {
    let offset = display_offset(state).await;
    let now = state.clock.unix();
    let accounts = state.store.accounts().await?;
    let zone = state
        .store
        .setting("display_time_zone")
        .await?
        .unwrap_or_else(|| "+00:00".into());
    let sync = match clock_synchronized().await {
        Some(true) => ui.tr.t("datetime-sync-yes"),
        Some(false) => ui.tr.t("datetime-sync-no"),
        None => ui.tr.t("datetime-sync-unknown"),
    };
    let skews = accounts
        .iter()
        .filter_map(|a| {
            a.clock_skew_secs.map(|s| {
                (
                    ui.tr.t(&format!("provider-{}", a.provider.as_str())),
                    super::signed_seconds(&ui.tr, s),
                )
            })
        })
        .collect();
    let zone_label = ZONES
        .iter()
        .find(|(z, _)| *z == zone)
        .map(|(_, l)| l.to_string())
        .unwrap_or_else(|| zone.clone());
    Ok(DateTimePage {
        c: Chrome::for_ui(ui, state, "/settings/management/datetime").with_notice(notice),
        warnings: super::skew_warnings(&ui.tr, &accounts),
        now_utc: fmt_time(now, time::UtcOffset::UTC),
        now_local: fmt_time(now, offset),
        offset_secs: offset.whole_seconds(),
        local_label: ui.tr.args("datetime-local", &[("zone", zone_label)]),
        sync,
        skews,
        zones: ZONES
            .iter()
            .map(|(z, l)| (z.to_string(), l.to_string()))
            .collect(),
        zone,
    }
    .into_response())
}

pub async fn datetime_page(
    State(state): State<AppState>,
    ui: Ui,
    Query(q): Query<super::DoneQuery>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageNetwork)?;
    render_datetime(&state, &ui, q.notice(&ui.tr)).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ZoneForm {
    csrf: String,
    zone: String,
}

pub async fn datetime_submit(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<ZoneForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageNetwork)?;
    ui.check_csrf(&form.csrf)?;
    if parse_offset(&form.zone).is_none() || !ZONES.iter().any(|(z, _)| *z == form.zone) {
        return Err(WebError::BadRequest(
            Msg::new("err-unknown-time-zone").arg("zone", &form.zone),
        ));
    }
    state
        .store
        .set_setting("display_time_zone", &form.zone)
        .await?;
    state
        .audit(&ui.name, &ui.source, "display_time_zone", &form.zone)
        .await;
    Ok(super::done("/settings/management/datetime", "saved"))
}

pub struct CaView {
    pub id: i64,
    pub subject: String,
    pub issuer: String,
    pub validity: String,
    pub fingerprint: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "ca.html")]
struct CaPage {
    c: Chrome,
    errors: Vec<String>,
    cas: Vec<CaView>,
}

async fn render_ca(
    state: &AppState,
    ui: &Ui,
    notice: Option<String>,
    errors: Vec<String>,
) -> Result<Response, WebError> {
    let offset = display_offset(state).await;
    let cas = state
        .store
        .ca_certificates()
        .await?
        .into_iter()
        .map(|c| CaView {
            id: c.id,
            subject: c.subject,
            issuer: c.issuer,
            validity: format!(
                "{} — {}",
                fmt_time(c.not_before, offset),
                fmt_time(c.not_after, offset)
            ),
            fingerprint: c.fingerprint,
        })
        .collect();
    let status = super::form_status(&errors);
    Ok((
        status,
        CaPage {
            c: Chrome::for_ui(ui, state, "/settings/management/ca-certificates")
                .with_notice(notice),
            errors,
            cas,
        },
    )
        .into_response())
}

/// The CA Certificates page.
const CA_PAGE: &str = "/settings/management/ca-certificates";

pub async fn ca_page(
    State(state): State<AppState>,
    ui: Ui,
    Query(q): Query<super::DoneQuery>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageNetwork)?;
    render_ca(&state, &ui, q.notice(&ui.tr), Vec::new()).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CaForm {
    csrf: String,
    pem: String,
    id: i64,
}

/// Adds CA certificates from PEM text: to the store and to the live trust set.
pub async fn add_cas(
    state: &AppState,
    pem: &str,
    actor: &str,
    source: &str,
) -> Result<Result<usize, Msg>, WebError> {
    let parsed = match crate::tls::parse_ca_pem(pem, state.clock.now()) {
        Ok(p) => p,
        Err(e) => return Ok(Err(messages::ca(&e))),
    };
    let new: Vec<NewCa> = parsed
        .iter()
        .map(|c| NewCa {
            fingerprint: c.sha256_fingerprint.clone(),
            subject: c.subject.clone(),
            issuer: c.issuer.clone(),
            not_before: c.not_before.unix_timestamp(),
            not_after: c.not_after.unix_timestamp(),
            der: c.der.clone(),
        })
        .collect();
    match state
        .store
        .add_ca_certificates(&new, state.clock.unix())
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(c)) => return Ok(Err(messages::conflict(&c))),
        Err(e) => return Err(e.into()),
    }
    state.reload_cas().await?;
    for c in &parsed {
        state
            .audit(
                actor,
                source,
                "ca_add",
                &format!("{} ({})", c.subject, c.sha256_fingerprint),
            )
            .await;
    }
    Ok(Ok(parsed.len()))
}

pub async fn ca_add(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<CaForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageNetwork)?;
    ui.check_csrf(&form.csrf)?;
    match add_cas(&state, &form.pem, &ui.name, &ui.source).await? {
        Ok(_) => Ok(super::done(CA_PAGE, "saved")),
        Err(e) => render_ca(&state, &ui, None, vec![e.render(&ui.tr)]).await,
    }
}

pub async fn ca_delete(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<CaForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageNetwork)?;
    ui.check_csrf(&form.csrf)?;
    let removed = state.store.delete_ca_certificate(form.id).await?;
    state.reload_cas().await?;
    state
        .audit(
            &ui.name,
            &ui.source,
            "ca_delete",
            &format!("{} ({})", removed.subject, removed.fingerprint),
        )
        .await;
    Ok(super::done(CA_PAGE, "saved"))
}
