//! Job replies in the language of the page. They are still stored as the
//! English text that the library wrote, and recognised here by their
//! templates. This is what remains of the pattern matching once account
//! reasons and audit details became data ([`crate::i18n::Reason`]); it goes
//! when job replies are data too. A job reply that waits for
//! re-authorization quotes the account's token reason in English, so token
//! and connection reasons are recognised here as well, by their English in
//! `locales/en/main.ftl`. Text that is not recognised, and any text a remote
//! server sent, is shown as it is.

use crate::delivery::texts as D;
use crate::i18n::{Msg, Reason};
use crate::template::captures;

/// The English of a reason with its arguments as `{holes}`.
fn template(code: &str, args: &[&str]) -> String {
    args.iter()
        .fold(Reason::new(code), |r, name| {
            r.arg(name, format!("{{{name}}}"))
        })
        .to_string()
}

/// Connection reasons and warnings, by code.
const CONNECTION: &[(&str, &[&str])] = &[
    ("tls-unknown-issuer", &[]),
    ("tls-expired", &[]),
    ("tls-expired-at", &["not_after", "now"]),
    ("tls-not-yet-valid", &[]),
    ("tls-not-yet-valid-at", &["not_before", "now"]),
    ("tls-wrong-name", &["host", "names"]),
    ("tls-not-tls", &[]),
    ("tls-alert", &["alert"]),
    ("tls-cn-mismatch", &["cn", "host"]),
    ("tls-no-cn", &["host"]),
    ("verify-off", &[]),
    ("skew-behind", &["secs"]),
    ("skew-ahead", &["secs"]),
    ("tenant-not-found", &["code"]),
    ("proxy-auth", &[]),
    ("http-404", &["status"]),
    ("http-4xx", &["status"]),
    ("http-5xx", &["status"]),
    ("http-other", &["status"]),
    ("no-answer", &["target", "secs"]),
    ("dns", &["host"]),
    ("proxy-failed", &["detail"]),
    ("refused", &["target"]),
    ("unreachable", &["target"]),
    ("closed", &["target"]),
    ("connect-timeout", &["target"]),
    ("connect-failed", &["target", "detail"]),
    ("url-unusable", &["url", "detail"]),
    ("request-failed", &["target", "detail"]),
    ("via-proxy-credentials-refused", &["proxy"]),
    ("via-proxy-credentials-missing", &["proxy"]),
    ("via-proxy-refused", &["proxy"]),
    ("via-proxy-timeout", &["proxy"]),
    ("via-proxy-dns", &["host"]),
    ("via-proxy-connect", &["proxy", "detail"]),
    ("via-proxy-forbidden", &["proxy", "target"]),
    ("via-proxy-closed", &["proxy", "target"]),
    ("via-proxy-other", &["proxy", "target", "detail"]),
];

/// Token reasons, by code.
const TOKEN: &[(&str, &[&str])] = &[
    ("declined", &[]),
    ("code-expired", &[]),
    ("endpoint-unreachable", &[]),
    ("endpoint-unreachable-detail", &["detail"]),
    ("no-token-after-jump", &[]),
    ("reauthorize-bare", &[]),
    ("access-denied", &[]),
];

/// The advice after "re-authorization required:", by code.
const ADVICE: &[&str] = &[
    "aadsts-mfa",
    "aadsts-expired",
    "aadsts-invalid-grant",
    "aadsts-consent",
    "aadsts-public-client",
    "aadsts-app-not-found",
    "aadsts-other-tenant",
    "aadsts-tenant-not-found",
    "aadsts-revoked",
    "aadsts-pending",
    "google-testing",
    "advice-invalid-grant",
    "advice-google-invalid-client",
    "advice-microsoft-invalid-client",
    "advice-invalid-scope",
    "advice-access-denied",
    "advice-authorize-again",
];

/// The reason whose English `text` is, with its arguments.
fn from_table(codes: &[(&str, &[&str])], text: &str) -> Option<Reason> {
    codes.iter().find_map(|(code, args)| {
        let template = template(code, args);
        let args = captures(&template, text)?;
        Some(
            args.into_iter()
                .fold(Reason::new(code), |r, (name, value)| r.arg(name, value)),
        )
    })
}

/// The value of the only hole of `code`'s template in `text`.
fn only_arg(code: &str, arg: &str, text: &str) -> Option<String> {
    let template = template(code, &[arg]);
    captures(&template, text)?
        .into_iter()
        .next()
        .map(|(_, v)| v)
}

/// A token reason quoted in a job reply.
fn token(text: &str) -> Reason {
    if let Some(r) = from_table(TOKEN, text) {
        return r;
    }
    if let Some(reason) = only_arg("new-authorization-ended", "reason", text) {
        return Reason::new("new-authorization-ended").nested("reason", token(&reason));
    }
    let advice = |a: String| {
        let items = a.split("; ").map(|item| {
            ADVICE
                .iter()
                .find(|code| Reason::new(code).to_string() == item)
                .map(|code| Reason::new(code))
                .unwrap_or_else(|| Reason::text(item))
        });
        Reason::list(items).unwrap_or_else(|| Reason::text(""))
    };
    if let Some(a) = only_arg("reauthorize", "advice", text) {
        return Reason::new("reauthorize").nested("advice", advice(a));
    }
    let with_error = template("reauthorize-error", &["error", "advice"]);
    if let Some(args) = captures(&with_error, text) {
        let mut args = args.into_iter();
        let mut next = || args.next().map(|(_, v)| v).unwrap_or_default();
        let (error, a) = (next(), next());
        return Reason::new("reauthorize-error")
            .arg("error", error)
            .nested("advice", advice(a));
    }
    connection(text)
}

/// A connection reason or warning; warnings are joined with "; " (which
/// some warnings contain themselves: the longest match wins).
fn connection(text: &str) -> Reason {
    let parts: Vec<&str> = text.split("; ").collect();
    let mut reasons = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let found = (i + 1..=parts.len())
            .rev()
            .find_map(|j| from_table(CONNECTION, &parts[i..j].join("; ")).map(|r| (j, r)));
        match found {
            Some((j, r)) => {
                reasons.push(r);
                i = j;
            }
            None => return Reason::text(text),
        }
    }
    Reason::list(reasons).unwrap_or_else(|| Reason::text(text))
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
        return Msg::new(*key);
    }
    if let Some(args) = captures(D::TOKEN_ERROR, detail) {
        let reason = args.into_iter().next().map(|(_, v)| v).unwrap_or_default();
        return Msg::new("job-wait-token-error").nested("reason", token(&reason).msg());
    }
    token(detail).msg()
}

/// A job's last reply: ours translated, the upstream server's as it came.
pub fn job(text: &str) -> Msg {
    for (template, key) in JOB {
        if let Some(args) = captures(template, text) {
            return args
                .into_iter()
                .fold(Msg::new(*key), |m, (name, value)| m.arg(name, value));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::{Locale, Tr};
    use crate::template::fill;
    use crate::tokens::status;

    fn ja(m: &Msg) -> String {
        m.render(&Tr::new(Locale::Ja))
    }

    fn waiting(detail: &str) -> String {
        fill(
            D::WAITING,
            &[
                ("provider", "Microsoft"),
                ("name", "microsoft"),
                ("detail", detail),
            ],
        )
    }

    #[test]
    fn job_replies_of_ours_are_translated() {
        let declined = status::declined().to_string();
        let waiting = waiting(&fill(D::TOKEN_ERROR, &[("reason", &declined)]));
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
    fn connect_failures_are_translated() {
        let text = fill(
            D::CONNECT_FAILED,
            &[("detail", "smtp.example:587: refused")],
        );
        let m = job(&text);
        assert_eq!(m.key, "job-reply-connect-failed");
        assert_eq!(m.en(), text);
        assert!(ja(&m).contains("smtp.example:587: refused") && ja(&m).contains("(接続時)"));
    }

    #[test]
    fn token_reasons_quoted_in_job_replies_are_recognised() {
        let reasons = [
            status::declined(),
            status::code_expired(),
            status::access_denied(),
            status::reauthorization_required(),
            crate::clockjump::no_token_after_jump(),
            crate::store::accounts::new_authorization_ended(Some(&status::declined())),
            status::refresh_failure_reason(
                crate::provider::Provider::Microsoft,
                "invalid_grant",
                Some("AADSTS50173: The provided grant has expired. Trace ID: 1"),
                None,
                0,
            ),
            status::refresh_failure_reason(
                crate::provider::Provider::Google,
                "invalid_client",
                None,
                None,
                0,
            ),
        ];
        for r in reasons {
            assert_eq!(token(&r.to_string()), r, "{r}");
        }
        for code in ADVICE {
            let r = Reason::new("reauthorize").nested("advice", Reason::new(code));
            assert_eq!(token(&r.to_string()), r, "{code}");
        }
        let text = waiting(&fill(
            D::TOKEN_ERROR,
            &[("reason", &status::code_expired().to_string())],
        ));
        assert!(!ja(&job(&text)).contains("expired"), "{}", ja(&job(&text)));
    }

    #[test]
    fn connection_reasons_quoted_in_job_replies_are_recognised() {
        // Every code is recognised from its English, with its arguments.
        for (code, args) in CONNECTION {
            assert_eq!(connection(&template(code, args)).code, *code, "{code}");
        }
        let r = Reason::list([
            Reason::new("verify-off"),
            Reason::new("skew-ahead").arg("secs", 400),
        ])
        .unwrap();
        assert_eq!(connection(&r.to_string()), r);
        assert_eq!(connection("from a server").code, "text");
    }
}
