//! Providers: Microsoft (Exchange Online) and Google (Gmail). Endpoints are data
//! (stored per account, public cloud as default); this module holds the
//! defaults and the scopes, and nothing else decides them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Microsoft,
    Google,
}

/// The seed's default Microsoft endpoint (tenant `common`).
pub const MICROSOFT_DEFAULT_ENDPOINT: &str = "https://login.microsoftonline.com/common/oauth2/v2.0";
/// Scopes of the device authorization request (protocols.md §1).
pub const MICROSOFT_SCOPES: &[&str] = &[
    "https://outlook.office.com/SMTP.Send",
    "offline_access",
    "openid",
    "email",
    "profile",
];
/// Scopes of a Microsoft refresh (the id_token scopes are not needed again).
pub const MICROSOFT_REFRESH_SCOPES: &[&str] =
    &["https://outlook.office.com/SMTP.Send", "offline_access"];
/// The device authorization (or, `refresh`, the refresh) scopes of a
/// Microsoft account whose SMTP scope is `smtp_scope` (its cloud's or an
/// override): the first of [`MICROSOFT_SCOPES`] replaced.
pub fn microsoft_scopes(smtp_scope: &str, refresh: bool) -> Vec<String> {
    let rest = if refresh {
        &MICROSOFT_REFRESH_SCOPES[1..]
    } else {
        &MICROSOFT_SCOPES[1..]
    };
    std::iter::once(smtp_scope)
        .chain(rest.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// Scopes of the Google authorization request (protocols.md §3).
pub const GOOGLE_SCOPES: &[&str] = &["https://mail.google.com/", "openid", "email"];
/// Hosts of Microsoft's public and sovereign login services; others get a warning.
pub const MICROSOFT_LOGIN_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.partner.microsoftonline.cn",
    "login.chinacloudapi.cn",
    "login.microsoftonline.de",
];

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::Microsoft, Provider::Google];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Microsoft => "microsoft",
            Provider::Google => "google",
        }
    }

    pub fn parse(text: &str) -> Option<Provider> {
        match text {
            "microsoft" => Some(Provider::Microsoft),
            "google" => Some(Provider::Google),
            _ => None,
        }
    }

    /// Default upstream SMTP host and port (STARTTLS).
    pub fn default_smtp(self) -> (&'static str, u16) {
        match self {
            Provider::Microsoft => ("smtp.office365.com", 587),
            Provider::Google => ("smtp.gmail.com", 587),
        }
    }
}
