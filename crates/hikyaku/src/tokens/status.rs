//! Token status (what the Remote UI shows as `[トークンの稼働状況] / Token Status`)
//! and the mapping of provider error codes to advice that says what to do.

use crate::i18n::Reason;
use crate::provider::Provider;

/// Kept with the account in the store; named here too, where it is decided.
pub use crate::store::accounts::TokenStatus;

/// The warning shown (status stays Active) while the token endpoint cannot be reached.
pub fn endpoint_unreachable() -> Reason {
    Reason::new("endpoint-unreachable")
}

/// Reason after the user declined on the device login page.
pub fn declined() -> Reason {
    Reason::new("declined")
}

/// Reason after the user code expired unused.
pub fn code_expired() -> Reason {
    Reason::new("code-expired")
}

/// Reason after the user chose Cancel on Google's consent page.
pub fn access_denied() -> Reason {
    Reason::new("access-denied")
}

/// The first `AADSTS<digits>` code in a Microsoft `error_description`.
pub fn aadsts_code(description: &str) -> Option<u32> {
    let start = description.find("AADSTS")? + "AADSTS".len();
    let digits: String = description[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Advice for an AADSTS code (protocols.md §1), or `None` for codes without one.
pub fn aadsts_advice(code: u32) -> Option<Reason> {
    let code = match code {
        50076 | 50079 => "aadsts-mfa",
        700082 | 70008 => "aadsts-expired",
        70000 => "aadsts-invalid-grant",
        65001 => "aadsts-consent",
        7000218 => "aadsts-public-client",
        700016 => "aadsts-app-not-found",
        50020 => "aadsts-other-tenant",
        90002 => "aadsts-tenant-not-found",
        50173 | 50133 => "aadsts-revoked",
        70016 => "aadsts-pending",
        _ => return None,
    };
    Some(Reason::new(code))
}

/// The hint shown when Google says `invalid_grant` about 7 days after the
/// authorization: refresh tokens of External apps in "Testing" status die then.
pub fn google_testing_hint() -> Reason {
    Reason::new("google-testing")
}

/// Whether an `invalid_grant` at `now` fits the 7-day expiry of testing apps.
pub fn google_seven_day_expiry(authorized_at: Option<i64>, now: i64) -> bool {
    const DAY: i64 = 86_400;
    authorized_at.is_some_and(|at| {
        let age = now.saturating_sub(at);
        (6 * DAY..=8 * DAY).contains(&age)
    })
}

/// The token reason for a refresh that failed permanently: re-authorization
/// required, with what to do. `error` is the provider's OAuth error code.
pub fn refresh_failure_reason(
    provider: Provider,
    error: &str,
    description: Option<&str>,
    authorized_at: Option<i64>,
    now: i64,
) -> Reason {
    let mut advice: Vec<Reason> = Vec::new();
    match provider {
        Provider::Microsoft => {
            if let Some(a) = description.and_then(aadsts_code).and_then(aadsts_advice) {
                advice.push(a);
            }
        }
        Provider::Google => {
            if error == "invalid_grant" && google_seven_day_expiry(authorized_at, now) {
                advice.push(google_testing_hint());
            }
        }
    }
    let advice = Reason::list(advice).unwrap_or_else(|| generic_advice(provider, error));
    match error {
        "invalid_grant" => Reason::new("reauthorize").nested("advice", advice),
        other => Reason::new("reauthorize-error")
            .arg("error", other)
            .nested("advice", advice),
    }
}

/// The token reason when a stored refresh token may not be used and no
/// reason was stored with it.
pub fn reauthorization_required() -> Reason {
    Reason::new("reauthorize-bare")
}

/// Advice by OAuth error name when no AADSTS code helps.
pub fn generic_advice(provider: Provider, error: &str) -> Reason {
    Reason::new(match (provider, error) {
        (_, "invalid_grant") => "advice-invalid-grant",
        (Provider::Google, "invalid_client") => "advice-google-invalid-client",
        (Provider::Microsoft, "invalid_client") | (Provider::Microsoft, "unauthorized_client") => {
            "advice-microsoft-invalid-client"
        }
        (_, "invalid_scope") => "advice-invalid-scope",
        (_, "access_denied") => "advice-access-denied",
        _ => "advice-authorize-again",
    })
}

/// A short, user-facing description of a provider error: its `error`, the
/// AADSTS advice when there is one, and the description's first sentence
/// (Microsoft's descriptions end with trace ids that help no administrator).
/// The error and the description are the provider's words, kept as they are.
pub fn provider_error_reason(provider: Provider, error: &str, description: Option<&str>) -> Reason {
    let advice = description
        .filter(|_| provider == Provider::Microsoft)
        .and_then(aadsts_code)
        .and_then(aadsts_advice);
    let detail = description.map(first_part).filter(|d| !d.is_empty());
    match (advice, detail) {
        (Some(a), Some(d)) => Reason::new("provider-error-advice-detail")
            .nested("advice", a)
            .arg("detail", d),
        (Some(a), None) => Reason::new("provider-error-advice").nested("advice", a),
        (None, Some(d)) => Reason::new("provider-error-detail").arg("detail", d),
        (None, None) => {
            Reason::new("provider-error-advice").nested("advice", generic_advice(provider, error))
        }
    }
    .arg("error", error)
}

/// The English of [`provider_error_reason`].
pub fn describe_provider_error(
    provider: Provider,
    error: &str,
    description: Option<&str>,
) -> String {
    provider_error_reason(provider, error, description).to_string()
}

/// The description without Microsoft's `Trace ID: … Correlation ID: … Timestamp: …` tail, at most 300 chars.
fn first_part(description: &str) -> String {
    let cut = description.find(" Trace ID:").unwrap_or(description.len());
    let text = description[..cut].trim();
    let mut out: String = text.chars().take(300).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_round_trip() {
        for s in [
            TokenStatus::NotRegistered,
            TokenStatus::Authorizing,
            TokenStatus::Active,
            TokenStatus::Error,
        ] {
            assert_eq!(TokenStatus::parse(s.as_str()), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(TokenStatus::parse("bogus"), TokenStatus::Error);
    }

    #[test]
    fn aadsts_codes_are_found_and_mapped() {
        let d = "AADSTS7000218: The request body must contain client_assertion. Trace ID: x Correlation ID: y";
        assert_eq!(aadsts_code(d), Some(7_000_218));
        assert!(
            aadsts_advice(7_000_218)
                .unwrap()
                .to_string()
                .contains("Allow public client flows")
        );
        assert_eq!(aadsts_code("no code here"), None);
        assert_eq!(aadsts_code("AADSTS"), None);
        assert_eq!(aadsts_code("AADSTS50076x"), Some(50076));
        for code in [
            50076, 50079, 700082, 70008, 70000, 65001, 7000218, 700016, 50020, 90002, 50173, 50133,
        ] {
            assert!(aadsts_advice(code).is_some(), "{code}");
        }
        assert!(aadsts_advice(12345).is_none());
        assert!(
            aadsts_advice(65001)
                .unwrap()
                .to_string()
                .contains("consent")
        );
        assert!(
            aadsts_advice(50076)
                .unwrap()
                .to_string()
                .contains("multi-factor")
        );
        assert!(aadsts_advice(90002).unwrap().to_string().contains("tenant"));
    }

    #[test]
    fn refresh_failure_reasons_say_reauthorize_with_advice() {
        let r = refresh_failure_reason(
            Provider::Microsoft,
            "invalid_grant",
            Some(
                "AADSTS50173: The provided grant has expired due to it being revoked. Trace ID: 1",
            ),
            None,
            0,
        );
        let r = r.to_string();
        assert!(r.starts_with("re-authorization required"), "{r}");
        assert!(r.contains("password"), "{r}");
        assert!(!r.contains("Trace ID"));

        let day = 86_400;
        let g = refresh_failure_reason(
            Provider::Google,
            "invalid_grant",
            Some("Token has been expired or revoked."),
            Some(0),
            7 * day,
        );
        let g = g.to_string();
        assert!(g.contains("Testing"), "{g}");
        let g2 = refresh_failure_reason(Provider::Google, "invalid_grant", None, Some(0), 2 * day)
            .to_string();
        assert!(!g2.contains("Testing"), "{g2}");
        assert!(g2.starts_with("re-authorization required"));
        assert!(!google_seven_day_expiry(None, 7 * day));
        assert!(google_seven_day_expiry(Some(day), 7 * day + day / 2));
        assert!(!google_seven_day_expiry(Some(0), 9 * day));
    }

    #[test]
    fn provider_errors_are_described_without_trace_ids() {
        let d = describe_provider_error(
            Provider::Microsoft,
            "unauthorized_client",
            Some(
                "AADSTS700016: Application with identifier 'x' was not found. Trace ID: a Correlation ID: b",
            ),
        );
        assert!(d.contains("Client ID"), "{d}");
        assert!(!d.contains("Trace ID"), "{d}");
        let g = describe_provider_error(Provider::Google, "invalid_client", None);
        assert!(g.contains("Client Secret"), "{g}");
    }
}
