//! Who is asking: server-side sessions (cookie `hikyaku_session`, stored
//! hashed, idle timeout, renewed at login), bearer API tokens, CSRF tokens,
//! login throttling and Argon2id password hashes. Every handler gets its
//! caller through [`Ui`] or [`ApiCaller`] and checks a [`Permission`].

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{ACCEPT_LANGUAGE, AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use subtle::ConstantTimeEq;

use super::AppState;
use super::errors::WebError;
use super::i18n::{LANG_COOKIE, Locale, Msg, Tr};
use crate::roles::{Permission, Role};
use crate::secrets::{hash_token, random_token};
use crate::store::users::TokenState;

pub const SESSION_COOKIE: &str = "hikyaku_session";
/// Double-submit token for the forms shown before sign-in (login, setup).
pub const PRE_CSRF_COOKIE: &str = "hikyaku_pre";

/// Reads one cookie.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn request_locale(headers: &HeaderMap) -> Locale {
    Locale::negotiate(
        cookie(headers, LANG_COOKIE),
        headers.get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()),
    )
}

/// A `Set-Cookie` value with the attributes every hikyaku cookie carries.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Where a request came from, for the audit log and throttling.
pub fn peer(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn require(role: Role, permission: Permission) -> Result<(), WebError> {
    if role.allows(permission) {
        return Ok(());
    }
    // The least role that may: the refusal names it.
    match Role::ALL.iter().rev().find(|r| r.allows(permission)) {
        Some(needed) => Err(WebError::NeedsRole(*needed)),
        None => Err(WebError::Forbidden),
    }
}

/// A signed-in Remote UI user, with the page context every template needs.
#[derive(Debug, Clone)]
pub struct Ui {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    pub tr: Tr,
    pub source: String,
    pub session_hash: String,
}

impl Ui {
    /// Refuses a page this role may not see. Changes are checked again,
    /// authoritatively, by the operation (`crate::admin`).
    pub fn require(&self, permission: Permission) -> Result<(), WebError> {
        require(self.role, permission)
    }

    pub fn can(&self, permission: Permission) -> bool {
        self.role.allows(permission)
    }

    /// Checks the CSRF token a form sent.
    pub fn check_csrf(&self, sent: &str) -> Result<(), WebError> {
        if constant_time_eq(sent, &self.csrf) {
            Ok(())
        } else {
            Err(WebError::Csrf)
        }
    }

    pub fn role_label(&self) -> String {
        self.tr.t(&format!("role-{}", self.role.as_str()))
    }

    /// Who the operations layer acts for.
    pub fn actor(&self) -> crate::admin::Actor {
        crate::admin::Actor::new(&self.name, &self.source, self.role)
    }
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let tr = Tr::new(request_locale(&parts.headers));
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(WebError::LoginRequired);
        };
        let session_hash = hash_token(id);
        let session = state
            .store
            .touch_session(&session_hash, state.clock.unix(), state.idle_secs())
            .await?
            .ok_or(WebError::LoginRequired)?;
        Ok(Ui {
            name: session.user.name,
            role: session.user.role,
            csrf: session.csrf_token,
            tr,
            source: peer(parts),
            session_hash,
        })
    }
}

/// A caller of the JSON API: a bearer API token, or a session cookie (then
/// state-changing methods need the `X-CSRF-Token` header).
#[derive(Debug, Clone)]
pub struct ApiCaller {
    /// The name the audit log records (`api:NAME` for a token).
    pub name: String,
    pub role: Role,
    /// The user signed in, or the user the token belongs to.
    pub user: Option<String>,
    /// The session's hash, when the caller is a signed-in browser.
    pub session_hash: Option<String>,
    pub source: String,
}

impl ApiCaller {
    /// Refuses a read this role may not make.
    pub fn require(&self, permission: Permission) -> Result<(), WebError> {
        require(self.role, permission)
    }

    /// Who the operations layer acts for.
    pub fn actor(&self) -> crate::admin::Actor {
        crate::admin::Actor::new(&self.name, &self.source, self.role)
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let source = peer(parts);
        let now = state.clock.unix();
        if let Some(value) = parts.headers.get(AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(WebError::Unauthorized(Msg::new("err-api-token-missing")))?;
            let found = state
                .store
                .api_token(&hash_token(token.trim()), now)
                .await?
                .ok_or(WebError::Unauthorized(Msg::new("err-api-token-unknown")))?;
            match found.state(now) {
                TokenState::Active => {}
                TokenState::Expired => {
                    return Err(WebError::Unauthorized(
                        Msg::new("err-api-token-expired").arg("name", &found.name),
                    ));
                }
                TokenState::Revoked => {
                    return Err(WebError::Unauthorized(
                        Msg::new("err-api-token-revoked").arg("name", &found.name),
                    ));
                }
            }
            return Ok(ApiCaller {
                name: format!("api:{}", found.name),
                role: found.effective_role(),
                user: found.user.clone(),
                session_hash: None,
                source,
            });
        }
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or(WebError::LoginRequired)?;
        let session = state
            .store
            .touch_session(&hash_token(id), now, state.idle_secs())
            .await?
            .ok_or(WebError::LoginRequired)?;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(sent, &session.csrf_token) {
                return Err(WebError::Csrf);
            }
        }
        Ok(ApiCaller {
            user: Some(session.user.name.clone()),
            name: session.user.name,
            role: session.user.role,
            session_hash: Some(hash_token(id)),
            source,
        })
    }
}

/// Hashes a password with Argon2id.
pub async fn hash_password(password: String) -> Result<String, WebError> {
    crate::passwords::hash(password)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))
}

pub async fn verify_password(password: String, stored: String) -> bool {
    crate::passwords::verify(password, stored).await
}

pub use crate::throttle::Throttle;

/// Starts a new session for `user_id`: a fresh random id (never the one the
/// browser had before: fixation-safe) and a fresh CSRF token.
pub async fn start_session(
    state: &AppState,
    user_id: i64,
    source: &str,
) -> Result<String, WebError> {
    let id = random_token(32);
    let csrf = random_token(32);
    state
        .store
        .create_session(&hash_token(&id), user_id, &csrf, state.clock.unix(), source)
        .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_grows_and_is_per_key() {
        let t = Throttle::default();
        let keys = Throttle::keys("admin", "10.0.0.1");
        t.fail(&keys, 100);
        t.fail(&keys, 100);
        assert_eq!(t.wait(&keys, 100), None);
        t.fail(&keys, 100);
        assert_eq!(t.wait(&keys, 100), Some(2));
        t.fail(&keys, 102);
        assert_eq!(t.wait(&keys, 102), Some(4));
        // Another user from the same address is not held up by a few failures…
        assert_eq!(t.wait(&Throttle::keys("other", "10.0.0.1"), 102), None);
        // …but many failures from one address are.
        for _ in 0..6 {
            t.fail(&Throttle::keys("guess", "10.0.0.1"), 102);
        }
        assert!(t.wait(&Throttle::keys("other", "10.0.0.1"), 102).is_some());
        assert_eq!(t.wait(&Throttle::keys("other", "10.0.0.2"), 102), None);
        t.succeed(&keys);
        assert_eq!(t.wait(&keys, 102), None);
    }

    #[test]
    fn cookies_are_parsed() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; hikyaku_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
