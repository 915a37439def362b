//! Status reasons and warnings stored with an account (Server Connection
//! Status, Token Status) in the language of the page. The store keeps the
//! English text that the library wrote (the CLI, logs and the JSON API show
//! it); the texts are recognised here by their templates and shown as the
//! matching Fluent message. Text that is not recognised, and any text a
//! remote server sent, is shown as it is.

use super::i18n::Msg;
use crate::connection::texts as C;
use crate::delivery::texts as D;
use crate::provider::Provider;
use crate::template::captures;
use crate::tls::texts as TLS;
use crate::tokens::status;

/// The texts of `TlsError::CnMismatch` and `NoCommonName`, as templates.
const CN_MISMATCH: &str = "certificate subject CN '{cn}' does not match host '{host}' (Add CN to Verification Items is on) — use a server certificate whose Common Name is the host name, or turn Add CN to Verification Items off";
const NO_CN: &str = "certificate has no subject CN to compare with host '{host}' (Add CN to Verification Items is on) — use a server certificate whose Common Name is the host name, or turn Add CN to Verification Items off";

/// Connection reasons and warnings: template and message id.
const CONNECTION: &[(&str, &str)] = &[
    (TLS::UNKNOWN_ISSUER, "reason-tls-unknown-issuer"),
    (TLS::EXPIRED, "reason-tls-expired"),
    (TLS::EXPIRED_AT, "reason-tls-expired-at"),
    (TLS::NOT_YET_VALID, "reason-tls-not-yet-valid"),
    (TLS::NOT_YET_VALID_AT, "reason-tls-not-yet-valid-at"),
    (TLS::WRONG_NAME, "reason-tls-wrong-name"),
    (TLS::NOT_TLS, "reason-tls-not-tls"),
    (TLS::ALERT, "reason-tls-alert"),
    (CN_MISMATCH, "reason-tls-cn-mismatch"),
    (NO_CN, "reason-tls-no-cn"),
    (C::VERIFY_OFF, "reason-verify-off"),
    (C::SKEW_BEHIND, "reason-skew-behind"),
    (C::SKEW_AHEAD, "reason-skew-ahead"),
    (C::TENANT_NOT_FOUND, "reason-tenant-not-found"),
    (C::PROXY_AUTH, "reason-proxy-auth"),
    (C::HTTP_404, "reason-http-404"),
    (C::HTTP_4XX, "reason-http-4xx"),
    (C::HTTP_5XX, "reason-http-5xx"),
    (C::HTTP_OTHER, "reason-http-other"),
    (C::NO_ANSWER, "reason-no-answer"),
    (C::DNS, "reason-dns"),
    (C::PROXY_FAILED, "reason-proxy-failed"),
    (C::REFUSED, "reason-refused"),
    (C::UNREACHABLE, "reason-unreachable"),
    (C::CLOSED, "reason-closed"),
    (C::CONNECT_TIMEOUT, "reason-connect-timeout"),
    (C::CONNECT_FAILED, "reason-connect-failed"),
    (C::URL_UNUSABLE, "reason-url-unusable"),
    (C::REQUEST_FAILED, "reason-request-failed"),
    (
        C::VIA_PROXY_CREDENTIALS_REFUSED,
        "reason-via-proxy-credentials-refused",
    ),
    (
        C::VIA_PROXY_CREDENTIALS_MISSING,
        "reason-via-proxy-credentials-missing",
    ),
    (C::VIA_PROXY_REFUSED, "reason-via-proxy-refused"),
    (C::VIA_PROXY_TIMEOUT, "reason-via-proxy-timeout"),
    (C::VIA_PROXY_DNS, "reason-via-proxy-dns"),
    (C::VIA_PROXY_CONNECT, "reason-via-proxy-connect"),
    (C::VIA_PROXY_FORBIDDEN, "reason-via-proxy-forbidden"),
    (C::VIA_PROXY_CLOSED, "reason-via-proxy-closed"),
    (C::VIA_PROXY_OTHER, "reason-via-proxy-other"),
];

/// Token reasons without arguments: text and message id.
const TOKEN: &[(&str, &str)] = &[
    (status::DECLINED, "reason-declined"),
    (status::CODE_EXPIRED, "reason-code-expired"),
    (status::ENDPOINT_UNREACHABLE, "reason-endpoint-unreachable"),
    (
        crate::clockjump::NO_TOKEN_AFTER_JUMP,
        "reason-no-token-after-jump",
    ),
];

/// The advice that follows "re-authorization required:", as the library
/// words it, and its message id.
fn advice_table() -> Vec<(&'static str, &'static str)> {
    let mut table: Vec<(&'static str, &'static str)> = [
        (50076, "reason-aadsts-mfa"),
        (700082, "reason-aadsts-expired"),
        (70000, "reason-aadsts-invalid-grant"),
        (65001, "reason-aadsts-consent"),
        (7000218, "reason-aadsts-public-client"),
        (700016, "reason-aadsts-app-not-found"),
        (50020, "reason-aadsts-other-tenant"),
        (90002, "reason-aadsts-tenant-not-found"),
        (50173, "reason-aadsts-revoked"),
        (70016, "reason-aadsts-pending"),
    ]
    .into_iter()
    .filter_map(|(code, key)| status::aadsts_advice(code).map(|a| (a, key)))
    .collect();
    let generic = |p, e| status::generic_advice(p, e);
    table.extend([
        (status::GOOGLE_TESTING_HINT, "reason-google-testing"),
        (
            generic(Provider::Microsoft, "invalid_grant"),
            "reason-advice-invalid-grant",
        ),
        (
            generic(Provider::Google, "invalid_client"),
            "reason-advice-google-invalid-client",
        ),
        (
            generic(Provider::Microsoft, "invalid_client"),
            "reason-advice-microsoft-invalid-client",
        ),
        (
            generic(Provider::Microsoft, "invalid_scope"),
            "reason-advice-invalid-scope",
        ),
        (
            generic(Provider::Microsoft, "access_denied"),
            "reason-advice-access-denied",
        ),
        (
            generic(Provider::Microsoft, "other"),
            "reason-advice-authorize-again",
        ),
    ]);
    table
}

fn from_table(table: &[(&'static str, &'static str)], text: &str) -> Option<Msg> {
    table.iter().find_map(|(template, key)| {
        let args = captures(template, text)?;
        Some(
            args.into_iter()
                .fold(Msg::new(key), |m, (name, value)| m.arg(name, value)),
        )
    })
}

/// One advice of a refresh failure.
fn advice(text: &str) -> Msg {
    advice_table()
        .into_iter()
        .find(|(a, _)| *a == text)
        .map(|(_, key)| Msg::new(key))
        .unwrap_or_else(|| Msg::verbatim(text))
}

/// Joins messages with the list separator of the language.
fn list(items: Vec<Msg>) -> Msg {
    let mut items = items.into_iter();
    let first = items.next().unwrap_or_else(|| Msg::verbatim(""));
    items.fold(first, |acc, m| {
        Msg::new("reason-list")
            .nested("first", acc)
            .nested("second", m)
    })
}

/// A stored token reason or warning.
pub fn token(text: &str) -> Msg {
    if let Some(m) = from_table(TOKEN, text) {
        return m;
    }
    if let Some(args) = captures(crate::store::accounts::NEW_AUTHORIZATION_ENDED, text) {
        let reason = args.into_iter().next().map(|(_, v)| v).unwrap_or_default();
        return Msg::new("reason-new-authorization-ended").nested("reason", token(&reason));
    }
    if text == crate::tokens::TokensError::AccessDenied.to_string() {
        return Msg::new("err-tokens-access-denied");
    }
    let unreachable = format!("{} ({{detail}})", status::ENDPOINT_UNREACHABLE);
    if let Some(args) = captures(&unreachable, text) {
        let detail = args.into_iter().next().map(|(_, v)| v).unwrap_or_default();
        return Msg::new("reason-endpoint-unreachable-detail").arg("detail", detail);
    }
    if let Some(rest) = text.strip_prefix(status::REAUTHORIZATION_REQUIRED) {
        let (error, advices) = match rest.strip_prefix(": ") {
            Some(a) => (None, a),
            None => match rest.strip_prefix(" (").and_then(|r| r.split_once("): ")) {
                Some((e, a)) => (Some(e), a),
                None => return Msg::verbatim(text),
            },
        };
        let advices = list(advices.split("; ").map(advice).collect());
        return match error {
            None => Msg::new("reason-reauthorize").nested("advice", advices),
            Some(e) => Msg::new("reason-reauthorize-error")
                .arg("error", e)
                .nested("advice", advices),
        };
    }
    connection(text)
}

/// A stored connection reason or warning; warnings are joined with "; "
/// (which some warnings contain themselves: the longest match wins).
pub fn connection(text: &str) -> Msg {
    let parts: Vec<&str> = text.split("; ").collect();
    let mut msgs = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let found = (i + 1..=parts.len())
            .rev()
            .find_map(|j| from_table(CONNECTION, &parts[i..j].join("; ")).map(|m| (j, m)));
        match found {
            Some((j, m)) => {
                msgs.push(m);
                i = j;
            }
            None => return Msg::verbatim(text),
        }
    }
    list(msgs)
}

/// Job replies that hikyaku writes itself: template and message id.
const JOB: &[(&str, &str)] = &[
    (D::ABANDONED, "job-reply-abandoned"),
    (D::RATE_LIMITED, "job-reply-rate-limited"),
    (D::BUSY, "job-reply-busy"),
];

/// What a job waits for, after "waiting for re-authorization of …:".
fn waiting_detail(detail: &str) -> Msg {
    let fixed: &[(&str, &'static str)] = &[
        (D::SWITCHED_OFF, "job-wait-switched-off"),
        (D::NOT_REGISTERED, "job-wait-not-registered"),
        (D::AUTHORIZING, "job-wait-authorizing"),
        (D::TOKEN_ERROR_BARE, "job-wait-token-error-bare"),
    ];
    if let Some((_, key)) = fixed.iter().find(|(t, _)| *t == detail) {
        return Msg::new(key);
    }
    if let Some(args) = captures(D::TOKEN_ERROR, detail) {
        let reason = args.into_iter().next().map(|(_, v)| v).unwrap_or_default();
        return Msg::new("job-wait-token-error").nested("reason", token(&reason));
    }
    token(detail)
}

/// A job's last reply: ours translated, the upstream server's as it came.
pub fn job(text: &str) -> Msg {
    if let Some(m) = from_table(JOB, text) {
        return m;
    }
    if let Some(args) = captures(D::WAITING, text) {
        let mut args = args.into_iter();
        let mut next = || args.next().map(|(_, v)| v).unwrap_or_default();
        let (provider, name, detail) = (next(), next(), next());
        return Msg::new("job-reply-waiting")
            .arg("provider", provider)
            .arg("name", name)
            .nested("detail", waiting_detail(&detail));
    }
    if let Some(args) = captures(D::ALL_REFUSED, text) {
        let reply = args.into_iter().next().map(|(_, v)| v).unwrap_or_default();
        return Msg::new("job-reply-all-refused").arg("reply", reply);
    }
    if let Some(args) = captures(D::CONNECT_FAILED, text) {
        let detail = args.into_iter().next().map(|(_, v)| v).unwrap_or_default();
        return Msg::new("job-reply-connect-failed").arg("detail", detail);
    }
    Msg::verbatim(text)
}

/// Audit Log details that are sentences of ours (the rest is data: names,
/// addresses, settings): text and message id.
const AUDIT: &[(&str, &str)] = &[
    ("signed out", "audit-signed-out"),
    ("wrong user name or password", "audit-login-failed"),
    ("login refused while throttled", "audit-login-throttled"),
    ("first Administrator created", "audit-setup"),
    ("authorization URL issued", "audit-google-url"),
    ("authorization code accepted", "audit-google-code"),
    ("microsoft: new user code requested", "audit-device-code"),
];

/// The prefix of the login entry's detail, followed by the role's name.
pub const SIGNED_IN_AS: &str = "signed in as ";

/// An Audit Log detail in the language of the page.
pub fn audit(detail: &str) -> Msg {
    if let Some((_, key)) = AUDIT.iter().find(|(t, _)| *t == detail) {
        return Msg::new(key);
    }
    if let Some(role) = detail
        .strip_prefix(SIGNED_IN_AS)
        .and_then(crate::roles::Role::parse)
    {
        let role = match role.as_str() {
            "administrator" => "role-administrator",
            "network_admin" => "role-network_admin",
            _ => "role-general_user",
        };
        return Msg::new("audit-signed-in").nested("role", Msg::new(role));
    }
    Msg::verbatim(detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::fill;
    use crate::web::i18n::{Locale, Tr};

    fn ja(m: &Msg) -> String {
        m.render(&Tr::new(Locale::Ja))
    }

    #[test]
    fn connection_reasons_are_translated_with_their_arguments() {
        let text = fill(C::REFUSED, &[("target", "localhost:1")]);
        let m = connection(&text);
        assert_eq!(m.key, "reason-refused");
        assert_eq!(m.en(), text, "the English message is the library's text");
        assert!(ja(&m).contains("localhost:1"), "{}", ja(&m));
        assert!(!ja(&m).contains("refused"), "{}", ja(&m));
        // Every template is recognised, and its English message is the same text.
        for (template, key) in CONNECTION {
            let m = connection(template);
            assert_eq!(m.key, *key, "{template}");
        }
        let both = format!(
            "{}; {}",
            C::VERIFY_OFF,
            fill(C::SKEW_AHEAD, &[("secs", "400")])
        );
        assert!(ja(&connection(&both)).contains("400"));
        assert_eq!(connection("from a server").key, "verbatim");
    }

    #[test]
    fn job_replies_of_ours_are_translated() {
        let waiting = fill(
            D::WAITING,
            &[
                ("provider", "Microsoft"),
                ("name", "microsoft"),
                (
                    "detail",
                    &fill(D::TOKEN_ERROR, &[("reason", status::DECLINED)]),
                ),
            ],
        );
        let m = job(&waiting);
        assert_eq!(m.en(), waiting);
        assert!(ja(&m).contains("ユーザーが拒否しました"), "{}", ja(&m));
        for detail in [
            D::SWITCHED_OFF,
            D::NOT_REGISTERED,
            D::AUTHORIZING,
            D::TOKEN_ERROR_BARE,
        ] {
            assert_ne!(waiting_detail(detail).key, "verbatim", "{detail}");
            assert_eq!(waiting_detail(detail).en(), detail);
        }
        for (template, key) in JOB {
            assert_eq!(job(template).key, *key);
            assert_eq!(job(template).en(), *template);
        }
        let refused = fill(D::ALL_REFUSED, &[("reply", "550 5.1.1 <x>: no such user")]);
        assert!(ja(&job(&refused)).contains("550 5.1.1 <x>: no such user"));
        assert_eq!(job("250 2.0.0 OK").key, "verbatim");
    }

    #[test]
    fn connect_failures_and_ended_reauthorizations_are_translated() {
        let text = fill(
            D::CONNECT_FAILED,
            &[("detail", "smtp.example:587: refused")],
        );
        let m = job(&text);
        assert_eq!(m.key, "job-reply-connect-failed");
        assert_eq!(m.en(), text);
        assert!(ja(&m).contains("smtp.example:587: refused") && ja(&m).contains("(接続時)"));
        let text = fill(
            crate::store::accounts::NEW_AUTHORIZATION_ENDED,
            &[("reason", status::DECLINED)],
        );
        let m = token(&text);
        assert_eq!(m.key, "reason-new-authorization-ended");
        assert_eq!(m.en(), text);
        assert!(
            ja(&m).contains("新しい認可は完了しませんでした")
                && ja(&m).contains("ユーザーが拒否しました"),
            "{}",
            ja(&m)
        );
    }

    #[test]
    fn audit_details_of_ours_are_translated() {
        for (text, _) in AUDIT {
            assert_eq!(audit(text).en(), *text);
            assert_ne!(ja(&audit(text)), *text);
        }
        let m = audit("signed in as administrator");
        assert_eq!(m.en(), "signed in as Administrator");
        assert_eq!(ja(&m), "Administratorとしてログイン");
        assert_eq!(audit("bob (general_user)").key, "verbatim");
    }

    #[test]
    fn cn_templates_are_the_tls_errors_texts() {
        use crate::tls::TlsError;
        let e = TlsError::CnMismatch {
            cn: "a".into(),
            host: "b".into(),
        };
        assert_eq!(
            e.to_string(),
            fill(CN_MISMATCH, &[("cn", "a"), ("host", "b")])
        );
        let e = TlsError::NoCommonName { host: "b".into() };
        assert_eq!(e.to_string(), fill(NO_CN, &[("host", "b")]));
        assert_eq!(connection(&e.to_string()).key, "reason-tls-no-cn");
    }

    #[test]
    fn token_reasons_are_translated() {
        assert_eq!(token(status::DECLINED).key, "reason-declined");
        assert_eq!(token(status::DECLINED).en(), status::DECLINED);
        let r = status::refresh_failure_reason(
            Provider::Microsoft,
            "invalid_grant",
            Some("AADSTS50173: The provided grant has expired. Trace ID: 1"),
            None,
            0,
        );
        let m = token(&r);
        assert_eq!(m.key, "reason-reauthorize", "{r}");
        assert_eq!(m.en(), r);
        assert!(!ja(&m).contains("authorize again"), "{}", ja(&m));
        let r = status::refresh_failure_reason(Provider::Google, "invalid_client", None, None, 0);
        assert_eq!(token(&r).en(), r);
        assert!(ja(&token(&r)).contains("invalid_client"));
        for (text, _) in advice_table() {
            assert_ne!(advice(text).key, "verbatim", "{text}");
            assert_eq!(advice(text).en(), text);
        }
    }
}
