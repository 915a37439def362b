//! Parsing what the administrator pastes into `[認可コード] / Authorization Code`:
//! the bare code, or the whole address of the browser's error page
//! (`http://127.0.0.1:{port}/?state=…&code=4%2F0A…&scope=…`), or just its query.
//! Never panics (fuzz target).

/// A code, and the `state` when a URL was pasted.
#[derive(Clone, PartialEq, Eq)]
pub struct PastedCode {
    pub code: String,
    pub state: Option<String>,
}

impl std::fmt::Debug for PastedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PastedCode")
            .field("code", &"[redacted]")
            .field("state", &self.state.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Why a paste is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PasteError {
    /// The redirect carried `error=` (e.g. `access_denied`).
    Provider {
        error: String,
        description: Option<String>,
        /// The redirect's `state`, which must be the pending authorization's.
        state: Option<String>,
    },
    /// Anything else.
    Invalid(PasteProblem),
}

/// What is wrong with a pasted code or address; each text says what to paste.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasteProblem {
    #[error(
        "nothing was entered: paste the authorization code, or the whole address of the page the browser showed"
    )]
    Empty,
    #[error("the text is too long to be an authorization code or its address")]
    TooLong,
    #[error("the code contains a malformed %-escape: paste it exactly as shown in the address")]
    CodeEscape,
    #[error(
        "the address has no code= part: paste the whole address of the page the browser showed after you allowed access, or only the code"
    )]
    NoCode,
    #[error("the code is empty: paste the part after code= up to the next &")]
    EmptyCode,
    #[error("the code is too long to be an authorization code")]
    CodeTooLong,
    #[error(
        "the code contains spaces or characters a Google authorization code never has: paste it again without extra text"
    )]
    CodeCharacters,
    #[error("the address contains a malformed %-escape: paste it exactly as shown")]
    AddressEscape,
}

impl std::fmt::Display for PasteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasteError::Provider {
                error, description, ..
            } => {
                write!(f, "the address carries error={error}")?;
                if let Some(d) = description {
                    write!(f, " ({d})")?;
                }
                if error == "access_denied" {
                    f.write_str(": access was denied on Google's consent page — get a new URL and allow access")?;
                }
                Ok(())
            }
            PasteError::Invalid(problem) => write!(f, "{problem}"),
        }
    }
}

const MAX_PASTE: usize = 8192;
const MAX_CODE: usize = 2048;

/// Parses a bare code or a whole redirect URL (then `state` is returned too).
pub fn parse_pasted_code(pasted: &str) -> Result<PastedCode, String> {
    parse(pasted).map_err(|e| e.to_string())
}

pub(crate) fn parse(pasted: &str) -> Result<PastedCode, PasteError> {
    let text = pasted.trim();
    if text.is_empty() {
        return Err(PasteError::Invalid(PasteProblem::Empty));
    }
    if text.len() > MAX_PASTE {
        return Err(PasteError::Invalid(PasteProblem::TooLong));
    }
    let looks_like_url =
        text.contains("://") || text.contains('=') || text.contains('?') || text.contains('&');
    if !looks_like_url {
        let code = percent_decode(text).ok_or(PasteError::Invalid(PasteProblem::CodeEscape))?;
        check_code(&code)?;
        return Ok(PastedCode { code, state: None });
    }
    // The query (after '?' if there is one), without any fragment.
    let no_fragment = text.split('#').next().unwrap_or("");
    let query = match no_fragment.split_once('?') {
        Some((_, q)) => q,
        None => no_fragment,
    };
    let mut code = None;
    let mut state = None;
    let mut error = None;
    let mut error_description = None;
    // '&' separated; a piece like "https://host/x" without '=' is skipped.
    for piece in query.split('&') {
        let Some((k, v)) = piece.split_once('=') else {
            continue;
        };
        let value = || form_decode(v);
        match k.trim() {
            "code" if code.is_none() => code = Some(value()?),
            "state" if state.is_none() => state = Some(value()?),
            "error" if error.is_none() => error = Some(value()?),
            "error_description" => error_description = Some(value()?),
            _ => {}
        }
    }
    if let Some(error) = error {
        return Err(PasteError::Provider {
            error,
            description: error_description,
            state: state.filter(|s| !s.is_empty()),
        });
    }
    let Some(code) = code else {
        return Err(PasteError::Invalid(PasteProblem::NoCode));
    };
    check_code(&code)?;
    Ok(PastedCode {
        code,
        state: state.filter(|s| !s.is_empty()),
    })
}

fn check_code(code: &str) -> Result<(), PasteError> {
    if code.is_empty() {
        return Err(PasteError::Invalid(PasteProblem::EmptyCode));
    }
    if code.len() > MAX_CODE {
        return Err(PasteError::Invalid(PasteProblem::CodeTooLong));
    }
    if !code.chars().all(|c| c.is_ascii_graphic()) {
        return Err(PasteError::Invalid(PasteProblem::CodeCharacters));
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` value decoding ('+' is a space).
fn form_decode(v: &str) -> Result<String, PasteError> {
    percent_decode(&v.replace('+', " ")).ok_or(PasteError::Invalid(PasteProblem::AddressEscape))
}

/// Percent-decoding that refuses malformed escapes and non-UTF-8 results.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_code() {
        let p = parse_pasted_code("  4/0AeanS0abc-_XYZ ").unwrap();
        assert_eq!(p.code, "4/0AeanS0abc-_XYZ");
        assert_eq!(p.state, None);
        assert_eq!(parse_pasted_code("4%2F0Aabc").unwrap().code, "4/0Aabc");
    }

    #[test]
    fn whole_url_with_escaped_slash_and_state() {
        let p = parse_pasted_code(
            "http://127.0.0.1:53682/?state=s7a_te&code=4%2F0AeanS0b&scope=https://mail.google.com/%20openid%20email",
        )
        .unwrap();
        assert_eq!(p.code, "4/0AeanS0b");
        assert_eq!(p.state.as_deref(), Some("s7a_te"));
    }

    #[test]
    fn seed_style_and_query_only() {
        let p = parse_pasted_code("https://xxxxxxxxxx&code=4%2F0Aq&scope=xxxxxxxxxx").unwrap();
        assert_eq!(p.code, "4/0Aq");
        let p = parse_pasted_code("code=4%2F0Aq&state=abc").unwrap();
        assert_eq!(
            (p.code.as_str(), p.state.as_deref()),
            ("4/0Aq", Some("abc"))
        );
        let p = parse_pasted_code("?code=x1#frag").unwrap();
        assert_eq!(p.code, "x1");
    }

    #[test]
    fn errors_and_garbage() {
        assert!(parse_pasted_code("").is_err());
        assert!(parse_pasted_code("   ").is_err());
        assert!(
            parse_pasted_code("http://127.0.0.1:1/?state=a&scope=b")
                .unwrap_err()
                .contains("no code=")
        );
        let denied = parse("http://127.0.0.1:1/?error=access_denied&state=a").unwrap_err();
        assert!(matches!(&denied, PasteError::Provider { error, .. } if error == "access_denied"));
        assert!(denied.to_string().contains("denied"));
        assert!(parse_pasted_code("two words").is_err());
        assert!(parse_pasted_code("abc%zz").is_err());
        assert!(parse_pasted_code("abc%").is_err());
        assert!(parse_pasted_code("abc%+1").is_err());
        assert!(parse_pasted_code("%ff%fe").is_err());
        assert!(parse_pasted_code("code=").is_err());
        assert!(parse_pasted_code(&"a".repeat(10_000)).is_err());
        assert!(parse_pasted_code("code=%E3%81%82").is_err());
        // Never panics on odd input.
        for s in [
            "%", "=", "&", "?", "#", "://", "%e3%8", "code=%", "é%C3", "\u{0}", "?&=&=?",
        ] {
            let _ = parse_pasted_code(s);
        }
    }

    #[test]
    fn debug_redacts() {
        let p = parse_pasted_code("code=secretcode&state=secretstate").unwrap();
        let d = format!("{p:?}");
        assert!(
            !d.contains("secretcode") && !d.contains("secretstate"),
            "{d}"
        );
    }
}
