//! The outbound HTTP client (token endpoints, Graph `sendMail`, Gmail API,
//! discovery documents) and the adapter that lets `oauth2` use it.
//!
//! There is exactly one way to build a client, [`client`], so every HTTPS call
//! honours the same [`TlsPolicy`] (Verify Server Certificate, Add CN, extra CAs).
//! `oauth2` 5 depends on reqwest 0.12 only behind a feature we leave off; instead
//! [`OAuthHttp`] implements its `AsyncHttpClient` over our reqwest 0.13 client.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::proxy::ProxySettings;
use crate::tls::{self, TlsError, TlsPolicy};

/// User agent sent on every request, so provider-side logs can tell us apart.
pub const USER_AGENT: &str = concat!("hikyaku/", env!("CARGO_PKG_VERSION"));

/// Upper bound on the connect phase: a dead or filtered endpoint should fail
/// quickly even when the overall timeout is long (large Graph uploads).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Build the outbound HTTP client for `policy`.
///
/// * redirects are not followed: token and API endpoints never redirect, and
///   following one would carry credentials to wherever the response points
///   (oauth2's own SSRF advice);
/// * `timeout` bounds the whole request, the connect phase at most 10 s;
/// * without a configured proxy, proxies come from the usual
///   `HTTPS_PROXY`/`NO_PROXY` environment variables.
pub fn client(policy: &TlsPolicy, timeout: Duration) -> Result<reqwest::Client, TlsError> {
    client_via(policy, None, timeout)
}

/// [`client`] through `proxy` (Management → Network) when one is configured.
/// A configured proxy takes precedence over the environment's: reqwest then
/// ignores `HTTPS_PROXY` and uses the configured no-proxy list instead of `NO_PROXY`.
pub fn client_via(
    policy: &TlsPolicy,
    proxy: Option<&ProxySettings>,
    timeout: Duration,
) -> Result<reqwest::Client, TlsError> {
    let shared = tls::client_config(policy)?;
    let mut config = (*shared).clone();
    // reqwest leaves ALPN alone on a preconfigured config; without it we would
    // never negotiate HTTP/2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut builder = reqwest::Client::builder();
    if let Some(p) = proxy {
        let mut rp = reqwest::Proxy::all(p.url()).map_err(TlsError::HttpClient)?;
        if let Some(user) = &p.username {
            rp = rp.basic_auth(user, p.password.as_deref().unwrap_or(""));
        }
        rp = rp.no_proxy(reqwest::NoProxy::from_string(&p.no_proxy.join(",")));
        builder = builder.proxy(rp);
    }
    builder
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .timeout(timeout)
        .user_agent(USER_AGENT)
        // Must be exactly reqwest's rustls::ClientConfig type; a version mismatch
        // would silently turn into "unknown TLS backend" (a build-time error here).
        .tls_backend_preconfigured(config)
        .build()
        .map_err(TlsError::HttpClient)
}

/// Largest response body the OAuth adapter reads. Token and device-code
/// responses are a few KiB; anything bigger is not a token endpoint.
const MAX_OAUTH_BODY: usize = 1024 * 1024;

/// Why an OAuth HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum OAuthHttpError {
    /// Transport failure (DNS, connect, TLS, timeout) or body read failure.
    // The reqwest error and its causes follow as the chain (see
    // `tokens::wire::chain`), so they are not repeated here.
    #[error("request to the OAuth endpoint failed")]
    Request(#[from] reqwest::Error),
    /// The endpoint sent an oversized body.
    #[error(
        "the OAuth endpoint sent more than {MAX_OAUTH_BODY} bytes — check the token/device-code URL points at the provider"
    )]
    TooLarge,
}

/// `oauth2::AsyncHttpClient` over our reqwest client:
/// `client.exchange_refresh_token(&rt).request_async(&OAuthHttp(http.clone()))`.
#[derive(Debug, Clone)]
pub struct OAuthHttp(pub reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = OAuthHttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, OAuthHttpError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut response = self
                .0
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_OAUTH_BODY {
                    return Err(OAuthHttpError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(out)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::tls::testutil::*;
    use oauth2::AsyncHttpClient;

    #[tokio::test]
    async fn client_uses_policy_and_oauth_adapter_round_trips() {
        let ca = TestCa::new("Test CA");
        let leaf = ca.leaf(&["localhost"], "localhost", None);
        let addr = https_server(
            server_config_for(&leaf),
            http_response(
                "200 OK",
                "X-Test: yes\r\n",
                r#"{"access_token":"a","token_type":"Bearer"}"#,
            ),
        )
        .await;
        let url = format!("https://localhost:{}/token", addr.port());

        // Default policy: the test CA is unknown, so the request fails on TLS.
        let plain = client(&TlsPolicy::default(), Duration::from_secs(5)).unwrap();
        assert!(plain.get(&url).send().await.is_err());

        let policy = TlsPolicy {
            extra_cas: vec![ca.der()],
            ..TlsPolicy::default()
        };
        let c = client(&policy, Duration::from_secs(5)).unwrap();
        let adapter = OAuthHttp(c);
        let req = http::Request::builder()
            .method(http::Method::POST)
            .uri(&url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(b"grant_type=refresh_token".to_vec())
            .unwrap();
        let resp = adapter.call(req).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::OK);
        assert_eq!(resp.headers()["x-test"], "yes");
        assert!(String::from_utf8_lossy(resp.body()).contains("access_token"));
    }

    #[tokio::test]
    async fn oauth2_refresh_through_adapter() {
        use oauth2::basic::BasicClient;
        use oauth2::{AuthType, ClientId, RefreshToken, TokenResponse, TokenUrl};
        let ca = TestCa::new("Test CA");
        let leaf = ca.leaf(&["localhost"], "localhost", None);
        let addr = https_server(
            server_config_for(&leaf),
            http_response(
                "200 OK",
                "",
                r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3599,"refresh_token":"rt-2"}"#,
            ),
        )
        .await;
        let policy = TlsPolicy {
            extra_cas: vec![ca.der()],
            ..TlsPolicy::default()
        };
        let http = OAuthHttp(client(&policy, Duration::from_secs(5)).unwrap());
        let oauth = BasicClient::new(ClientId::new("client".to_owned()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(
                TokenUrl::new(format!("https://localhost:{}/token", addr.port())).unwrap(),
            );
        let token = oauth
            .exchange_refresh_token(&RefreshToken::new("rt-1".to_owned()))
            .request_async(&http)
            .await
            .unwrap();
        assert_eq!(token.access_token().secret(), "at-1");
        assert_eq!(token.refresh_token().unwrap().secret(), "rt-2");
        assert_eq!(token.expires_in(), Some(Duration::from_secs(3599)));
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let ca = TestCa::new("Test CA");
        let leaf = ca.leaf(&["localhost"], "localhost", None);
        let addr = https_server(
            server_config_for(&leaf),
            http_response("302 Found", "Location: https://example.invalid/\r\n", ""),
        )
        .await;
        let policy = TlsPolicy {
            extra_cas: vec![ca.der()],
            ..TlsPolicy::default()
        };
        let c = client(&policy, Duration::from_secs(5)).unwrap();
        let resp = c
            .get(format!("https://localhost:{}/", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 302);
    }
}
