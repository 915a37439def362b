//! The outbound HTTP(S) proxy (Management → Network).
//!
//! Corporate networks often let HTTPS out only through a proxy. When one is
//! configured, every HTTPS call hikyaku makes (OAuth token and device-code
//! endpoints, connection checks) is tunnelled through it with `CONNECT`;
//! hosts on the no-proxy list are reached directly. SMTP delivery never uses
//! it: an HTTP proxy cannot carry SMTP.
//!
//! The settings live in the store's `settings` table; the password is sealed
//! with the master key (AAD `settings:proxy_password`) and never shown again.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use base64::Engine;

use crate::i18n::Reason;
use crate::secrets::{MasterKey, SecretsError};
use crate::store::{Store, StoreError};

/// Settings keys in the store.
const KEY_HOST: &str = "proxy_host";
const KEY_PORT: &str = "proxy_port";
const KEY_USERNAME: &str = "proxy_username";
const KEY_PASSWORD: &str = "proxy_password";
const KEY_NO_PROXY: &str = "proxy_no_proxy";
/// Associated data of the sealed password: a blob copied to another key does not open.
const PASSWORD_AAD: &str = "settings:proxy_password";

/// Most no-proxy entries accepted; a longer list is almost certainly a paste error.
const MAX_NO_PROXY: usize = 100;

/// An HTTP proxy for outbound HTTPS, as configured under Management → Network.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Host name or IP address, without scheme, port or path.
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Hosts, domains (`.example.com`), IP addresses or CIDR ranges reached directly.
    pub no_proxy: Vec<String>,
}

impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl ProxySettings {
    /// `host:port` as shown to administrators (IPv6 in brackets).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The proxy URL for reqwest (credentials are added separately).
    pub fn url(&self) -> String {
        format!("http://{}", self.address())
    }

    /// Whether requests to `host` go around the proxy, with the rules of
    /// reqwest's `NoProxy` (exact or subdomain match, IP or CIDR, `*`).
    pub fn bypasses(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        self.no_proxy.iter().any(|entry| {
            let entry = entry.to_ascii_lowercase();
            if entry == "*" {
                return true;
            }
            if let Some(ip) = ip {
                return match entry.split_once('/') {
                    Some((net, bits)) => in_cidr(ip, net, bits),
                    None => entry.parse::<IpAddr>().is_ok_and(|e| e == ip),
                };
            }
            let domain = entry.trim_start_matches('.');
            host == domain || host.ends_with(&format!(".{domain}"))
        })
    }
}

fn in_cidr(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The configured proxy, shared by every HTTPS client and replaced in place
/// when the Network page saves.
pub type SharedProxy = Arc<RwLock<Option<ProxySettings>>>;

/// A copy of the current proxy setting.
pub fn current(shared: &SharedProxy) -> Option<ProxySettings> {
    shared.read().map(|p| p.clone()).unwrap_or_default()
}

/// Errors loading or saving the proxy settings.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// A stored value is unreadable (edited by hand, or another master key).
    #[error("the stored proxy setting {key} is unreadable — save Management → Network again")]
    Corrupt { key: &'static str },
}

/// What the Network page or the API submitted, before validation.
#[derive(Debug, Default, Clone)]
pub struct ProxyInput {
    pub host: String,
    pub port: String,
    pub username: String,
    /// Empty keeps the stored password.
    pub password: String,
    pub remove_password: bool,
    /// Comma- or newline-separated.
    pub no_proxy: String,
}

/// Validates `input`. `stored_password` is kept when no new one is given.
/// An empty host means "no proxy" (`Ok(None)`). Errors are sentences that say
/// what to change, one per problem.
/// What is wrong with a proxy setting; each text says what to enter instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyProblem {
    #[error(
        "proxy host {0:?} must be a host name or IP address only — leave out http:// and any path"
    )]
    HostHasScheme(String),
    #[error(
        "proxy host {0:?} must not contain credentials — use the User Name and Password fields"
    )]
    HostHasCredentials(String),
    #[error("proxy host {0:?} contains ':' — enter the port in the Port field, not after the host")]
    HostHasPort(String),
    #[error(
        "proxy host {0:?} is not a valid host name — use letters, digits, '-' and '.', without spaces"
    )]
    HostInvalid(String),
    #[error("proxy port {0:?} is not usable — enter a number from 1 to 65535 (often 3128 or 8080)")]
    Port(String),
    #[error(
        "the proxy user name must not contain ':' or control characters — enter the user name only"
    )]
    UserName,
    #[error("the proxy password must not contain control characters")]
    Password,
    #[error(
        "a proxy password was given without a user name — enter the user name too, or leave both empty"
    )]
    PasswordWithoutUser,
    #[error(
        "the no-proxy list has {0} entries — at most {MAX_NO_PROXY} are allowed; use domains (.example.com) or ranges (10.0.0.0/8)"
    )]
    NoProxyTooMany(usize),
    #[error(
        "no-proxy entry {0:?} is not usable — use a host name, a domain such as .example.com, an IP address, a range such as 10.0.0.0/8, or *"
    )]
    NoProxyEntry(String),
}

impl ProxyProblem {
    /// The most entries a no-proxy list may have.
    pub const MAX_NO_PROXY: usize = MAX_NO_PROXY;
}

pub fn validate(
    input: &ProxyInput,
    stored_password: Option<String>,
) -> Result<Option<ProxySettings>, Vec<ProxyProblem>> {
    let host = input.host.trim();
    if host.is_empty() {
        return Ok(None);
    }
    let mut errors = Vec::new();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Err(e) = check_host(host) {
        errors.push(e);
    }
    let port = match input.port.trim().parse::<u16>() {
        Ok(p) if p >= 1 => p,
        _ => {
            errors.push(ProxyProblem::Port(input.port.trim().to_owned()));
            0
        }
    };
    let username = input.username.trim();
    if username.contains(':') || username.chars().any(char::is_control) {
        errors.push(ProxyProblem::UserName);
    }
    if input.password.chars().any(char::is_control) {
        errors.push(ProxyProblem::Password);
    }
    let username = (!username.is_empty()).then(|| username.to_owned());
    let password = if username.is_none() || input.remove_password {
        None
    } else if !input.password.is_empty() {
        Some(input.password.clone())
    } else {
        stored_password
    };
    if username.is_none() && !input.password.is_empty() {
        errors.push(ProxyProblem::PasswordWithoutUser);
    }
    let no_proxy = parse_no_proxy(&input.no_proxy).unwrap_or_else(|mut e| {
        errors.append(&mut e);
        Vec::new()
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Some(ProxySettings {
        host: host.to_owned(),
        port,
        username,
        password,
        no_proxy,
    }))
}

fn check_host(host: &str) -> Result<(), ProxyProblem> {
    if host.contains("://") || host.contains('/') {
        return Err(ProxyProblem::HostHasScheme(host.to_owned()));
    }
    if host.contains('@') {
        return Err(ProxyProblem::HostHasCredentials(host.to_owned()));
    }
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if host.contains(':') {
        return Err(ProxyProblem::HostHasPort(host.to_owned()));
    }
    if !is_domain(host) {
        return Err(ProxyProblem::HostInvalid(host.to_owned()));
    }
    Ok(())
}

fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Splits a no-proxy list on commas and line breaks and checks each entry.
pub fn parse_no_proxy(text: &str) -> Result<Vec<String>, Vec<ProxyProblem>> {
    let entries: Vec<String> = text
        .split([',', '\n', '\r'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    let mut errors = Vec::new();
    if entries.len() > MAX_NO_PROXY {
        errors.push(ProxyProblem::NoProxyTooMany(entries.len()));
    }
    for e in &entries {
        if !no_proxy_entry_ok(e) {
            errors.push(ProxyProblem::NoProxyEntry(e.clone()));
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

fn no_proxy_entry_ok(e: &str) -> bool {
    if e == "*" {
        return true;
    }
    let bare = e.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    if let Some((net, bits)) = e.split_once('/') {
        return match (net.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        };
    }
    is_domain(e.strip_prefix('.').unwrap_or(e))
}

/// Reads the proxy settings from the store (`None` when no proxy is set).
pub async fn load(store: &Store, key: &MasterKey) -> Result<Option<ProxySettings>, ProxyError> {
    let host = store.setting(KEY_HOST).await?.unwrap_or_default();
    if host.is_empty() {
        return Ok(None);
    }
    let port = store
        .setting(KEY_PORT)
        .await?
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p >= 1)
        .ok_or(ProxyError::Corrupt { key: KEY_PORT })?;
    let username = store.setting(KEY_USERNAME).await?.filter(|u| !u.is_empty());
    let password = match store.setting(KEY_PASSWORD).await?.filter(|p| !p.is_empty()) {
        Some(encoded) => {
            let blob = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| ProxyError::Corrupt { key: KEY_PASSWORD })?;
            Some(key.open_string(PASSWORD_AAD, &blob)?)
        }
        None => None,
    };
    let no_proxy = store
        .setting(KEY_NO_PROXY)
        .await?
        .map(|l| {
            l.split(',')
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(ProxySettings {
        host,
        port,
        username,
        password,
        no_proxy,
    }))
}

/// Stores `settings` (`None` clears every proxy key, the password too).
pub async fn save(
    store: &Store,
    key: &MasterKey,
    settings: Option<&ProxySettings>,
) -> Result<(), ProxyError> {
    let empty = ProxySettings {
        host: String::new(),
        port: 0,
        username: None,
        password: None,
        no_proxy: Vec::new(),
    };
    let s = settings.unwrap_or(&empty);
    let password = match &s.password {
        Some(p) => base64::engine::general_purpose::STANDARD.encode(key.seal_str(PASSWORD_AAD, p)?),
        None => String::new(),
    };
    let port = if s.host.is_empty() {
        String::new()
    } else {
        s.port.to_string()
    };
    // The password goes first and the host last, so an interrupted save never
    // leaves a live host paired with another proxy's credentials.
    store.set_setting(KEY_PASSWORD, &password).await?;
    store
        .set_setting(KEY_USERNAME, s.username.as_deref().unwrap_or(""))
        .await?;
    store.set_setting(KEY_PORT, &port).await?;
    store
        .set_setting(KEY_NO_PROXY, &s.no_proxy.join(","))
        .await?;
    store.set_setting(KEY_HOST, &s.host).await?;
    Ok(())
}

/// The audit detail of a change: never the password, only whether one is set.
pub fn audit_detail(settings: Option<&ProxySettings>) -> Reason {
    match settings {
        None => Reason::new("audit-proxy-off"),
        Some(s) => Reason::new("audit-proxy")
            .arg("address", s.address())
            .arg("user", s.username.as_deref().unwrap_or("-"))
            .arg(
                "password",
                if s.password.is_some() {
                    "set"
                } else {
                    "not-set"
                },
            )
            .arg(
                "no_proxy",
                if s.no_proxy.is_empty() {
                    "-".to_owned()
                } else {
                    s.no_proxy.join(",")
                },
            ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn input(host: &str, port: &str) -> ProxyInput {
        ProxyInput {
            host: host.into(),
            port: port.into(),
            ..ProxyInput::default()
        }
    }

    #[test]
    fn empty_host_means_no_proxy() {
        assert_eq!(validate(&input("  ", "x"), None), Ok(None));
    }

    #[test]
    fn valid_settings() {
        let mut i = input("proxy.example.com", "3128");
        i.username = " alice ".into();
        i.password = "s3cret".into();
        i.no_proxy = "localhost, .corp.example\n10.0.0.0/8\n\n::1".into();
        let s = validate(&i, None).unwrap().unwrap();
        assert_eq!(s.address(), "proxy.example.com:3128");
        assert_eq!(s.username.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("s3cret"));
        assert_eq!(
            s.no_proxy,
            ["localhost", ".corp.example", "10.0.0.0/8", "::1"]
        );
        let v6 = validate(&input("[fd00::1]", "8080"), None)
            .unwrap()
            .unwrap();
        assert_eq!(v6.url(), "http://[fd00::1]:8080");
    }

    #[test]
    fn bad_values_say_what_to_do() {
        for (host, port, needle) in [
            ("http://proxy", "3128", "leave out http://"),
            ("proxy/path", "3128", "leave out http://"),
            ("proxy:3128", "3128", "Port field"),
            ("pro xy", "3128", "without spaces"),
            ("u:p@proxy", "3128", "User Name and Password"),
            ("proxy", "0", "1 to 65535"),
            ("proxy", "65536", "1 to 65535"),
            ("proxy", "", "1 to 65535"),
        ] {
            let e = validate(&input(host, port), None).unwrap_err();
            assert!(
                e.iter().any(|m| m.to_string().contains(needle)),
                "{host} {port}: {e:?}"
            );
        }
        let mut i = input("proxy", "3128");
        i.no_proxy = "ok.example, http://bad, 10.0.0.0/40".into();
        let e = validate(&i, None).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        let mut i = input("proxy", "3128");
        i.password = "p".into();
        assert!(
            validate(&i, None).unwrap_err()[0]
                .to_string()
                .contains("without a user name")
        );
        let mut i = input("proxy", "3128");
        i.username = "a:b".into();
        assert!(
            validate(&i, None).unwrap_err()[0]
                .to_string()
                .contains("':'")
        );
    }

    #[test]
    fn password_kept_replaced_or_removed() {
        let mut i = input("proxy", "3128");
        i.username = "alice".into();
        let kept = validate(&i, Some("old".into())).unwrap().unwrap();
        assert_eq!(kept.password.as_deref(), Some("old"));
        i.password = "new".into();
        let new = validate(&i, Some("old".into())).unwrap().unwrap();
        assert_eq!(new.password.as_deref(), Some("new"));
        i.remove_password = true;
        let removed = validate(&i, Some("old".into())).unwrap().unwrap();
        assert_eq!(removed.password, None);
        // Clearing the user name drops the credentials altogether.
        let none = validate(&input("proxy", "3128"), Some("old".into()))
            .unwrap()
            .unwrap();
        assert_eq!(none.password, None);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let mut i = input("proxy", "3128");
        i.username = "alice".into();
        i.password = "hunter2-secret".into();
        let s = validate(&i, None).unwrap().unwrap();
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2") && d.contains("alice"), "{d}");
        let a = audit_detail(Some(&s));
        assert!(
            !a.to_json().contains("hunter2") && a.to_string().contains("password=set"),
            "{a}"
        );
    }

    #[test]
    fn bypass_rules() {
        let s = ProxySettings {
            host: "p".into(),
            port: 1,
            username: None,
            password: None,
            no_proxy: vec![
                "localhost".into(),
                ".corp.example".into(),
                "10.0.0.0/8".into(),
                "::1".into(),
            ],
        };
        assert!(s.bypasses("localhost"));
        assert!(s.bypasses("a.corp.example"));
        assert!(s.bypasses("corp.example"));
        assert!(!s.bypasses("notcorp.example"));
        assert!(s.bypasses("10.1.2.3"));
        assert!(!s.bypasses("11.1.2.3"));
        assert!(s.bypasses("[::1]"));
        assert!(!s.bypasses("login.microsoftonline.com"));
    }
}
