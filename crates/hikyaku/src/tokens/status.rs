//! Token status (what the Remote UI shows as `[トークンの稼働状況] / Token Status`)
//! and the mapping of provider error codes to advice that says what to do.

use crate::provider::Provider;

/// Kept with the account in the store; named here too, where it is decided.
pub use crate::store::accounts::TokenStatus;

/// The reason stored when a refresh token no longer works.
pub const REAUTHORIZATION_REQUIRED: &str = "re-authorization required";
/// The warning shown (status stays Active) while the token endpoint cannot be reached.
pub const ENDPOINT_UNREACHABLE: &str = "token endpoint unreachable, retrying";
/// Reason after the user declined on the device login page.
pub const DECLINED: &str = "declined by the user — get a new code";
/// Reason after the user code expired unused.
pub const CODE_EXPIRED: &str = "user code expired — get a new code";

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
pub fn aadsts_advice(code: u32) -> Option<&'static str> {
    Some(match code {
        50076 | 50079 => {
            "the user must complete multi-factor authentication or MFA registration: sign in once interactively, then authorize again"
        }
        700082 | 70008 => {
            "the refresh token expired (unused for too long, or the grant aged out): authorize again to get a new one"
        }
        70000 => {
            "the grant is invalid or was already used (or the user revoked it): authorize again"
        }
        65001 => {
            "consent is missing: an administrator must grant consent for the SMTP.Send permission in the Entra admin center (App registrations → API permissions), then authorize again"
        }
        7000218 => {
            "the app registration does not allow the device code flow: in the Entra admin center open App registrations → your app → Authentication and set \"Allow public client flows\" to Yes"
        }
        700016 => {
            "the application (Client ID) was not found in this tenant: check the Client ID, and that the endpoint's tenant is the one where the app is registered (or use common/organizations for a multi-tenant app)"
        }
        50020 => {
            "the signed-in account belongs to another tenant: sign in with an account of this tenant, or use the endpoint tenant 'common'/'organizations' with a multi-tenant app"
        }
        90002 => {
            "the tenant was not found: check the tenant part of the Microsoft Entra ID Authorization Server Endpoint"
        }
        50173 | 50133 => {
            "the grant was revoked, or the user's password was changed or reset: authorize again"
        }
        70016 => "authorization is still pending: the user has not entered the code yet",
        _ => return None,
    })
}

/// The hint shown when Google says `invalid_grant` about 7 days after the
/// authorization: refresh tokens of External apps in "Testing" status die then.
pub const GOOGLE_TESTING_HINT: &str = "Google ends the refresh tokens of apps whose OAuth consent screen is of user type \"External\" in publishing status \"Testing\" after 7 days: choose user type \"Internal\" (Google Workspace) or publish the app, then authorize again";

/// Whether an `invalid_grant` at `now` fits the 7-day expiry of testing apps.
pub fn google_seven_day_expiry(authorized_at: Option<i64>, now: i64) -> bool {
    const DAY: i64 = 86_400;
    authorized_at.is_some_and(|at| {
        let age = now.saturating_sub(at);
        (6 * DAY..=8 * DAY).contains(&age)
    })
}

/// The text stored as the token reason for a refresh that failed permanently.
pub fn refresh_failure_reason(
    provider: Provider,
    error: &str,
    description: Option<&str>,
    authorized_at: Option<i64>,
    now: i64,
) -> String {
    let mut advice: Vec<String> = Vec::new();
    match provider {
        Provider::Microsoft => {
            if let Some(a) = description.and_then(aadsts_code).and_then(aadsts_advice) {
                advice.push(a.to_string());
            }
        }
        Provider::Google => {
            if error == "invalid_grant" && google_seven_day_expiry(authorized_at, now) {
                advice.push(GOOGLE_TESTING_HINT.to_string());
            }
        }
    }
    if advice.is_empty() {
        advice.push(generic_advice(provider, error).to_string());
    }
    let head = match error {
        "invalid_grant" => REAUTHORIZATION_REQUIRED.to_string(),
        "invalid_client" => format!("{REAUTHORIZATION_REQUIRED} (invalid_client)"),
        other => format!("{REAUTHORIZATION_REQUIRED} ({other})"),
    };
    format!("{head}: {}", advice.join("; "))
}

/// Advice by OAuth error name when no AADSTS code helps.
pub fn generic_advice(provider: Provider, error: &str) -> &'static str {
    match (provider, error) {
        (_, "invalid_grant") => "the refresh token was revoked or has expired: authorize again",
        (Provider::Google, "invalid_client") => {
            "Google does not accept the Client ID or Client Secret: check both on the Basic Settings page"
        }
        (Provider::Microsoft, "invalid_client") | (Provider::Microsoft, "unauthorized_client") => {
            "Microsoft does not accept the Client ID: check it, and that \"Allow public client flows\" is Yes in the app registration"
        }
        (_, "invalid_scope") => {
            "the requested permission is not allowed for this app: check the app's API permissions"
        }
        (_, "access_denied") => {
            "access was denied at the consent page: authorize again and allow access"
        }
        _ => "authorize again",
    }
}

/// A short, user-facing description of a provider error: its `error`, the
/// AADSTS advice when there is one, and the description's first sentence
/// (Microsoft's descriptions end with trace ids that help no administrator).
pub fn describe_provider_error(
    provider: Provider,
    error: &str,
    description: Option<&str>,
) -> String {
    let advice = description
        .filter(|_| provider == Provider::Microsoft)
        .and_then(aadsts_code)
        .and_then(aadsts_advice);
    let detail = description.map(first_part).filter(|d| !d.is_empty());
    match (advice, detail) {
        (Some(a), Some(d)) => format!("{error}: {a} ({d})"),
        (Some(a), None) => format!("{error}: {a}"),
        (None, Some(d)) => format!("{error}: {d}"),
        (None, None) => format!("{error}: {}", generic_advice(provider, error)),
    }
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
        assert!(aadsts_advice(65001).unwrap().contains("consent"));
        assert!(aadsts_advice(50076).unwrap().contains("multi-factor"));
        assert!(aadsts_advice(90002).unwrap().contains("tenant"));
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
        assert!(r.starts_with(REAUTHORIZATION_REQUIRED), "{r}");
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
        assert!(g.contains("Testing"), "{g}");
        let g2 = refresh_failure_reason(Provider::Google, "invalid_grant", None, Some(0), 2 * day);
        assert!(!g2.contains("Testing"), "{g2}");
        assert!(g2.starts_with(REAUTHORIZATION_REQUIRED));
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
