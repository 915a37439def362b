//! Validation of the `[Microsoft Entra ID認可サーバーのエンドポイント] /
//! Microsoft Entra ID Authorization Server Endpoint` field (protocols.md §1):
//! `https://{host}/{tenant}/oauth2/v2.0`, https only, a tenant of a known form,
//! any host (sovereign clouds, test servers) with a warning for unknown ones.

use crate::provider::MICROSOFT_LOGIN_HOSTS;

/// A valid endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointCheck {
    /// `https://{host[:port]}/{tenant}/oauth2/v2.0`, without a trailing slash;
    /// the well-known tenant names lower-cased.
    pub normalized: String,
    pub tenant: String,
    /// Set when the host is not a known Microsoft login host.
    pub warning: Option<String>,
}

const EXAMPLE: &str = "https://login.microsoftonline.com/common/oauth2/v2.0";

/// Why an endpoint is refused; each text says what to enter instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("the endpoint is empty: enter e.g. {EXAMPLE}")]
    Empty,
    #[error("not a URL ({0}): enter e.g. {EXAMPLE}")]
    NotUrl(String),
    #[error("the endpoint must use https, not {0}: enter e.g. {EXAMPLE}")]
    NotHttps(String),
    #[error("the endpoint has no host name: enter e.g. {EXAMPLE}")]
    NoHost,
    #[error("the endpoint must not contain a user name or password")]
    Credentials,
    #[error("the endpoint must not contain '?' or '#' parts: enter e.g. {EXAMPLE}")]
    QueryOrFragment,
    #[error("the path must end in /oauth2/v2.0 (e.g. {EXAMPLE}); got '{0}'")]
    WrongPath(String),
    #[error(
        "no tenant: put common, organizations, consumers, your tenant ID or your domain before /oauth2/v2.0 (e.g. {EXAMPLE})"
    )]
    NoTenant,
    #[error(
        "the path must be /{{tenant}}/oauth2/v2.0 with a single tenant segment (e.g. {EXAMPLE}); got '{0}'"
    )]
    TenantSegments(String),
    #[error(
        "'{0}' is not a tenant: use common, organizations, consumers, a tenant ID (GUID such as 00000000-0000-0000-0000-000000000000) or a domain name (such as contoso.onmicrosoft.com)"
    )]
    BadTenant(String),
}

impl EndpointError {
    /// The example endpoint the messages offer.
    pub const EXAMPLE: &'static str = EXAMPLE;
}

/// Checks the endpoint field; the error says precisely what is wrong.
pub fn validate_microsoft_endpoint(text: &str) -> Result<EndpointCheck, EndpointError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(EndpointError::Empty);
    }
    let url = url::Url::parse(text).map_err(|e| EndpointError::NotUrl(e.to_string()))?;
    if url.scheme() != "https" {
        return Err(EndpointError::NotHttps(url.scheme().to_string()));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(EndpointError::NoHost);
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Credentials);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(EndpointError::QueryOrFragment);
    }
    let path = url.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let ends_right = segments.len() >= 2
        && segments[segments.len() - 2].eq_ignore_ascii_case("oauth2")
        && segments[segments.len() - 1].eq_ignore_ascii_case("v2.0");
    if !ends_right {
        return Err(EndpointError::WrongPath(url.path().to_string()));
    }
    let tenant = match segments.len() {
        2 => {
            return Err(EndpointError::NoTenant);
        }
        3 => segments[0],
        _ => {
            return Err(EndpointError::TenantSegments(url.path().to_string()));
        }
    };
    let tenant = normalize_tenant(tenant)?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let lower_host = host.to_ascii_lowercase();
    let warning = (!MICROSOFT_LOGIN_HOSTS.contains(&lower_host.as_str())).then(|| {
        format!(
            "{host} is not a known Microsoft login host (e.g. login.microsoftonline.com, login.microsoftonline.us): check that it is your cloud's authorization server"
        )
    });
    Ok(EndpointCheck {
        normalized: format!("https://{authority}/{tenant}/oauth2/v2.0"),
        tenant,
        warning,
    })
}

/// Accepts `common`, `organizations`, `consumers`, a GUID, or a domain name.
fn normalize_tenant(tenant: &str) -> Result<String, EndpointError> {
    let lower = tenant.to_ascii_lowercase();
    if matches!(lower.as_str(), "common" | "organizations" | "consumers") || is_guid(&lower) {
        return Ok(lower);
    }
    if is_domain(&lower) {
        return Ok(lower);
    }
    Err(EndpointError::BadTenant(tenant.to_string()))
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_domain(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 || s.len() > 253 {
        return false;
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_alphabetic()));
    labels.iter().all(label_ok) && tld_ok
}

/// The OpenID discovery document of an endpoint:
/// `{host}/{tenant}/oauth2/v2.0` → `{host}/{tenant}/v2.0/.well-known/openid-configuration`.
pub fn microsoft_discovery_url(endpoint: &str) -> String {
    let base = endpoint.trim().trim_end_matches('/');
    match base.strip_suffix("/oauth2/v2.0") {
        Some(prefix) => format!("{prefix}/v2.0/.well-known/openid-configuration"),
        None => format!("{base}/.well-known/openid-configuration"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_seed_tenants() {
        for t in ["common", "consumers", "organizations"] {
            let c = validate_microsoft_endpoint(&format!(
                "https://login.microsoftonline.com/{t}/oauth2/v2.0"
            ))
            .unwrap();
            assert_eq!(c.tenant, t);
            assert_eq!(
                c.normalized,
                format!("https://login.microsoftonline.com/{t}/oauth2/v2.0")
            );
            assert!(c.warning.is_none());
        }
        let c = validate_microsoft_endpoint("https://login.microsoftonline.com/Common/oauth2/v2.0")
            .unwrap();
        assert_eq!(c.tenant, "common");
    }

    #[test]
    fn accepts_guid_and_domain_tenants() {
        let g = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let c = validate_microsoft_endpoint(&format!(
            "https://login.microsoftonline.com/{g}/oauth2/v2.0"
        ))
        .unwrap();
        assert_eq!(c.tenant, g);
        let c = validate_microsoft_endpoint(
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0",
        )
        .unwrap();
        assert_eq!(c.tenant, "contoso.onmicrosoft.com");
    }

    #[test]
    fn tolerates_trailing_slash_and_spaces() {
        let c =
            validate_microsoft_endpoint("  https://login.microsoftonline.com/common/oauth2/v2.0/ ")
                .unwrap();
        assert_eq!(
            c.normalized,
            "https://login.microsoftonline.com/common/oauth2/v2.0"
        );
    }

    #[test]
    fn refuses_with_precise_reasons() {
        let e = validate_microsoft_endpoint("http://login.microsoftonline.com/common/oauth2/v2.0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("https"), "{e}");
        let e = validate_microsoft_endpoint("https://login.microsoftonline.com/oauth2/v2.0")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no tenant"), "{e}");
        let e = validate_microsoft_endpoint("login.microsoftonline.com/common")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("not a URL"), "{e}");
        let e =
            validate_microsoft_endpoint("https://login.microsoftonline.com/common/oauth2/token")
                .unwrap_err()
                .to_string();
        assert!(e.contains("/oauth2/v2.0"), "{e}");
        let e =
            validate_microsoft_endpoint("https://login.microsoftonline.com/com mon!/oauth2/v2.0")
                .unwrap_err()
                .to_string();
        assert!(e.contains("not a tenant"), "{e}");
        let e = validate_microsoft_endpoint("https://login.microsoftonline.com/a/b/oauth2/v2.0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("single tenant"), "{e}");
        let e =
            validate_microsoft_endpoint("https://login.microsoftonline.com/common/oauth2/v2.0?x=1")
                .unwrap_err()
                .to_string();
        assert!(e.contains('?'), "{e}");
        let e = validate_microsoft_endpoint("").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        assert!(
            validate_microsoft_endpoint(
                "https://login.microsoftonline.com/12345678-1234/oauth2/v2.0"
            )
            .is_err()
        );
    }

    #[test]
    fn sovereign_and_unknown_hosts() {
        let c =
            validate_microsoft_endpoint("https://login.microsoftonline.us/contoso.us/oauth2/v2.0")
                .unwrap();
        assert!(c.warning.is_none());
        let c = validate_microsoft_endpoint("https://login.chinacloudapi.cn/common/oauth2/v2.0")
            .unwrap();
        assert!(c.warning.is_none());
        let c = validate_microsoft_endpoint("https://localhost:8443/common/oauth2/v2.0").unwrap();
        assert_eq!(c.normalized, "https://localhost:8443/common/oauth2/v2.0");
        assert!(
            c.warning
                .unwrap()
                .contains("not a known Microsoft login host")
        );
    }

    #[test]
    fn discovery_url() {
        assert_eq!(
            microsoft_discovery_url("https://login.microsoftonline.com/common/oauth2/v2.0/"),
            "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
        );
    }
}
