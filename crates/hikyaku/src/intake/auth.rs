//! SASL decoding for SMTP AUTH (RFC 4954): the PLAIN (RFC 4616) message and
//! the LOGIN exchange's base64 lines.
//!
//! Pure functions only; the session decides when AUTH is allowed and talks to
//! the sink. Decoded credentials are returned by value and never logged or
//! formatted: [`Credentials`] has a redacting `Debug`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A user name and password taken from the client.
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// A SASL response that could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// `501 5.5.2`: not base64, or not UTF-8.
    #[error("cannot decode response")]
    Undecodable,
    /// `501 5.5.2`: PLAIN message not `authzid NUL authcid NUL passwd`.
    #[error("malformed PLAIN message")]
    Malformed,
    /// Proxy authorization (an authzid naming someone else) is not supported.
    #[error("authorization identity differs from authentication identity")]
    ProxyAuthorization,
}

/// Decodes one base64 client response; `=` is the empty response
/// (RFC 4954 §4).
pub fn decode_response(line: &str) -> Result<String, SaslError> {
    let line = line.trim();
    if line == "=" {
        return Ok(String::new());
    }
    let bytes = STANDARD.decode(line).map_err(|_| SaslError::Undecodable)?;
    String::from_utf8(bytes).map_err(|_| SaslError::Undecodable)
}

/// Decodes a PLAIN message (RFC 4616 §2): `[authzid] NUL authcid NUL passwd`.
pub fn decode_plain(response: &str) -> Result<Credentials, SaslError> {
    let message = decode_response(response)?;
    let mut parts = message.splitn(3, '\0');
    let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if user.is_empty() || password.contains('\0') {
        return Err(SaslError::Malformed);
    }
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError::ProxyAuthorization);
    }
    Ok(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// The LOGIN mechanism's prompts, base64 of "Username:" and "Password:".
pub const LOGIN_USER_PROMPT: &str = "VXNlcm5hbWU6";
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn plain() {
        let c = decode_plain(&b64("\0alice\0s3cret")).unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3cret"));
        let c = decode_plain(&b64("alice\0alice\0pw")).unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(
            decode_plain(&b64("bob\0alice\0pw")).unwrap_err(),
            SaslError::ProxyAuthorization
        );
        assert_eq!(
            decode_plain(&b64("alice pw")).unwrap_err(),
            SaslError::Malformed
        );
        assert_eq!(
            decode_plain(&b64("\0\0pw")).unwrap_err(),
            SaslError::Malformed
        );
        assert_eq!(decode_plain("!!!").unwrap_err(), SaslError::Undecodable);
        assert_eq!(format!("{c:?}"), "Credentials { .. }");
    }

    #[test]
    fn responses() {
        assert_eq!(decode_response("=").unwrap(), "");
        assert_eq!(decode_response(&b64("ユーザー")).unwrap(), "ユーザー");
        assert_eq!(
            decode_response(&STANDARD.encode([0xff, 0xfe])),
            Err(SaslError::Undecodable)
        );
    }
}
