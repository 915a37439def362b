//! Google OAuth 2.0 for desktop apps: authorization code grant with PKCE
//! (RFC 7636) and a loopback redirect, token exchange, refresh without
//! rotation, and revocation. The consent page is plain HTML so a browser
//! test can click through it like a person.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::Digest as _;

use crate::Error;
use crate::http::{esc, page, read_form, read_token_form, token_fault};
use crate::state::{
    GoogleCode, Provider, RefreshChoice, RefreshStatus, Shared, form_get, guid_for, make_id_token,
    random_token, unix_now,
};

const ISSUER: &str = "https://accounts.google.com";

pub(crate) async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    let base = &shared.base_url;
    Json(json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{base}/o/oauth2/v2/auth"),
        "device_authorization_endpoint": format!("{base}/device/code"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/v1/userinfo"),
        "revocation_endpoint": format!("{base}/revoke"),
        "jwks_uri": format!("{base}/oauth2/v3/certs"),
        "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "name", "sub"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "grant_types_supported": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
    }))
    .into_response()
}

/// A validated authorization request.
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    code_challenge: String,
    login_hint: Option<String>,
}

/// Why an authorization request is refused: Google shows an error page and
/// does not redirect for these.
struct AuthReject {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl AuthReject {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    fn into_response(self) -> Response {
        let body = page(
            &format!("Error {}: {}", self.status.as_u16(), self.error),
            &format!(
                r#"<h1>Access blocked: authorization error</h1>
<p id="error">Error {}: {}</p>
<p id="error_description">{}</p>"#,
                self.status.as_u16(),
                self.error,
                esc(&self.description)
            ),
        );
        (self.status, Html(body)).into_response()
    }

    fn into_error(self) -> Error {
        Error::AuthorizationRejected {
            error: self.error.to_owned(),
            description: self.description,
        }
    }
}

/// Loopback redirect URIs only, as for Google "Desktop app" clients.
fn loopback_redirect(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    url.scheme() == "http"
        && matches!(
            url.host_str(),
            Some("127.0.0.1") | Some("localhost") | Some("[::1]")
        )
        && url.fragment().is_none()
}

fn validate(shared: &Shared, params: &[(String, String)]) -> Result<AuthRequest, AuthReject> {
    let get = |k: &str| form_get(params, k).map(str::to_owned);
    let client_id = get("client_id").unwrap_or_default();
    if client_id != shared.opts.google_client_id {
        return Err(AuthReject::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        ));
    }
    let redirect_uri = get("redirect_uri").unwrap_or_default();
    if !loopback_redirect(&redirect_uri) {
        return Err(AuthReject::new(
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch",
            format!(
                "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. redirect_uri={redirect_uri}"
            ),
        ));
    }
    if get("response_type").as_deref() != Some("code") {
        return Err(AuthReject::new(
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
            "Only response_type=code is supported.",
        ));
    }
    let scope = get("scope").unwrap_or_default();
    if scope.trim().is_empty() {
        return Err(AuthReject::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: scope",
        ));
    }
    let code_challenge = get("code_challenge").unwrap_or_default();
    if code_challenge.is_empty() || get("code_challenge_method").as_deref() != Some("S256") {
        // Google also takes "plain"; the fake insists on S256 as hikyaku must.
        return Err(AuthReject::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code_challenge with code_challenge_method=S256 is required.",
        ));
    }
    Ok(AuthRequest {
        client_id,
        redirect_uri,
        scope,
        state: get("state"),
        code_challenge,
        login_hint: get("login_hint"),
    })
}

fn redirect_with(req: &AuthRequest, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(&req.redirect_uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        // Validated earlier; kept total for safety.
        Err(_) => req.redirect_uri.clone(),
    }
}

/// Google lists granted scopes in its own order; adding `email` implies the
/// userinfo scope. Here the scope is simply echoed back.
fn grant(shared: &Shared, req: &AuthRequest, email: &str) -> String {
    let code = format!("4/0A{}", random_token(70));
    shared.lock().google_codes.insert(
        code.clone(),
        GoogleCode {
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            scope: req.scope.clone(),
            code_challenge: req.code_challenge.clone(),
            email: email.to_owned(),
            expires_at: Instant::now() + Duration::from_secs(shared.opts.google_code_lifetime_secs),
            used: false,
        },
    );
    let mut pairs = Vec::new();
    if let Some(s) = &req.state {
        pairs.push(("state", s.as_str()));
    }
    pairs.push(("code", code.as_str()));
    pairs.push(("scope", req.scope.as_str()));
    redirect_with(req, &pairs)
}

fn deny(req: &AuthRequest) -> String {
    let mut pairs = vec![("error", "access_denied")];
    if let Some(s) = &req.state {
        pairs.push(("state", s.as_str()));
    }
    redirect_with(req, &pairs)
}

fn url_params(authorization_url: &str) -> Result<Vec<(String, String)>, Error> {
    let url = url::Url::parse(authorization_url)
        .map_err(|e| Error::BadUrl(format!("{authorization_url}: {e}")))?;
    Ok(url.query_pairs().into_owned().collect())
}

/// Test hook: the user allows access as `email`.
pub(crate) fn consent(
    shared: &Shared,
    authorization_url: &str,
    email: &str,
) -> Result<String, Error> {
    let params = url_params(authorization_url)?;
    let req = validate(shared, &params).map_err(AuthReject::into_error)?;
    Ok(grant(shared, &req, email))
}

/// Test hook: the user clicks "Cancel".
pub(crate) fn consent_denied(shared: &Shared, authorization_url: &str) -> Result<String, Error> {
    let params = url_params(authorization_url)?;
    let req = validate(shared, &params).map_err(AuthReject::into_error)?;
    Ok(deny(&req))
}

pub(crate) fn expire_codes(shared: &Shared) {
    let now = Instant::now();
    for c in shared.lock().google_codes.values_mut() {
        c.expires_at = now;
    }
}

/// Fields of the authorization request carried through the consent form.
const CARRIED: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "access_type",
    "prompt",
    "state",
    "code_challenge",
    "code_challenge_method",
    "login_hint",
];

pub(crate) async fn auth_page(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let params: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let auth = match validate(&shared, &params) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let hidden: String = params
        .iter()
        .filter(|(k, _)| CARRIED.contains(&k.as_str()))
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                esc(k),
                esc(v)
            )
        })
        .collect();
    let body = format!(
        r#"<h1>Sign in with Google</h1>
<p>fakecloud wants to access your Google Account</p>
<p id="scopes">{scope}</p>
<form method="post" action="/o/oauth2/v2/auth">
{hidden}<label>Email <input id="email" name="email" type="email" value="{hint}"></label><br>
<button id="deny" type="submit" name="action" value="deny">Cancel</button>
<button id="allow" type="submit" name="action" value="allow">Allow</button>
</form>"#,
        scope = esc(&auth.scope),
        hint = esc(auth.login_hint.as_deref().unwrap_or("")),
    );
    Html(page("Sign in - Google Accounts", &body)).into_response()
}

pub(crate) async fn auth_submit(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let form = read_form(req).await;
    let auth = match validate(&shared, &form) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let location = if form_get(&form, "action") == Some("deny") {
        deny(&auth)
    } else {
        let email = form_get(&form, "email").unwrap_or("").trim();
        if email.is_empty() {
            return (
                StatusCode::BAD_REQUEST,
                Html(page("Sign in", "<p id=\"error\">Enter an email</p>")),
            )
                .into_response();
        }
        grant(&shared, &auth, email)
    };
    let mut resp = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn g_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn invalid_grant(description: &str) -> Response {
    g_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

pub(crate) async fn token(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if let Some(resp) = token_fault(&shared, &req).await {
        return resp;
    }
    let form = read_token_form(req).await;
    if form_get(&form, "grant_type") == Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return crate::apponly::jwt_bearer(&shared, &form);
    }
    let client_ok = form_get(&form, "client_id") == Some(shared.opts.google_client_id.as_str())
        && form_get(&form, "client_secret") == Some(shared.opts.google_client_secret.as_str());
    if !client_ok {
        return g_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    match form_get(&form, "grant_type") {
        Some("authorization_code") => exchange_code(&shared, &form),
        Some("refresh_token") => refresh(&shared, &form),
        Some(_) => g_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        ),
        None => g_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: grant_type",
        ),
    }
}

fn exchange_code(shared: &Shared, form: &[(String, String)]) -> Response {
    let Some(code) = form_get(form, "code") else {
        return g_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: code",
        );
    };
    let entry = {
        let mut inner = shared.lock();
        let Some(entry) = inner.google_codes.get_mut(code) else {
            return invalid_grant("Malformed auth code.");
        };
        if entry.used || Instant::now() >= entry.expires_at {
            return invalid_grant("Bad Request");
        }
        if form_get(form, "redirect_uri") != Some(entry.redirect_uri.as_str()) {
            return g_error(
                StatusCode::BAD_REQUEST,
                "redirect_uri_mismatch",
                "Bad Request",
            );
        }
        let verifier = form_get(form, "code_verifier").unwrap_or("");
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        if challenge != entry.code_challenge {
            return invalid_grant("code_verifier mismatch");
        }
        // Single use, whatever happens next.
        entry.used = true;
        entry.clone()
    };
    let (access, refresh) = shared.issue_tokens(
        Provider::Google,
        &entry.email,
        &entry.scope,
        &entry.client_id,
        "",
        RefreshChoice::New,
    );
    let mut body = success_body(shared, &access, &entry.scope, &entry.email);
    if let Some(rt) = refresh {
        body["refresh_token"] = json!(rt);
    }
    Json(body).into_response()
}

fn success_body(shared: &Shared, access: &str, scope: &str, email: &str) -> serde_json::Value {
    let mut body = json!({
        "access_token": access,
        "expires_in": shared.opts.access_token_lifetime_secs,
        "scope": scope,
        "token_type": "Bearer",
    });
    if scope.split_whitespace().any(|s| s == "openid") {
        let now = unix_now();
        body["id_token"] = json!(make_id_token(json!({
            "iss": ISSUER,
            "azp": shared.opts.google_client_id,
            "aud": shared.opts.google_client_id,
            "sub": guid_for(email).replace('-', ""),
            "email": email,
            "email_verified": true,
            "iat": now,
            "exp": now + 3600,
        })));
    }
    body
}

fn refresh(shared: &Shared, form: &[(String, String)]) -> Response {
    let Some(presented) = form_get(form, "refresh_token") else {
        return g_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: refresh_token",
        );
    };
    let rt = {
        let inner = shared.lock();
        match inner.refresh_tokens.get(presented) {
            Some(rt) if rt.provider == Provider::Google && rt.status == RefreshStatus::Active => {
                rt.clone()
            }
            _ => return invalid_grant("Token has been expired or revoked."),
        }
    };
    let (access, _) = shared.issue_tokens(
        Provider::Google,
        &rt.mailbox,
        &rt.scope,
        &rt.client_id,
        "",
        RefreshChoice::Keep(presented.to_owned()),
    );
    shared.lock().refresh_count += 1;
    Json(success_body(shared, &access, &rt.scope, &rt.mailbox)).into_response()
}

pub(crate) async fn revoke(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let query_token: Option<String> = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let form = read_form(req).await;
    let Some(token) = form_get(&form, "token").map(str::to_owned).or(query_token) else {
        return g_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: token",
        );
    };
    let mut inner = shared.lock();
    // Revoking either token of a grant ends the whole grant, as at Google.
    let grant = if inner
        .refresh_tokens
        .get(&token)
        .is_some_and(|rt| rt.provider == Provider::Google && rt.status == RefreshStatus::Active)
    {
        Some(token.clone())
    } else {
        match inner.access_tokens.get_mut(&token) {
            Some(at) if at.provider == Provider::Google && !at.revoked => {
                at.revoked = true;
                Some(at.grant.clone().unwrap_or_default())
            }
            _ => None,
        }
    };
    match grant {
        Some(g) => {
            if !g.is_empty() {
                Shared::revoke_grant(&mut inner, &g);
            }
            (StatusCode::OK, Json(json!({}))).into_response()
        }
        None => g_error(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "Token expired or revoked",
        ),
    }
}
