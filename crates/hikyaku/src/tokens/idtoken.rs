//! The signed-in mailbox from an id_token. The token comes straight from the
//! token endpoint over TLS, which OpenID Connect Core §3.1.3.7 accepts in place
//! of checking its signature; so only the payload is decoded. When certificate
//! verification is off, the identity is recorded as unverified.

use base64::Engine as _;

/// `preferred_username`, else `email`, else `upn` from the id_token's payload.
/// `None` for anything that is not a well-formed JWT with one of those claims.
pub fn mailbox_from_id_token(id_token: &str) -> Option<String> {
    let payload = id_token.split('.').nth(1)?;
    let trimmed = payload.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    ["preferred_username", "email", "upn"].iter().find_map(|k| {
        claims
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 320 && !s.chars().any(char::is_control))
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.{}", e(r#"{"alg":"RS256"}"#), e(payload), e("sig"))
    }

    #[test]
    fn claims_in_order_of_preference() {
        assert_eq!(
            mailbox_from_id_token(&jwt(
                r#"{"preferred_username":"a@x.com","email":"b@x.com"}"#
            ))
            .as_deref(),
            Some("a@x.com")
        );
        assert_eq!(
            mailbox_from_id_token(&jwt(r#"{"email":"b@x.com","upn":"c@x.com"}"#)).as_deref(),
            Some("b@x.com")
        );
        assert_eq!(
            mailbox_from_id_token(&jwt(r#"{"upn":"c@x.com"}"#)).as_deref(),
            Some("c@x.com")
        );
        assert_eq!(
            mailbox_from_id_token(&jwt(r#"{"preferred_username":"","email":"b@x.com"}"#))
                .as_deref(),
            Some("b@x.com")
        );
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(mailbox_from_id_token(""), None);
        assert_eq!(mailbox_from_id_token("a.b.c"), None);
        assert_eq!(mailbox_from_id_token("a.!!!.c"), None);
        assert_eq!(mailbox_from_id_token(&jwt(r#"{"sub":"1"}"#)), None);
        assert_eq!(mailbox_from_id_token(&jwt(r#"[1,2]"#)), None);
        assert_eq!(mailbox_from_id_token(&jwt(r#"{"email":42}"#)), None);
    }

    #[test]
    fn padded_payload_is_accepted() {
        let e = base64::engine::general_purpose::URL_SAFE.encode(r#"{"email":"p@x.com"}"#);
        assert_eq!(
            mailbox_from_id_token(&format!("h.{e}.s")).as_deref(),
            Some("p@x.com")
        );
    }
}
