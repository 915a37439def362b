//! The Fluent message of each typed error that reaches a user. The library
//! (store, tokens, tls, proxy) keeps its English `Display` texts for logs and
//! the CLI; the Remote UI shows these translations instead.

use super::i18n::Msg;
use crate::intake::cidr::CidrError;
use crate::intake::local::LocalError;
use crate::proxy::ProxyProblem;
use crate::store::Conflict;
use crate::tls::TlsError;
use crate::tokens::{EndpointError, PasteProblem, Setup, TokensError};

pub fn conflict(c: &Conflict) -> Msg {
    match c {
        Conflict::UserExists(name) => Msg::new("err-user-exists").arg("name", name),
        Conflict::ApiTokenExists(name) => Msg::new("err-api-token-exists").arg("name", name),
        Conflict::SubmitterExists(name) => Msg::new("err-submitter-exists").arg("name", name),
        Conflict::AllowEntryExists(cidr) => Msg::new("err-allow-entry-exists").arg("cidr", cidr),
        Conflict::CaExists(subject) => Msg::new("err-ca-exists").arg("subject", subject),
        Conflict::AccountExists(name) => Msg::new("err-account-exists").arg("name", name),
        Conflict::LastAdministrator => Msg::new("err-last-admin"),
        Conflict::SetupComplete => Msg::new("setup-used"),
        Conflict::SetupLinkInvalid => Msg::new("setup-invalid"),
        Conflict::JobNotRetryable => Msg::new("err-job-not-retryable"),
        Conflict::JobNotDeletable => Msg::new("err-job-not-deletable"),
        Conflict::Corrupt(detail) => Msg::new("err-internal-detail").arg("detail", detail),
    }
}

pub fn endpoint(e: &EndpointError) -> Msg {
    let m = match e {
        EndpointError::Empty => Msg::new("err-endpoint-empty"),
        EndpointError::NotUrl(detail) => Msg::new("err-endpoint-not-url").arg("detail", detail),
        EndpointError::NotHttps(scheme) => Msg::new("err-endpoint-not-https").arg("scheme", scheme),
        EndpointError::NoHost => Msg::new("err-endpoint-no-host"),
        EndpointError::Credentials => Msg::new("err-endpoint-credentials"),
        EndpointError::QueryOrFragment => Msg::new("err-endpoint-query"),
        EndpointError::WrongPath(path) => Msg::new("err-endpoint-path").arg("path", path),
        EndpointError::NoTenant => Msg::new("err-endpoint-no-tenant"),
        EndpointError::TenantSegments(path) => {
            Msg::new("err-endpoint-tenant-segments").arg("path", path)
        }
        EndpointError::BadTenant(tenant) => {
            Msg::new("err-endpoint-bad-tenant").arg("tenant", tenant)
        }
    };
    m.arg("example", EndpointError::EXAMPLE)
}

/// The endpoint field's problem, named with the field.
pub fn endpoint_field(e: &EndpointError) -> Msg {
    Msg::new("err-ms-endpoint").nested("reason", endpoint(e))
}

pub fn setup(s: &Setup) -> Msg {
    match s {
        Setup::WrongProvider(p) => Msg::new("err-setup-wrong-provider").arg("provider", p.as_str()),
        Setup::MicrosoftOff => Msg::new("err-setup-microsoft-off"),
        Setup::GoogleOff => Msg::new("err-setup-google-off"),
        Setup::Endpoint(e) => endpoint_field(e),
        Setup::MicrosoftClientId => Msg::new("err-setup-microsoft-client-id"),
        Setup::GoogleClientId => Msg::new("err-setup-google-client-id"),
        Setup::GoogleClientSecret => Msg::new("err-setup-google-client-secret"),
        Setup::BadUrl(detail) => Msg::new("err-setup-bad-url").arg("detail", detail),
        Setup::Transport(detail) => Msg::new("err-setup-transport").arg("detail", detail),
        Setup::AppCredentials => Msg::new("err-setup-app-credentials"),
        Setup::AppKey(detail) => Msg::new("err-setup-app-key").arg("detail", detail),
    }
}

pub fn paste(p: &PasteProblem) -> Msg {
    Msg::new(match p {
        PasteProblem::Empty => "err-paste-empty",
        PasteProblem::TooLong => "err-paste-too-long",
        PasteProblem::CodeEscape => "err-paste-code-escape",
        PasteProblem::NoCode => "err-paste-no-code",
        PasteProblem::EmptyCode => "err-paste-empty-code",
        PasteProblem::CodeTooLong => "err-paste-code-too-long",
        PasteProblem::CodeCharacters => "err-paste-code-characters",
        PasteProblem::AddressEscape => "err-paste-address-escape",
    })
}

pub fn tokens(e: &TokensError) -> Msg {
    match e {
        TokensError::NoAccount(id) => Msg::new("err-tokens-no-account").arg("id", id),
        TokensError::NotConfigured(s) => setup(s),
        TokensError::NotAuthorized => Msg::new("err-tokens-not-authorized"),
        TokensError::ReauthorizationRequired(reason) | TokensError::AppRefused(reason) => {
            reason.msg()
        }
        TokensError::Temporary(detail) => Msg::new("err-tokens-temporary").arg("detail", detail),
        TokensError::Provider(detail) => Msg::new("err-tokens-provider").arg("detail", detail),
        TokensError::CodeRejected => Msg::new("err-tokens-code-rejected"),
        TokensError::StateMismatch => Msg::new("err-tokens-state-mismatch"),
        TokensError::RedirectUriMismatch => Msg::new("err-tokens-redirect-uri-mismatch"),
        TokensError::InvalidClient => Msg::new("err-tokens-invalid-client"),
        TokensError::AccessDenied => Msg::new("err-tokens-access-denied"),
        TokensError::NoPendingAuthorization => Msg::new("err-tokens-no-pending"),
        TokensError::Pasted(p) => paste(p),
        TokensError::Store(crate::store::StoreError::Conflict(c)) => conflict(c),
        TokensError::Store(crate::store::StoreError::Full) => Msg::new("err-disk-full"),
        TokensError::Store(_) | TokensError::Secrets(_) => Msg::new("error-title"),
    }
}

/// A refused CA certificate upload.
pub fn ca(e: &TlsError) -> Msg {
    match e {
        TlsError::NoCertificates => Msg::new("err-ca-no-certificates"),
        TlsError::Pem { index, reason } => Msg::new("err-ca-pem")
            .arg("index", index)
            .arg("reason", reason),
        TlsError::Malformed { index, reason } => Msg::new("err-ca-malformed")
            .arg("index", index)
            .arg("reason", reason),
        TlsError::NotCa { index, subject } => Msg::new("err-ca-not-ca")
            .arg("index", index)
            .arg("subject", subject),
        TlsError::Expired {
            index,
            subject,
            not_after,
        } => Msg::new("err-ca-expired")
            .arg("index", index)
            .arg("subject", subject)
            .arg("date", not_after),
        TlsError::NotYetValid {
            index,
            subject,
            not_before,
        } => Msg::new("err-ca-not-yet-valid")
            .arg("index", index)
            .arg("subject", subject)
            .arg("date", not_before),
        other => Msg::new("err-ca-other").arg("detail", other),
    }
}

pub fn proxy(p: &ProxyProblem) -> Msg {
    match p {
        ProxyProblem::HostHasScheme(h) => Msg::new("err-proxy-host-scheme").arg("host", h),
        ProxyProblem::HostHasCredentials(h) => {
            Msg::new("err-proxy-host-credentials").arg("host", h)
        }
        ProxyProblem::HostHasPort(h) => Msg::new("err-proxy-host-port").arg("host", h),
        ProxyProblem::HostInvalid(h) => Msg::new("err-proxy-host-invalid").arg("host", h),
        ProxyProblem::Port(p) => Msg::new("err-proxy-port").arg("port", p),
        ProxyProblem::UserName => Msg::new("err-proxy-username"),
        ProxyProblem::Password => Msg::new("err-proxy-password"),
        ProxyProblem::PasswordWithoutUser => Msg::new("err-proxy-password-without-user"),
        ProxyProblem::NoProxyTooMany(n) => Msg::new("err-proxy-no-proxy-too-many")
            .arg("count", n)
            .arg("max", ProxyProblem::MAX_NO_PROXY),
        ProxyProblem::NoProxyEntry(e) => Msg::new("err-proxy-no-proxy-entry").arg("entry", e),
    }
}

pub fn cidr(e: &CidrError) -> Msg {
    match e {
        CidrError::NotAddress(t) => Msg::new("err-cidr-not-address").arg("text", t),
        CidrError::Prefix(t, max) => Msg::new("err-cidr-prefix").arg("text", t).arg("max", max),
        CidrError::Everything => Msg::new("err-cidr-everything"),
    }
}

/// A refused address or message of Send Test E-mail.
pub fn local(e: &LocalError) -> Msg {
    match e {
        LocalError::Address(address, _) => Msg::new("err-address").arg("address", address),
        other => Msg::new("err-message-build").arg("detail", other),
    }
}
