//! Audit Log details in the language of the page. They are still stored
//! as the English text that the library wrote, and recognised here; text
//! that is not recognised is shown as it is.

use crate::i18n::Msg;

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
        return Msg::new(*key);
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
    use crate::i18n::{Locale, Tr};

    fn ja(m: &Msg) -> String {
        m.render(&Tr::new(Locale::Ja))
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
}
