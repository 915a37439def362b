//! Microsoft identity platform (Entra ID) v2.0 endpoints: OpenID discovery,
//! the device authorization grant (RFC 8628) and refresh with rotation, plus
//! the `/devicelogin` page where a person (or a browser test) approves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use rand::Rng as _;
use serde_json::json;

use crate::Error;
use crate::http::{esc, page, read_form, read_token_form, token_fault};
use crate::state::{
    DeviceGrant, DeviceStatus, Provider, RefreshChoice, RefreshStatus, Shared, form_get, guid_for,
    make_id_token, random_token, unix_now,
};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Tenant id Microsoft uses in tokens of personal (consumer) accounts.
const CONSUMERS_TID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

fn known_tenant(shared: &Shared, tenant: &str) -> bool {
    let app_tenant = shared
        .lock()
        .app
        .apps
        .values()
        .any(|a| a.tenant.eq_ignore_ascii_case(tenant));
    app_tenant
        || matches!(tenant, "common" | "organizations" | "consumers")
        || shared
            .opts
            .tenants
            .iter()
            .any(|t| t.eq_ignore_ascii_case(tenant))
}

/// The `tid` claim for a tenant segment.
fn tenant_id(tenant: &str) -> String {
    match tenant {
        "consumers" => CONSUMERS_TID.to_owned(),
        t if t.len() == 36 && t.bytes().filter(|&b| b == b'-').count() == 4 => t.to_owned(),
        t => guid_for(t),
    }
}

/// Microsoft's error body: `error`, `error_description` starting with the
/// AADSTS code, `error_codes`, and the ids real responses carry.
pub(crate) fn ms_error(status: StatusCode, error: &str, code: u32, text: &str) -> Response {
    let ts = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default();
    let trace = guid_for(&random_token(16));
    let corr = guid_for(&random_token(16));
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}"
        ),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": corr,
    });
    (status, Json(body)).into_response()
}

fn bad(error: &str, code: u32, text: &str) -> Response {
    ms_error(StatusCode::BAD_REQUEST, error, code, text)
}

fn tenant_not_found(error: &str, tenant: &str) -> Response {
    bad(
        error,
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

fn missing(param: &str) -> Response {
    bad(
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{param}'."),
    )
}

/// `Some(error response)` when the client is missing or not registered.
fn check_client(shared: &Shared, tenant: &str, client_id: Option<&str>) -> Option<Response> {
    let Some(client_id) = client_id else {
        return Some(missing("client_id"));
    };
    if client_id != shared.opts.ms_client_id {
        return Some(bad(
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        ));
    }
    None
}

pub(crate) async fn discovery(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
) -> Response {
    if !known_tenant(&shared, &tenant) {
        return tenant_not_found("invalid_tenant", &tenant);
    }
    let base = &shared.base_url;
    let issuer_tid = match tenant.as_str() {
        "common" | "organizations" => "{tenantid}".to_owned(),
        t => tenant_id(t),
    };
    Json(json!({
        "issuer": format!("{base}/{issuer_tid}/v2.0"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "preferred_username", "email", "name"],
        "tenant_region_scope": null,
        "cloud_instance_name": "microsoftonline.com",
    }))
    .into_response()
}

/// User codes as Microsoft shows them: 9 characters without look-alikes.
fn new_user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..9)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// People type codes in any case, with or without a dash or spaces.
pub(crate) fn normalize_user_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

pub(crate) async fn devicecode(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    req: Request,
) -> Response {
    if !known_tenant(&shared, &tenant) {
        return tenant_not_found("invalid_request", &tenant);
    }
    let form = read_form(req).await;
    if let Some(resp) = check_client(&shared, &tenant, form_get(&form, "client_id")) {
        return resp;
    }
    let Some(scope) = form_get(&form, "scope").filter(|s| !s.trim().is_empty()) else {
        return missing("scope");
    };
    let device_code = format!("DAQABIQEAAAB{}", random_token(120));
    let user_code = new_user_code();
    let expires_in = shared.opts.device_code_lifetime_secs;
    let verification_uri = shared
        .opts
        .verification_uri
        .clone()
        .unwrap_or_else(|| format!("{}/devicelogin", shared.base_url));
    {
        let mut inner = shared.lock();
        inner.device_grants.insert(
            device_code.clone(),
            DeviceGrant {
                tenant: tenant.clone(),
                scope: scope.to_owned(),
                expires_at: Instant::now() + Duration::from_secs(expires_in),
                status: DeviceStatus::Pending,
            },
        );
        inner
            .user_codes
            .insert(normalize_user_code(&user_code), device_code.clone());
    }
    Json(json!({
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": verification_uri,
        "expires_in": expires_in,
        "interval": shared.opts.device_poll_interval_secs,
        "message": format!(
            "To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to authenticate."
        ),
    }))
    .into_response()
}

pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    req: Request,
) -> Response {
    if let Some(resp) = token_fault(&shared, &req).await {
        return resp;
    }
    if !known_tenant(&shared, &tenant) {
        return tenant_not_found("invalid_request", &tenant);
    }
    let form = read_token_form(req).await;
    let grant_type = form_get(&form, "grant_type");
    if grant_type == Some(DEVICE_GRANT) || grant_type == Some("device_code") {
        // Recorded before any check so tests see every poll, good or bad.
        shared.lock().device_poll_times.push(Instant::now());
    }
    // Confidential clients (app-only) are registered apart from the public client.
    if grant_type == Some("client_credentials") {
        return crate::apponly::client_credentials(&shared, &tenant, &form);
    }
    if let Some(resp) = check_client(&shared, &tenant, form_get(&form, "client_id")) {
        return resp;
    }
    match grant_type {
        Some(DEVICE_GRANT) | Some("device_code") => device_poll(&shared, &form),
        Some("refresh_token") => refresh(&shared, &form),
        None => missing("grant_type"),
        Some(other) => bad(
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
    }
}

fn device_poll(shared: &Shared, form: &[(String, String)]) -> Response {
    let Some(device_code) = form_get(form, "device_code") else {
        return missing("device_code");
    };
    let approved = {
        let mut inner = shared.lock();
        let Some(grant) = inner.device_grants.get(device_code).cloned() else {
            return bad(
                "bad_verification_code",
                70000,
                "The provided value for the input parameter 'device_code' is not valid.",
            );
        };
        if inner.slow_down_remaining > 0 {
            inner.slow_down_remaining -= 1;
            return bad(
                "slow_down",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling, more slowly.",
            );
        }
        if grant.status != DeviceStatus::Redeemed && Instant::now() >= grant.expires_at {
            return bad(
                "expired_token",
                70020,
                "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
            );
        }
        match grant.status {
            DeviceStatus::Pending => {
                return bad(
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                );
            }
            DeviceStatus::Declined => {
                return bad(
                    "authorization_declined",
                    70000,
                    "The user declined the authentication request.",
                );
            }
            DeviceStatus::Redeemed => {
                return bad(
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                );
            }
            DeviceStatus::Approved { mailbox } => {
                if let Some(g) = inner.device_grants.get_mut(device_code) {
                    g.status = DeviceStatus::Redeemed;
                }
                let scope = consented(&inner.withheld_permissions, &grant.scope);
                (mailbox, scope, grant.tenant)
            }
        }
    };
    let (mailbox, scope, grant_tenant) = approved;
    token_response(shared, &mailbox, &scope, &grant_tenant, true)
}

/// `scope` without the permissions nobody consented to.
fn consented(withheld: &[String], scope: &str) -> String {
    scope
        .split_whitespace()
        .filter(|s| {
            let name = s.rsplit('/').next().unwrap_or(s);
            !withheld.iter().any(|w| w.eq_ignore_ascii_case(name))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope
        .split_whitespace()
        .any(|s| s.eq_ignore_ascii_case(wanted))
}

/// Issues tokens and renders Microsoft's success body. A refresh token comes
/// only with `offline_access`, an id_token only with `openid`, as at Microsoft.
fn token_response(
    shared: &Shared,
    mailbox: &str,
    scope: &str,
    tenant: &str,
    new_refresh: bool,
) -> Response {
    let client_id = shared.opts.ms_client_id.clone();
    let choice = if new_refresh && has_scope(scope, "offline_access") {
        RefreshChoice::New
    } else {
        RefreshChoice::None
    };
    let (access, refresh) = shared.issue_tokens(
        Provider::Microsoft,
        mailbox,
        scope,
        &client_id,
        tenant,
        choice,
    );
    let lifetime = shared.opts.access_token_lifetime_secs;
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access,
    });
    if let Some(rt) = refresh {
        body["refresh_token"] = json!(rt);
    }
    if has_scope(scope, "openid") {
        let tid = tenant_id(tenant);
        let now = unix_now();
        body["id_token"] = json!(make_id_token(json!({
            "aud": client_id,
            "iss": format!("{}/{tid}/v2.0", shared.base_url),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": mailbox.split('@').next().unwrap_or(mailbox),
            "oid": guid_for(mailbox),
            "preferred_username": mailbox,
            "email": mailbox,
            "sub": guid_for(&format!("sub:{mailbox}")),
            "tid": tid,
            "ver": "2.0",
        })));
    }
    Json(body).into_response()
}

fn refresh(shared: &Shared, form: &[(String, String)]) -> Response {
    let Some(presented) = form_get(form, "refresh_token") else {
        return missing("refresh_token");
    };
    let (mailbox, scope, grant_tenant) = {
        let mut inner = shared.lock();
        let Some(rt) = inner
            .refresh_tokens
            .get(presented)
            .filter(|rt| rt.provider == Provider::Microsoft)
            .cloned()
        else {
            return bad(
                "invalid_grant",
                9002313,
                "Invalid request. Request is malformed or invalid.",
            );
        };
        match rt.status {
            RefreshStatus::Revoked => {
                return bad(
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on a previous date and the TokensValidFrom date for this user has since moved.",
                );
            }
            RefreshStatus::Rotated => {
                inner.refresh_refused += 1;
                return bad(
                    "invalid_grant",
                    70000,
                    "Provided grant is invalid or malformed. The refresh token has already been redeemed.",
                );
            }
            RefreshStatus::Active => {}
        }
        // Asking a refresh for a permission nobody consented to fails.
        let asked = form_get(form, "scope").unwrap_or("");
        if asked.split_whitespace().count()
            != consented(&inner.withheld_permissions, asked)
                .split_whitespace()
                .count()
        {
            return bad(
                "invalid_grant",
                65001,
                "AADSTS65001: The user or administrator has not consented to use the application. Send an interactive authorization request for this user and resource.",
            );
        }
        if let Some(r) = inner.refresh_tokens.get_mut(presented) {
            r.status = RefreshStatus::Rotated;
        }
        // Microsoft lets a refresh ask for a (narrower or other) scope.
        let scope = form_get(form, "scope")
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
            .unwrap_or(rt.scope);
        (rt.mailbox, scope, rt.tenant)
    };
    // The rotated grant keeps offline access whatever scope was asked.
    let scope = if has_scope(&scope, "offline_access") {
        scope
    } else {
        format!("{scope} offline_access")
    };
    let resp = token_response(shared, &mailbox, &scope, &grant_tenant, true);
    if resp.status().is_success() {
        shared.lock().refresh_count += 1;
    }
    resp
}

/// The user's approval, from the page or the test hook.
pub(crate) fn approve(shared: &Shared, user_code: &str, mailbox: &str) -> Result<(), Error> {
    set_status(
        shared,
        user_code,
        DeviceStatus::Approved {
            mailbox: mailbox.to_owned(),
        },
    )
}

pub(crate) fn decline(shared: &Shared, user_code: &str) -> Result<(), Error> {
    set_status(shared, user_code, DeviceStatus::Declined)
}

fn set_status(shared: &Shared, user_code: &str, status: DeviceStatus) -> Result<(), Error> {
    let mut inner = shared.lock();
    let key = normalize_user_code(user_code);
    let device_code = inner
        .user_codes
        .get(&key)
        .cloned()
        .ok_or_else(|| Error::UnknownUserCode(user_code.to_owned()))?;
    let grant = inner
        .device_grants
        .get_mut(&device_code)
        .ok_or_else(|| Error::UnknownUserCode(user_code.to_owned()))?;
    if Instant::now() >= grant.expires_at {
        return Err(Error::UserCodeExpired(user_code.to_owned()));
    }
    if grant.status != DeviceStatus::Pending {
        return Err(Error::UserCodeNotPending(user_code.to_owned()));
    }
    grant.status = status;
    Ok(())
}

pub(crate) fn expire_all(shared: &Shared) {
    let now = Instant::now();
    for g in shared.lock().device_grants.values_mut() {
        g.expires_at = now;
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct DeviceLoginQuery {
    #[serde(default)]
    code: Option<String>,
}

fn devicelogin_form(code: &str, notice: &str) -> String {
    page(
        "Enter code",
        &format!(
            r#"<h1>Enter code</h1>
<p>Enter the code displayed on your app or device.</p>
{notice}
<form method="post" action="/devicelogin">
<label>Code <input id="otc" name="otc" type="text" value="{code}" autocomplete="off"></label><br>
<label>Account <input id="mailbox" name="mailbox" type="email" placeholder="someone@example.com"></label><br>
<button id="approve" type="submit" name="action" value="approve">Approve</button>
<button id="decline" type="submit" name="action" value="decline">Decline</button>
</form>"#,
            code = esc(code),
        ),
    )
}

pub(crate) async fn devicelogin_page(Query(q): Query<DeviceLoginQuery>) -> Html<String> {
    Html(devicelogin_form(q.code.as_deref().unwrap_or(""), ""))
}

pub(crate) async fn devicelogin_submit(
    State(shared): State<Arc<Shared>>,
    req: Request,
) -> Response {
    let form = read_form(req).await;
    let code = form_get(&form, "otc").unwrap_or("");
    let mailbox = form_get(&form, "mailbox").unwrap_or("").trim();
    let action = form_get(&form, "action").unwrap_or("approve");
    let result = if action == "decline" {
        decline(&shared, code)
    } else if mailbox.is_empty() {
        let notice = r#"<p id="error" role="alert">Enter the account to sign in with.</p>"#;
        return (
            StatusCode::BAD_REQUEST,
            Html(devicelogin_form(code, notice)),
        )
            .into_response();
    } else {
        approve(&shared, code, mailbox)
    };
    match result {
        Ok(()) if action == "decline" => Html(page(
            "Sign-in declined",
            r#"<h1 id="result">Sign-in declined</h1><p>You have declined to sign in to the application on your device. You may now close this window.</p>"#,
        ))
        .into_response(),
        Ok(()) => Html(page(
            "Signed in",
            &format!(
                r#"<h1 id="result">You have signed in</h1><p>{} is signed in to the application on your device. You may now close this window.</p>"#,
                esc(mailbox)
            ),
        ))
        .into_response(),
        Err(e) => {
            let notice = format!(
                r#"<p id="error" role="alert">That code didn't work. Check the code and try again. ({})</p>"#,
                esc(&e.to_string())
            );
            (StatusCode::BAD_REQUEST, Html(devicelogin_form(code, &notice))).into_response()
        }
    }
}
