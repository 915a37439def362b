//! Status reasons and warnings stored with an account (Server Connection
//! Status, Token Status) in the language of the page.

use super::i18n::Msg;

/// A stored token reason.
pub fn token(text: &str) -> Msg {
    Msg::verbatim(text)
}
