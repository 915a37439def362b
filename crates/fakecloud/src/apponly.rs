//! App-only grants: Entra's client credentials grant (client secret, or a
//! client assertion verified against a registered certificate) and
//! Google's JWT bearer grant for service accounts (signature checked against
//! the registered key, `sub` against the domain's users and the delegation
//! list), with the error bodies both return. Tokens issued here name no
//! mailbox (Microsoft) or the delegated user (Google); Exchange refuses an
//! app token at SMTP AUTH for a mailbox the app was not granted.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::entra::ms_error;
use crate::state::{AccessToken, Provider, Shared, form_get, random_token, unix_now};

/// The scope of an app-only token for Exchange Online SMTP.
pub(crate) const MS_APP_SCOPE: &str = "https://outlook.office365.com/.default";

/// A registered confidential client (app registration).
#[derive(Debug, Clone, Default)]
pub(crate) struct App {
    pub tenant: String,
    /// (secret value, expired)
    pub secrets: Vec<(String, bool)>,
    /// `x5t#S256` → RSA public key (RFC 8017 DER) of each uploaded certificate.
    pub certificates: HashMap<String, Vec<u8>>,
}

/// A Google service account: its public keys and the scopes the domain's
/// administrator delegated to it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceAccount {
    pub public_keys: Vec<Vec<u8>>,
    pub delegated_scopes: Vec<String>,
}

/// App-only state inside [`crate::state::Inner`].
#[derive(Debug, Default)]
pub(crate) struct AppState {
    pub apps: HashMap<String, App>,
    /// (client id, lower-cased mailbox): Exchange lets the app use the mailbox.
    pub grants: HashSet<(String, String)>,
    pub service_accounts: HashMap<String, ServiceAccount>,
    /// Lower-cased users of the Workspace domain.
    pub workspace_users: HashSet<String>,
    /// Forced answer of both app-only grants: (HTTP status, error, description).
    pub forced_error: Option<(u16, String, String)>,
    /// Every app-only token request, for tests: (grant, client or issuer).
    pub requests: Vec<(String, String)>,
}

/// A certificate made for a test: PEM (certificate + key) and PKCS#12.
#[derive(Debug, Clone)]
pub struct AppCertificate {
    pub cert_pem: String,
    pub key_pem: String,
    /// The same pair as PKCS#12, protected with [`AppCertificate::PFX_PASSWORD`].
    pub pfx: Vec<u8>,
}

impl AppCertificate {
    pub const PFX_PASSWORD: &'static str = "fakecloud-pfx";
}

/// A new RSA key: (PKCS#8 DER, RSAPublicKey DER).
pub(crate) fn new_rsa_key() -> (Vec<u8>, Vec<u8>) {
    let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .unwrap_or_else(|_| unreachable!("RSA key generation does not fail"));
    let pkcs8 = pair
        .as_der()
        .map(|d| d.as_ref().to_vec())
        .unwrap_or_default();
    (pkcs8, pair.public_key().as_ref().to_vec())
}

/// A self-signed certificate valid from a year ago until `valid_days` from now.
pub(crate) fn new_certificate(
    valid_days: i64,
) -> Result<(AppCertificate, String, Vec<u8>), crate::Error> {
    let (pkcs8, public) = new_rsa_key();
    let key = rcgen::KeyPair::try_from(pkcs8.as_slice())?;
    let mut params = rcgen::CertificateParams::new(vec!["hikyaku-app".to_owned()])?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(400);
    params.not_after = now + time::Duration::days(valid_days);
    let cert = params.self_signed(&key)?;
    let der = cert.der().to_vec();
    let thumb = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der));
    let mut store = p12_keystore::KeyStore::new();
    let pfx =
        match (
            p12_keystore::PrivateKey::from_der(&pkcs8),
            p12_keystore::Certificate::from_der(&der),
        ) {
            (Ok(k), Ok(c)) => {
                store.add_entry(
                    "app",
                    p12_keystore::KeyStoreEntry::PrivateKeyChain(
                        p12_keystore::PrivateKeyChain::new(vec![7u8; 20], k, [c]),
                    ),
                );
                store
                    .writer(AppCertificate::PFX_PASSWORD)
                    .write()
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
    Ok((
        AppCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            pfx,
        },
        thumb,
        public,
    ))
}

/// A service account key file for `client_email` whose token_uri is `token_uri`.
pub(crate) fn new_service_account_key(client_email: &str, token_uri: &str) -> (String, Vec<u8>) {
    let (pkcs8, public) = new_rsa_key();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD
            .encode(&pkcs8)
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let json = json!({
        "type": "service_account",
        "project_id": "fakecloud",
        "private_key_id": random_token(40),
        "private_key": pem,
        "client_email": client_email,
        "client_id": format!("1{}", unix_now() % 1_000_000_000),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    });
    (json.to_string(), public)
}

/// A parsed, not yet verified JWT.
struct Jwt {
    header: Value,
    claims: Value,
    input: String,
    signature: Vec<u8>,
}

fn parse_jwt(text: &str) -> Option<Jwt> {
    let mut parts = text.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(Jwt {
        header: serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?,
        claims: serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?,
        input: format!("{h}.{c}"),
        signature: URL_SAFE_NO_PAD.decode(s).ok()?,
    })
}

impl Jwt {
    fn verify(&self, public_key: &[u8]) -> bool {
        let params: &signature::RsaParameters = match self.header["alg"].as_str() {
            Some("PS256") => &signature::RSA_PSS_2048_8192_SHA256,
            Some("RS256") => &signature::RSA_PKCS1_2048_8192_SHA256,
            _ => return false,
        };
        signature::UnparsedPublicKey::new(params, public_key)
            .verify(self.input.as_bytes(), &self.signature)
            .is_ok()
    }

    fn num(&self, claim: &str) -> Option<i64> {
        self.claims[claim].as_i64()
    }

    fn str(&self, claim: &str) -> &str {
        self.claims[claim].as_str().unwrap_or("")
    }
}

fn issue_app_token(
    shared: &Shared,
    provider: Provider,
    mailbox: &str,
    scope: &str,
    client: Option<&str>,
) -> String {
    let access = match provider {
        Provider::Microsoft => format!("EwA{}", random_token(120)),
        Provider::Google => format!("ya29.c.{}", random_token(120)),
    };
    shared.lock().access_tokens.insert(
        access.clone(),
        AccessToken {
            provider,
            mailbox: mailbox.to_owned(),
            scope: scope.to_owned(),
            expires_at: Instant::now() + shared.access_lifetime(),
            revoked: false,
            grant: None,
            app_client: client.map(str::to_owned),
        },
    );
    access
}

fn forced(shared: &Shared) -> Option<Response> {
    let (status, error, description) = shared.lock().app.forced_error.clone()?;
    Some(
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response(),
    )
}

/// Entra's `grant_type=client_credentials`.
pub(crate) fn client_credentials(
    shared: &Shared,
    tenant: &str,
    form: &[(String, String)],
) -> Response {
    let client_id = form_get(form, "client_id").unwrap_or("").to_owned();
    shared
        .lock()
        .app
        .requests
        .push(("client_credentials".into(), client_id.clone()));
    if let Some(r) = forced(shared) {
        return r;
    }
    let app = shared.lock().app.apps.get(&client_id).cloned();
    let Some(app) = app.filter(|a| a.tenant.eq_ignore_ascii_case(tenant)) else {
        return ms_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    };
    let scope = form_get(form, "scope").unwrap_or("");
    if !scope.ends_with("/.default") {
        return ms_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }
    // Exchange's resource, or Graph's (the public host or this fake's).
    let graph = scope == "https://graph.microsoft.com/.default"
        || scope == format!("{}/.default", shared.base_url);
    if scope != MS_APP_SCOPE && !graph {
        return ms_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                scope.trim_end_matches("/.default")
            ),
        );
    }
    let unauthorized =
        |code: u32, text: &str| ms_error(StatusCode::UNAUTHORIZED, "invalid_client", code, text);
    if let Some(secret) = form_get(form, "client_secret") {
        match app.secrets.iter().find(|(s, _)| s == secret) {
            Some((_, true)) => {
                return unauthorized(
                    7000222,
                    &format!(
                        "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app."
                    ),
                );
            }
            Some((_, false)) => {}
            None => {
                return unauthorized(
                    7000215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                );
            }
        }
    } else if let Some(assertion) = form_get(form, "client_assertion") {
        if form_get(form, "client_assertion_type")
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return ms_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                "Invalid client_assertion_type.",
            );
        }
        let Some(jwt) = parse_jwt(assertion) else {
            return unauthorized(50027, "JWT token is invalid or malformed.");
        };
        let thumb = jwt.header["x5t#S256"].as_str().unwrap_or("");
        let Some(public) = app.certificates.get(thumb) else {
            return unauthorized(
                700027,
                &format!(
                    "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{thumb}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]"
                ),
            );
        };
        if !jwt.verify(public) {
            return unauthorized(
                700027,
                "Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value.]",
            );
        }
        let token_url = format!("{}/{tenant}/oauth2/v2.0/token", shared.base_url);
        if jwt.str("aud") != token_url {
            return unauthorized(
                700212,
                "The audience claim in the client assertion is not the token endpoint.",
            );
        }
        if jwt.str("iss") != client_id || jwt.str("sub") != client_id {
            return unauthorized(
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            );
        }
        let now = i64::try_from(unix_now()).unwrap_or(0);
        let (nbf, exp) = (jwt.num("nbf").unwrap_or(0), jwt.num("exp").unwrap_or(0));
        if nbf > now + 300 || exp < now - 300 || exp - nbf > 3600 {
            return unauthorized(
                700024,
                "Client assertion is not within its valid time range.",
            );
        }
    } else {
        return ms_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    let access = issue_app_token(shared, Provider::Microsoft, "", scope, Some(&client_id));
    let lifetime = shared.opts.access_token_lifetime_secs;
    Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access,
    }))
    .into_response()
}

fn g_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Google's `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`.
pub(crate) fn jwt_bearer(shared: &Shared, form: &[(String, String)]) -> Response {
    let assertion = form_get(form, "assertion").unwrap_or("");
    let jwt = parse_jwt(assertion);
    let iss = jwt
        .as_ref()
        .map(|j| j.str("iss").to_owned())
        .unwrap_or_default();
    shared
        .lock()
        .app
        .requests
        .push(("jwt_bearer".into(), iss.clone()));
    if let Some(r) = forced(shared) {
        return r;
    }
    let Some(jwt) = jwt else {
        return g_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Failed audience check.",
        );
    };
    let account = shared.lock().app.service_accounts.get(&iss).cloned();
    let Some(account) = account else {
        return g_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT Signature.",
        );
    };
    if !account.public_keys.iter().any(|k| jwt.verify(k)) || jwt.header["alg"] != "RS256" {
        return g_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT Signature.",
        );
    }
    if jwt.str("aud") != format!("{}/token", shared.base_url) {
        return g_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Failed audience check. The expected value is the token_uri.",
        );
    }
    let now = i64::try_from(unix_now()).unwrap_or(0);
    let (iat, exp) = (jwt.num("iat").unwrap_or(0), jwt.num("exp").unwrap_or(0));
    if exp - iat > 3600 || iat > now + 300 || exp < now - 300 {
        return g_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let sub = jwt.str("sub").to_owned();
    if !shared
        .lock()
        .app
        .workspace_users
        .contains(&sub.to_ascii_lowercase())
    {
        return g_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid email or User ID",
        );
    }
    let scope = jwt.str("scope").to_owned();
    if account.delegated_scopes.is_empty() {
        return g_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        );
    }
    if !scope
        .split_whitespace()
        .all(|s| account.delegated_scopes.iter().any(|d| d == s))
    {
        return g_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "Requested client not authorized.",
        );
    }
    let access = issue_app_token(shared, Provider::Google, &sub, &scope, None);
    Json(json!({
        "access_token": access,
        "expires_in": shared.opts.access_token_lifetime_secs,
        "token_type": "Bearer",
    }))
    .into_response()
}
