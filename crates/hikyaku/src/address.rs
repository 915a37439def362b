//! E-mail address checks shared by the configuration and delivery: whether
//! an address can be written into an SMTP command or a header field as it is.

/// Whether `addr` can be written between `<` and `>` as it is: no white
/// space, controls or characters that end or split the address.
pub(crate) fn is_safe_address(addr: &str) -> bool {
    !addr.is_empty()
        && addr.len() <= 320
        && addr.contains('@')
        && addr
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"<>()[],;:\"\\".contains(c))
}

/// A safe address (see [`is_safe_address`]) with both a local part and a
/// domain.
pub(crate) fn is_plain_address(addr: &str) -> bool {
    addr.rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && is_safe_address(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_have_both_parts_and_nothing_that_splits_them() {
        for ok in [
            "postmaster@example.com",
            "a@b",
            "first.last+tag@example.co.jp",
        ] {
            assert!(is_plain_address(ok), "{ok:?}");
        }
        for bad in [
            "",
            "postmaster",
            "a@",
            "@example.com",
            "<a@example.com>",
            "a@example.com, b@example.com",
            "a b@example.com",
            "a@example.com\r\nRCPT TO:<x@y>",
        ] {
            assert!(!is_plain_address(bad), "{bad:?}");
        }
        // The delivery side only needs it writable, not complete.
        assert!(is_safe_address("a@"));
    }
}
