//! HTTP plumbing shared by the flows: the oauth2 client types, an adapter over
//! [`crate::http::OAuthHttp`] that turns 5xx/429 answers into transport errors
//! (so that they count as temporary, not as a broken server response), plain
//! form posts for device-code polling and revocation, and the classification of
//! every failure into "temporary" or "the provider said no".

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AsyncHttpClient, EndpointNotSet, ErrorResponse, ExtraDeviceAuthorizationFields,
    ExtraTokenFields, RequestTokenError, StandardRevocableToken, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::http::{OAuthHttp, OAuthHttpError};
use crate::proxy::ProxySettings;
use crate::tls::TlsPolicy;

/// Timeout of one request to a token or device-code endpoint.
pub(crate) const TOKEN_TIMEOUT: Duration = Duration::from_secs(20);

/// The id_token a token response carries when `openid` was asked for.
#[derive(Clone, Deserialize, Serialize, Default)]
pub(crate) struct IdTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for IdTokenFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdTokenFields([redacted])")
    }
}

impl ExtraTokenFields for IdTokenFields {}

/// Microsoft's extra `message` in the device authorization response.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub(crate) struct MsDeviceExtra {
    #[serde(default)]
    pub message: Option<String>,
}

impl ExtraDeviceAuthorizationFields for MsDeviceExtra {}

pub(crate) type TokenResp = StandardTokenResponse<IdTokenFields, BasicTokenType>;

/// The oauth2 client with our token response type.
pub(crate) type OClient<
    HasAuth = EndpointNotSet,
    HasDevice = EndpointNotSet,
    HasToken = EndpointNotSet,
> = oauth2::Client<
    BasicErrorResponse,
    TokenResp,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    HasAuth,
    HasDevice,
    EndpointNotSet,
    EndpointNotSet,
    HasToken,
>;

/// Transport failure or an HTTP status that means "try again later".
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The failure, described (as a proxy problem when the proxy failed).
    #[error("{0}")]
    Http(String),
    #[error("the endpoint answered HTTP {0}")]
    Status(u16),
}

/// The oauth2 adapter used by every flow, with the proxy it goes through.
#[derive(Debug, Clone)]
pub(crate) struct Transport(pub OAuthHttp, pub Option<ProxySettings>);

impl Transport {
    pub fn new(policy: &TlsPolicy, proxy: Option<ProxySettings>) -> Result<Self, String> {
        crate::http::client_via(policy, proxy.as_ref(), TOKEN_TIMEOUT)
            .map(|c| Transport(OAuthHttp(c), proxy))
            .map_err(|e| e.to_string())
    }

    pub fn reqwest(&self) -> &reqwest::Client {
        &self.0.0
    }

    /// A request failure in words: a failing proxy is named as such, so the
    /// token status points at Management → Network rather than the provider.
    pub fn describe(&self, e: &(dyn std::error::Error + 'static), url: &str) -> String {
        self.1
            .as_ref()
            .and_then(|p| crate::connection::proxy_failure(e, p, url))
            .map(|r| r.to_string())
            .unwrap_or_else(|| chain(e))
    }
}

impl<'c> AsyncHttpClient<'c> for Transport {
    type Error = TransportError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, TransportError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let url = request.uri().to_string();
            let response = self
                .0
                .call(request)
                .await
                .map_err(|e: OAuthHttpError| TransportError::Http(self.describe(&e, &url)))?;
            let status = response.status();
            if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                return Err(TransportError::Status(status.as_u16()));
            }
            Ok(response)
        })
    }
}

/// An error with its sources, for messages (URLs and reasons only: request
/// bodies, which carry secrets, never appear in reqwest's errors).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// What went wrong talking to a token endpoint.
#[derive(Debug, Clone)]
pub(crate) enum CallError {
    /// Network, timeout, 5xx, 429, or an unreadable answer: try again later.
    Temporary(String),
    /// The provider answered with an OAuth error.
    Oauth {
        error: String,
        description: Option<String>,
    },
}

impl CallError {
    pub fn from_request<TE>(e: RequestTokenError<TransportError, TE>) -> Self
    where
        TE: ErrorResponse + OauthErrorParts + 'static,
    {
        match e {
            RequestTokenError::ServerResponse(r) => {
                let (error, description) = r.parts();
                CallError::Oauth { error, description }
            }
            RequestTokenError::Request(t) => CallError::Temporary(t.to_string()),
            RequestTokenError::Parse(_, body) => CallError::Temporary(format!(
                "the endpoint sent an answer that is not OAuth JSON ({} bytes)",
                body.len()
            )),
            RequestTokenError::Other(text) => CallError::Temporary(text),
        }
    }
}

/// `error` and `error_description` of an oauth2 error response.
pub(crate) trait OauthErrorParts {
    fn parts(&self) -> (String, Option<String>);
}

impl OauthErrorParts for BasicErrorResponse {
    fn parts(&self) -> (String, Option<String>) {
        (
            self.error().as_ref().to_string(),
            self.error_description().cloned(),
        )
    }
}

impl OauthErrorParts for oauth2::DeviceCodeErrorResponse {
    fn parts(&self) -> (String, Option<String>) {
        (
            self.error().as_ref().to_string(),
            self.error_description().cloned(),
        )
    }
}

/// An OAuth error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// What one form post to a token endpoint returned.
pub(crate) enum FormOutcome {
    Tokens(Box<TokenResp>),
    Error(CallError),
}

/// POSTs `form` to `url` and reads a token response or an OAuth error.
pub(crate) async fn post_token_form(
    transport: &Transport,
    url: &str,
    form: &[(&str, &str)],
) -> FormOutcome {
    let response = match transport.reqwest().post(url).form(form).send().await {
        Ok(r) => r,
        Err(e) => return FormOutcome::Error(CallError::Temporary(transport.describe(&e, url))),
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return FormOutcome::Error(CallError::Temporary(chain(&e))),
    };
    if status.is_success() {
        return match serde_json::from_slice::<TokenResp>(&body) {
            Ok(t) => FormOutcome::Tokens(Box::new(t)),
            Err(_) => FormOutcome::Error(CallError::Temporary(
                "the token endpoint sent a success answer that is not a token response".into(),
            )),
        };
    }
    if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
        return FormOutcome::Error(CallError::Temporary(format!(
            "the endpoint answered HTTP {}",
            status.as_u16()
        )));
    }
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => FormOutcome::Error(CallError::Oauth {
            error: e.error,
            description: e.error_description,
        }),
        Err(_) => FormOutcome::Error(CallError::Temporary(format!(
            "the endpoint answered HTTP {} without an OAuth error",
            status.as_u16()
        ))),
    }
}
