//! Property tests of the hostile-input invariants: SMTP smuggling and
//! dot-stuffing at the intake, header injection through the From rewrite.
//! The checks themselves are the fuzz targets' (`corpus::checks`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

use crate::corpus::checks;

/// 64 cases per property unless PROPTEST_CASES says otherwise: each SMTP case
/// runs two whole sessions.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config
}

const TRANSACTION: &str = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n";

/// Pieces of a message that could make a lenient server end the data early,
/// and a whole second transaction to smuggle behind it.
fn soup_piece() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("\r"),
        Just("\n"),
        Just("."),
        Just("\r\n"),
        Just("text"),
        Just("\n.\r\n"),
        Just("\r.\r"),
        Just("\r\n.\n"),
        Just("\r\n.\r"),
        Just("MAIL FROM:<admin@victim.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nsmuggled"),
        Just("QUIT\r\n"),
    ]
}

fn dot_line() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z .]{0,12}", "\\.[a-z .]{0,12}", Just(".".to_owned())]
}

/// A display name with everything that could break out of a header.
fn hostile_name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\r\n".to_owned()),
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\0".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("Bcc: victim@example.com".to_owned()),
        Just("=?UTF-8?B?DQpCY2M6IHg=?=".to_owned()),
        Just("複合機".to_owned()),
        "[ -~]{0,8}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn quoted(name: &str) -> String {
    let mut out = String::from("\"");
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

proptest! {
    #![proptest_config(config())]

    /// Whatever CR, LF and dots surround it, no second message is smuggled
    /// out of one DATA: at most one acceptance per real `<CRLF>.<CRLF>`, and
    /// accepted data never holds a bare CR or LF.
    #[test]
    fn intake_accepts_no_smuggled_message(
        pieces in prop::collection::vec(soup_piece(), 0..24),
        end in prop_oneof![Just("\r\n.\r\n"), Just(""), Just(".\r\n")],
    ) {
        let input = format!("{TRANSACTION}{}{end}QUIT\r\n", pieces.concat());
        // check_smtp_session asserts both invariants for both kinds of peer.
        let accepted = checks::check_smtp_session(input.as_bytes());
        let terminators = checks::occurrences(input.as_bytes(), checks::END_OF_DATA);
        prop_assert!(accepted.len() <= 2 * terminators, "two peers, one message each at most per terminator");
    }

    /// Dot-stuffing round trip: lines starting with '.' sent stuffed arrive
    /// unstuffed, byte for byte.
    #[test]
    fn intake_unstuffs_dots_exactly(lines in prop::collection::vec(dot_line(), 0..30)) {
        let body: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
        let stuffed: String = lines
            .iter()
            .map(|l| if l.starts_with('.') { format!(".{l}\r\n") } else { format!("{l}\r\n") })
            .collect();
        let input = format!("{TRANSACTION}{stuffed}.\r\nQUIT\r\n");
        let (accepted, replies) = checks::smtp_session(input.as_bytes(), true);
        prop_assert_eq!(accepted.len(), 1, "{}", String::from_utf8_lossy(&replies));
        prop_assert_eq!(&accepted[0], body.as_bytes());
        checks::check_smtp_session(input.as_bytes());
    }

    /// No display name, however hostile, gets a header of its own through
    /// the From rewrite, whether it arrives quoted or as an encoded word.
    #[test]
    fn rewrite_lets_no_header_through(name in hostile_name(), encoded in any::<bool>()) {
        let phrase = if encoded {
            format!("=?UTF-8?B?{}?=", STANDARD.encode(name.as_bytes()))
        } else {
            // Raw CR/LF would already be in the original; keep it CRLF-clean.
            quoted(&name.replace(['\r', '\n'], " "))
        };
        let message = format!(
            "Subject: scan\r\nFrom: {phrase} <scanner@printers.local>\r\nTo: a@b.example\r\n\r\nbody\r\nBcc: not-a-header@example.com\r\n"
        );
        checks::check_rewrite(message.as_bytes());
        let output = hikyaku::delivery::rewrite_from(message.as_bytes(), checks::MAILBOX, true);
        let (head, _) = checks::split_message(&output);
        let head = String::from_utf8_lossy(head);
        prop_assert!(!head.to_ascii_lowercase().contains("\nbcc:"), "{}", head);
        prop_assert!(!head.to_ascii_lowercase().starts_with("bcc:"), "{}", head);
        prop_assert!(!head.contains('\0'), "{}", head);
        let parsed = mail_parser::MessageParser::default().parse_headers(&output[..]);
        let from = parsed.as_ref().and_then(|m| m.from()).and_then(|f| f.first());
        prop_assert_eq!(from.and_then(|a| a.address()), Some(checks::MAILBOX));
    }
}
