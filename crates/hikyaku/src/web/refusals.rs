//! The Remote UI's and the API's side of the operations' refusals: each
//! [`Problem`] as its Fluent message, and [`AdminError`] as a [`WebError`].

use super::errors::WebError;
use super::i18n::Msg;
use super::messages;
use crate::admin::{AdminError, Problem};
use crate::store::{Conflict, StoreError};

/// The message of one thing to correct.
pub fn problem(p: &Problem) -> Msg {
    match p {
        Problem::UnknownRole(role) => Msg::new("err-unknown-role").arg("role", role),
        Problem::UnknownProvider(name) => Msg::new("err-unknown-provider").arg("provider", name),
        Problem::NameInvalid => Msg::new("name-invalid"),
        Problem::PasswordTooShort => Msg::new("password-too-short"),
        Problem::Endpoint(e) => messages::endpoint_field(e),
        Problem::EndpointMissing => Msg::new("err-ms-endpoint-missing"),
        Problem::MicrosoftClientIdMissing => Msg::new("err-ms-client-id-missing"),
        Problem::GoogleClientIdMissing => Msg::new("err-google-client-id-missing"),
        Problem::GoogleClientSecretMissing => Msg::new("err-google-client-secret-missing"),
        Problem::ClientIdSpaces => Msg::new("err-client-id-spaces"),
        Problem::ClientIdInvalid => Msg::new("err-client-id-invalid"),
        Problem::MicrosoftOff => Msg::new("err-microsoft-off"),
        Problem::GoogleOff => Msg::new("err-google-off"),
        Problem::TokenNotActive => Msg::new("err-token-not-active"),
        Problem::App(p) => crate::web::pages::app::problem(p),
        Problem::Message(e) => messages::local(e),
        Problem::SmtpHost(host) => Msg::new("err-smtp-host").arg("host", host),
        Problem::SmtpPort => Msg::new("err-smtp-port"),
        Problem::SmtpSecurity => Msg::new("err-smtp-security"),
        Problem::Sender(sender) => Msg::new("err-sender").arg("sender", sender),
        Problem::Proxy(p) => messages::proxy(p),
        Problem::Cidr(e) => messages::cidr(e),
        Problem::Ca(e) => messages::ca(e),
        Problem::CaTextTooLarge { limit } => Msg::new("err-ca-text-too-large").arg("limit", limit),
        Problem::TooManyCas { limit } => Msg::new("err-too-many-cas").arg("limit", limit),
        Problem::UnknownTimeZone(zone) => Msg::new("err-unknown-time-zone").arg("zone", zone),
        Problem::CurrentPasswordWrong => Msg::new("err-current-password"),
        Problem::UnknownUser(name) => Msg::new("err-unknown-user").arg("name", name),
        Problem::TokenNameInvalid => Msg::new("err-token-name"),
        Problem::TokenRoleAboveUser { role, user_role } => Msg::new("err-token-role-above-user")
            .arg("role", *role)
            .arg("user_role", *user_role),
        Problem::ExpiresIn(text) => Msg::new("err-token-expires-in").arg("text", text),
        Problem::TokenOwnerMissing => Msg::new("err-token-owner-missing"),
        Problem::AccountNameInvalid => Msg::new("err-account-name"),
        Problem::UnknownAccount(name) => Msg::new("err-unknown-account").arg("name", name),
        Problem::UnknownCloud(cloud) => Msg::new("err-unknown-cloud").arg("cloud", cloud),
        Problem::CloudNotOffered(cloud) => Msg::new("err-cloud-not-offered").arg("cloud", cloud),
        Problem::UnknownTransport(t) => Msg::new("err-unknown-transport").arg("transport", t),
        Problem::TransportNotFor(t) => Msg::new("err-transport-not-for").arg("transport", t),
        Problem::GraphLargeNotFor => Msg::new("err-graph-large-not-for"),
        Problem::UnknownCredentialKind(kind) => {
            Msg::new("err-unknown-credential-kind").arg("kind", kind)
        }
        Problem::CredentialKindNotFor(kind) => {
            Msg::new("err-credential-kind-not-for").arg("kind", kind)
        }
        Problem::MailboxInvalid(m) => Msg::new("err-mailbox-invalid").arg("mailbox", m),
        Problem::MailboxMissing => Msg::new("err-mailbox-missing"),
        Problem::SendAsInvalid(entry) => Msg::new("err-send-as-invalid").arg("entry", entry),
        Problem::SendAsTooMany { limit } => Msg::new("err-send-as-too-many").arg("limit", limit),
        Problem::RateInvalid { max } => Msg::new("err-rate-invalid").arg("max", max),
        Problem::ConnectionsInvalid { max } => Msg::new("err-connections-invalid").arg("max", max),
        Problem::SmtpScopeInvalid => Msg::new("err-smtp-scope-invalid"),
        Problem::GraphHostInvalid(host) => Msg::new("err-graph-host-invalid").arg("host", host),
        Problem::JobsWaiting { count } => Msg::new("err-jobs-waiting").arg("count", count),
        Problem::MoveToSameAccount => Msg::new("err-move-to-same-account"),
    }
}

/// The messages of every problem, in order.
pub fn problems(list: &[Problem]) -> Vec<Msg> {
    list.iter().map(problem).collect()
}

impl From<AdminError> for WebError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Forbidden => WebError::Forbidden,
            AdminError::Invalid(list) => match list.first() {
                Some(p) => WebError::BadRequest(problem(p)),
                None => WebError::Internal("a refusal without a reason".into()),
            },
            AdminError::Store(e) => e.into(),
            AdminError::Tokens(e) => e.into(),
            e @ (AdminError::Secrets(_) | AdminError::Proxy(_) | AdminError::Hash(_)) => {
                WebError::Internal(e.to_string())
            }
        }
    }
}

/// What a page shows beside its form again: the problems to correct, or a
/// conflict with what exists (a name taken, the last Administrator). Any
/// other failure is the request's error.
pub fn form_errors(e: AdminError) -> Result<Vec<Msg>, WebError> {
    match e {
        AdminError::Invalid(list) => Ok(problems(&list)),
        AdminError::Store(StoreError::Conflict(c)) if !matches!(c, Conflict::Corrupt(_)) => {
            Ok(vec![messages::conflict(&c)])
        }
        e => Err(e.into()),
    }
}
