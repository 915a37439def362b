//! From rewrite: Exchange Online refuses a message whose From the mailbox may
//! not send as (`554 5.2.252 SendAsDenied`), and Gmail replaces it. When the
//! device's From differs from the authorized mailbox, the From field becomes
//! the mailbox (the display name is kept) and the original address goes into
//! Reply-To, so that answers still reach the device's owner.
//!
//! The rewrite works on the raw header block: only the From field (and a new
//! Reply-To right after it) changes; every other header line and the body
//! bytes stay exactly as received. mail-parser only *reads* the old From
//! field (folding, quoted strings, comments, RFC 2047 encoded words); the
//! new fields are written here from sanitised parts, so a display name that
//! decodes to CR/LF can never start a header of its own.

use std::borrow::Cow;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

// The check belongs to the address concept; delivery keeps naming it here.
pub(crate) use crate::address::is_safe_address;

/// Rewrites the From field of `message` to `mailbox` (see the module docs).
/// Returns the message unchanged when `enabled` is off, when From already is
/// the mailbox, or when `mailbox` is not a usable address. A message without
/// any From field gets `From: mailbox` as its first line.
pub fn rewrite_from<'a>(message: &'a [u8], mailbox: &str, enabled: bool) -> Cow<'a, [u8]> {
    if !enabled || !is_safe_address(mailbox) {
        return Cow::Borrowed(message);
    }
    let header_end = header_block_end(message);
    let fields = split_fields(&message[..header_end]);
    let named = |name: &str| {
        fields
            .iter()
            .filter(|r: &&Range<usize>| {
                field_name(&message[(*r).clone()]).is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let from_fields = named("from");
    let has_reply_to = !named("reply-to").is_empty();

    let Some(first) = from_fields.first().cloned() else {
        let mut out = Vec::with_capacity(message.len() + mailbox.len() + 8);
        out.extend_from_slice(b"From: ");
        out.extend_from_slice(mailbox.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(message);
        return Cow::Owned(out);
    };

    let mut originals: Vec<(Option<String>, String)> = Vec::new();
    let mut display: Option<String> = None;
    for r in &from_fields {
        for (name, addr) in parse_addresses(&message[r.clone()]) {
            if display.is_none() {
                display = name.clone().filter(|n| !n.trim().is_empty());
            }
            if let Some(addr) = addr {
                originals.push((name, addr));
            }
        }
    }
    if from_fields.len() == 1
        && originals.len() == 1
        && originals[0].1.eq_ignore_ascii_case(mailbox)
    {
        return Cow::Borrowed(message);
    }

    let mut new_fields = String::from("From: ");
    new_fields.push_str(&format_mailbox(display.as_deref(), mailbox));
    new_fields.push_str("\r\n");
    let others: Vec<String> = originals
        .iter()
        .filter(|(_, a)| !a.eq_ignore_ascii_case(mailbox) && is_safe_address(a))
        .map(|(n, a)| format_mailbox(n.as_deref(), a))
        .collect();
    if !has_reply_to && !others.is_empty() {
        new_fields.push_str("Reply-To: ");
        new_fields.push_str(&others.join(",\r\n "));
        new_fields.push_str("\r\n");
    }

    let mut out = Vec::with_capacity(message.len() + new_fields.len());
    out.extend_from_slice(&message[..first.start]);
    out.extend_from_slice(new_fields.as_bytes());
    for r in &fields {
        if r.start >= first.end && !from_fields.contains(r) {
            out.extend_from_slice(&message[r.clone()]);
        }
    }
    out.extend_from_slice(&message[header_end..]);
    Cow::Owned(out)
}

/// The offset where the header block ends: the start of the empty line that
/// separates it from the body, or the message's length when there is none.
pub(crate) fn header_block_end(message: &[u8]) -> usize {
    let mut pos = 0;
    while pos < message.len() {
        let line_end = match message[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => pos + i + 1,
            None => return message.len(),
        };
        let line = &message[pos..line_end];
        if line == b"\r\n" || line == b"\n" {
            return pos;
        }
        pos = line_end;
    }
    message.len()
}

/// Splits a header block into fields, each with its continuation lines and
/// its final line break.
fn split_fields(block: &[u8]) -> Vec<Range<usize>> {
    let mut fields: Vec<Range<usize>> = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let line_end = block[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(block.len(), |i| pos + i + 1);
        let continuation = matches!(block[pos], b' ' | b'\t');
        match fields.last_mut() {
            Some(last) if continuation => last.end = line_end,
            _ => fields.push(pos..line_end),
        }
        pos = line_end;
    }
    fields
}

/// The field name, when the field starts with a valid one (`name:`).
fn field_name(field: &[u8]) -> Option<&str> {
    let colon = field.iter().position(|&b| b == b':')?;
    let name = field[..colon].trim_ascii_end();
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// Reads the addresses of one From field: (display name, address).
fn parse_addresses(field: &[u8]) -> Vec<(Option<String>, Option<String>)> {
    let mut raw = field.to_vec();
    if !raw.ends_with(b"\n") {
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(&raw[..]) else {
        return Vec::new();
    };
    let Some(from) = parsed.from() else {
        return Vec::new();
    };
    from.iter()
        .map(|a| {
            (
                a.name().map(str::to_owned),
                a.address().map(|s| s.trim().to_owned()),
            )
        })
        .collect()
}

/// `"Name" <addr>`, or `addr` alone when there is no usable name.
fn format_mailbox(name: Option<&str>, addr: &str) -> String {
    match name.map(sanitize_phrase).filter(|n| !n.is_empty()) {
        Some(n) => format!("{} <{addr}>", encode_phrase(&n)),
        None => addr.to_owned(),
    }
}

/// Control characters (CR, LF, TAB, ...) become spaces; runs of white space
/// collapse; the result is trimmed.
pub(crate) fn sanitize_phrase(text: &str) -> String {
    let replaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    replaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A display name as a quoted string (short printable ASCII) or as RFC 2047
/// encoded words (anything else), folded so no line grows too long.
pub(crate) fn encode_phrase(text: &str) -> String {
    if text.len() <= 60 && text.bytes().all(|b| (32..=126).contains(&b)) {
        let mut out = String::with_capacity(text.len() + 2);
        out.push('"');
        for c in text.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        return out;
    }
    encoded_words(text)
}

/// RFC 2047 `=?UTF-8?B?...?=` words of at most 75 characters, joined by
/// folding white space.
pub(crate) fn encoded_words(text: &str) -> String {
    const MAX_BYTES: usize = 45; // 60 base64 characters + 12 of framing
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > MAX_BYTES {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", STANDARD.encode(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const MB: &str = "printer@contoso.example";

    fn rewrite(msg: &str) -> String {
        String::from_utf8(rewrite_from(msg.as_bytes(), MB, true).into_owned()).unwrap()
    }

    fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
        let end = header_block_end(msg.as_bytes());
        split_fields(&msg.as_bytes()[..end])
            .into_iter()
            .map(|r| &msg[r])
            .filter(|f| field_name(f.as_bytes()).is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .collect()
    }

    fn parsed_from(msg: &str) -> (Option<String>, Option<String>) {
        let p = mail_parser::MessageParser::default()
            .parse_headers(msg.as_bytes())
            .unwrap();
        let a = p.from().unwrap().first().unwrap();
        (a.name().map(str::to_owned), a.address().map(str::to_owned))
    }

    fn parsed_reply_to(msg: &str) -> Vec<String> {
        let p = mail_parser::MessageParser::default()
            .parse_headers(msg.as_bytes())
            .unwrap();
        p.reply_to()
            .map(|r| {
                r.iter()
                    .filter_map(|a| a.address().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn display_name_kept_and_reply_to_added() {
        let msg = "Subject: scan\r\nFrom: \"Scanner 3F\" <scanner@printers.local>\r\nTo: a@b.example\r\n\r\nbody\r\n.dots\r\n";
        let out = rewrite(msg);
        assert_eq!(
            header(&out, "from"),
            vec!["From: \"Scanner 3F\" <printer@contoso.example>\r\n"]
        );
        assert_eq!(
            header(&out, "reply-to"),
            vec!["Reply-To: \"Scanner 3F\" <scanner@printers.local>\r\n"]
        );
        // Other lines and the body are untouched, in order.
        assert!(out.starts_with("Subject: scan\r\nFrom: "));
        assert!(out.ends_with("To: a@b.example\r\n\r\nbody\r\n.dots\r\n"));
    }

    #[test]
    fn existing_reply_to_is_kept() {
        let msg = "From: dev@printers.local\r\nReply-To: owner@contoso.example\r\n\r\nx";
        let out = rewrite(msg);
        assert_eq!(
            header(&out, "from"),
            vec!["From: printer@contoso.example\r\n"]
        );
        assert_eq!(
            header(&out, "reply-to"),
            vec!["Reply-To: owner@contoso.example\r\n"]
        );
    }

    #[test]
    fn unchanged_when_off_or_already_the_mailbox() {
        let msg = b"From: Someone <dev@printers.local>\r\n\r\nx";
        assert!(matches!(rewrite_from(msg, MB, false), Cow::Borrowed(_)));
        let same = b"From: \"P\" <PRINTER@contoso.example>\r\n\r\nx";
        assert!(matches!(rewrite_from(same, MB, true), Cow::Borrowed(_)));
        // An unusable mailbox never produces a header.
        assert!(matches!(
            rewrite_from(msg, "a@b\r\nBcc: x@y", true),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn no_header_injection_from_display_names() {
        // An encoded word that decodes to CR LF + a header.
        let evil = STANDARD.encode("Evil\r\nBcc: victim@example.com");
        let msg =
            format!("From: =?UTF-8?B?{evil}?= <dev@printers.local>\r\nTo: a@b.example\r\n\r\nbody");
        let out = rewrite(&msg);
        assert!(header(&out, "bcc").is_empty(), "{out}");
        let (name, addr) = parsed_from(&out);
        assert_eq!(addr.as_deref(), Some(MB));
        assert_eq!(name.as_deref(), Some("Evil Bcc: victim@example.com"));
        // A quoted name with a backslash and quote stays one quoted string.
        let msg = "From: \"a\\\"b\\\\c\" <dev@printers.local>\r\n\r\nx";
        let out = rewrite(msg);
        assert_eq!(parsed_from(&out).0.as_deref(), Some("a\"b\\c"));
        // Every line of the new header block is a field or a continuation.
        let end = header_block_end(out.as_bytes());
        for line in out[..end].split("\r\n").filter(|l| !l.is_empty()) {
            assert!(line.contains(':') || line.starts_with(' '), "{line}");
        }
    }

    #[test]
    fn folded_from_header() {
        let msg = "Date: x\r\nFrom: \"A very long display name\"\r\n\t<dev@printers.local>\r\nSubject: s\r\n\r\nbody";
        let out = rewrite(msg);
        assert_eq!(
            out,
            "Date: x\r\nFrom: \"A very long display name\" <printer@contoso.example>\r\nReply-To: \"A very long display name\" <dev@printers.local>\r\nSubject: s\r\n\r\nbody"
        );
    }

    #[test]
    fn encoded_word_names_survive() {
        for (encoded, decoded) in [
            ("=?UTF-8?B?44K544Kt44Oj44OK44O8?=", "スキャナー"),
            ("=?ISO-8859-1?Q?J=F6rg_M=FCller?=", "Jörg Müller"),
        ] {
            let msg = format!("From: {encoded} <dev@printers.local>\r\n\r\nx");
            let out = rewrite(&msg);
            let (name, addr) = parsed_from(&out);
            assert_eq!(name.as_deref(), Some(decoded));
            assert_eq!(addr.as_deref(), Some(MB));
            assert!(out.contains("=?UTF-8?B?"), "{out}");
            assert_eq!(parsed_reply_to(&out), vec!["dev@printers.local".to_owned()]);
        }
        // A long Japanese name is split into words of at most 75 characters.
        let long = "複合機".repeat(20);
        let msg = format!("From: \"{long}\" <dev@printers.local>\r\n\r\nx");
        let out = rewrite(&msg);
        assert_eq!(parsed_from(&out).0.as_deref(), Some(long.as_str()));
        assert!(out.split("\r\n").all(|l| l.len() <= 998));
        assert!(
            out.split(|c: char| c.is_whitespace())
                .filter(|w| w.starts_with("=?"))
                .all(|w| w.len() <= 75)
        );
    }

    #[test]
    fn message_without_from_gets_one() {
        let msg = "To: a@b.example\r\nSubject: s\r\n\r\nbody";
        let out = rewrite(msg);
        assert_eq!(out, format!("From: {MB}\r\n{msg}"));
        assert!(header(&out, "reply-to").is_empty());
    }

    #[test]
    fn duplicate_from_fields_collapse_and_body_from_lines_are_ignored() {
        let msg = "From: a@x.example\r\nTo: t@y.example\r\nFrom: b@x.example\r\n\r\nFrom: not-a-header@z.example\r\n";
        let out = rewrite(msg);
        assert_eq!(
            header(&out, "from"),
            vec!["From: printer@contoso.example\r\n"]
        );
        assert_eq!(
            parsed_reply_to(&out),
            vec!["a@x.example".to_owned(), "b@x.example".to_owned()]
        );
        assert!(out.ends_with("To: t@y.example\r\n\r\nFrom: not-a-header@z.example\r\n"));
    }

    #[test]
    fn headers_only_and_binary_body() {
        let msg = b"From: a@x.example";
        let out = rewrite_from(msg, MB, true);
        assert_eq!(
            &out[..],
            b"From: printer@contoso.example\r\nReply-To: a@x.example\r\n"
        );
        let mut msg = b"From: a@x.example\r\n\r\n".to_vec();
        msg.extend_from_slice(&[0xff, 0x00, 0xe3, 0x81, 0x82, b'\r', b'\n']);
        let out = rewrite_from(&msg, MB, true);
        assert!(out.ends_with(&[0xff, 0x00, 0xe3, 0x81, 0x82, b'\r', b'\n']));
    }
}
