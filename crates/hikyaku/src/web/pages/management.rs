//! Management → Date/Time and CA Certificates.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;

use super::{Chrome, display_offset, fmt_time};
use crate::roles::Permission;
use crate::web::AppState;
use crate::web::auth::Ui;
use crate::web::errors::WebError;
use crate::web::i18n::{Msg, render_all};

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

use crate::admin::network::ZONES;

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
        .setting(crate::admin::network::TIME_ZONE_SETTING)
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
        .map(|(z, _)| zone_name(&ui.tr, z))
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
            .map(|(z, _)| (z.to_string(), zone_name(&ui.tr, z)))
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
    state.admin(ui.actor()).set_time_zone(&form.zone).await?;
    Ok(super::done("/settings/management/datetime", "saved"))
}

pub struct CaView {
    pub id: i64,
    pub subject: String,
    pub issuer: String,
    pub validity: String,
    pub fingerprint: String,
    /// Also anchors the Google account (an Administrator added it).
    pub for_google: bool,
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
            for_google: c.for_google,
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

/// Largest CA upload taken (a file and the paste box together): the PEM
/// text limit twice over, so that a file at the limit still arrives and is
/// refused with the limit named.
pub const CA_UPLOAD_LIMIT: usize = 2 * crate::admin::trust::MAX_PEM_TEXT + 64 * 1024;

/// A chosen certificate file as PEM text: PEM as it is, anything else
/// taken as one DER certificate (the store's check then refuses what is
/// not one).
fn file_as_pem(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN") => text.to_string(),
        _ => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
            for line in b64.as_bytes().chunks(64) {
                pem.push_str(&String::from_utf8_lossy(line));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
            pem
        }
    }
}

fn upload_unreadable() -> WebError {
    WebError::BadRequest(Msg::new("ca-err-upload"))
}

/// The add form: a multipart upload (a PEM or DER file and the paste box)
/// from the page, or the paste box alone as an ordinary form.
async fn read_ca_form(state: &AppState, req: Request) -> Result<CaForm, WebError> {
    let multipart = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let Form(form) = Form::<CaForm>::from_request(req, state)
            .await
            .map_err(|_| upload_unreadable())?;
        return Ok(form);
    }
    let mut form = Multipart::from_request(req, state)
        .await
        .map_err(|_| upload_unreadable())?;
    let mut out = CaForm::default();
    let mut file = String::new();
    while let Some(field) = form.next_field().await.map_err(|_| upload_unreadable())? {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(|_| upload_unreadable())?;
        match name.as_str() {
            "csrf" => out.csrf = String::from_utf8_lossy(&bytes).trim().to_string(),
            "pem" => out.pem = String::from_utf8_lossy(&bytes).to_string(),
            "file" if !bytes.is_empty() => file = file_as_pem(&bytes),
            _ => {}
        }
    }
    if !file.is_empty() {
        if !out.pem.trim().is_empty() {
            out.pem.push('\n');
        }
        out.pem.push_str(&file);
    }
    Ok(out)
}

pub async fn ca_add(
    State(state): State<AppState>,
    ui: Ui,
    req: Request,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageNetwork)?;
    let form = read_ca_form(&state, req).await?;
    ui.check_csrf(&form.csrf)?;
    match state
        .admin(ui.actor())
        .add_cas(&state.live(), &form.pem)
        .await
    {
        Ok(_) => Ok(super::done(CA_PAGE, "saved")),
        Err(e) => {
            let errors = render_all(&ui.tr, &crate::web::refusals::form_errors(e)?);
            render_ca(&state, &ui, None, errors).await
        }
    }
}

pub async fn ca_delete(
    State(state): State<AppState>,
    ui: Ui,
    Form(form): Form<CaForm>,
) -> Result<Response, WebError> {
    ui.require(Permission::ManageNetwork)?;
    ui.check_csrf(&form.csrf)?;
    state
        .admin(ui.actor())
        .delete_ca(&state.live(), form.id)
        .await?;
    Ok(super::done(CA_PAGE, "saved"))
}

/// A display time zone's name in the page's language, e.g. "UTC+09:00 東京、ソウル".
/// The cities are a message of their own (`zone-p0900`); the offset is not
/// translated.
pub fn zone_name(tr: &crate::web::i18n::Tr, zone: &str) -> String {
    let key = format!(
        "zone-{}",
        zone.replace('+', "p").replace('-', "m").replace(':', "")
    );
    let utc = if zone == "+00:00" {
        "UTC".to_string()
    } else {
        format!("UTC{zone}")
    };
    match tr.try_t(&key) {
        Some(cities) if !cities.is_empty() => format!("{utc} {cities}"),
        _ => utc,
    }
}
