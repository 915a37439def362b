//! The invariants of hikyaku's parsers of untrusted input, one function per
//! fuzz target. Each takes the raw input and panics when an invariant breaks.
//!
//! Shared by the libFuzzer targets (`fuzz/fuzz_targets/*.rs`, through this
//! crate) and by `cargo test`, which replays the checked-in corpora and runs
//! the property tests (`crates/hikyaku/tests/it/corpus.rs` includes this file
//! with `#[path]`), so the two can never drift apart.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use hikyaku::intake::{
    IntakeSink, Limits, ListenerConfig, SinkError, Submission, Submitter, run_session,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

/// The only login the in-memory sink knows (`AUTH PLAIN AHByaW50ZXIAc2VjcmV0`).
pub const USER: &str = "printer";
pub const PASSWORD: &str = "secret";
/// Larger than most inputs, small enough for the fuzzer to reach `552`.
pub const MAX_MESSAGE_SIZE: usize = 1024;
/// The SMTP end of data; every accepted message consumed one.
pub const END_OF_DATA: &[u8] = b"\r\n.\r\n";

/// Records what the session accepted. Peers in 192.0.2.0/24 are allowlisted
/// (no AUTH needed), others must log in as [`USER`].
#[derive(Default)]
struct MemorySink {
    accepted: Mutex<Vec<Vec<u8>>>,
}

impl IntakeSink for MemorySink {
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
        _peer: IpAddr,
    ) -> Result<Option<Submitter>, SinkError> {
        Ok((user == USER && password == PASSWORD).then(|| Submitter {
            name: USER.to_owned(),
            account_id: None,
        }))
    }

    async fn allowlisted(&self, peer: IpAddr) -> Result<Option<Submitter>, SinkError> {
        let lan = matches!(peer, IpAddr::V4(v4) if v4.octets()[..3] == [192, 0, 2]);
        Ok(lan.then(|| Submitter {
            name: "lan-printer".to_owned(),
            account_id: None,
        }))
    }

    async fn accept(&self, submission: Submission) -> Result<String, SinkError> {
        let mut accepted = self
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        accepted.push(submission.data);
        Ok(format!("Q{}", accepted.len()))
    }
}

fn listener_config() -> ListenerConfig {
    ListenerConfig {
        hostname: "mx.fuzz.test".to_owned(),
        tls: None,
        implicit_tls: false,
        require_tls_for_auth: false,
        limits: Limits {
            max_message_size: MAX_MESSAGE_SIZE,
            max_recipients: 5,
            idle_timeout: Duration::from_secs(10),
            auth_failure_delay: Duration::ZERO,
            ..Limits::default()
        },
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
}

/// Runs one whole SMTP session with `input` as everything the client sends
/// (then EOF), from an allowlisted LAN peer or a stranger; returns the data of
/// every accepted message and the server's replies.
pub fn smtp_session(input: &[u8], allowlisted: bool) -> (Vec<Vec<u8>>, Vec<u8>) {
    let peer: SocketAddr = if allowlisted {
        SocketAddr::from(([192, 0, 2, 99], 40000))
    } else {
        SocketAddr::from(([198, 51, 100, 7], 40000))
    };
    let config = listener_config();
    let sink = MemorySink::default();
    let replies = RUNTIME.with(|rt| {
        rt.block_on(async {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let (mut rd, mut wr) = tokio::io::split(client);
            let shutdown = CancellationToken::new();
            let session = run_session(server, peer, &config, &sink, &shutdown);
            let write = async {
                // The server may hang up first (QUIT, too many errors).
                let _ = wr.write_all(input).await;
                let _ = wr.shutdown().await;
            };
            let read = async {
                let mut out = Vec::new();
                let _ = rd.read_to_end(&mut out).await;
                out
            };
            let all = async { tokio::join!(session, write, read) };
            let (result, (), out) = tokio::time::timeout(Duration::from_secs(30), all)
                .await
                .unwrap_or_else(|_| panic!("SMTP session did not end after EOF"));
            if let Err(e) = result {
                panic!("SMTP session failed on an in-memory stream: {e}");
            }
            out
        })
    });
    let accepted = std::mem::take(
        &mut *sink
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    (accepted, replies)
}

/// How often `needle` occurs in `haystack`, overlaps included.
pub fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Whether every CR is followed by LF and every LF preceded by CR.
pub fn crlf_clean(data: &[u8]) -> bool {
    data.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => data.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && data[i - 1] == b'\r',
        _ => true,
    })
}

/// SMTP intake: never panics; nothing is accepted that was not ended by its
/// own `<CRLF>.<CRLF>` (no smuggled second message); accepted data has CRLF
/// line endings only, ends with CRLF and respects the size limit.
pub fn check_smtp_session(input: &[u8]) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for allowlisted in [true, false] {
        let (accepted, replies) = smtp_session(input, allowlisted);
        let terminators = occurrences(input, END_OF_DATA);
        assert!(
            accepted.len() <= terminators,
            "{} messages accepted from input with {terminators} <CRLF>.<CRLF>",
            accepted.len()
        );
        // Every reply line ends in CRLF and carries nothing bare.
        assert!(crlf_clean(&replies), "bare CR/LF in the server's replies");
        assert!(replies.is_empty() || replies.ends_with(b"\r\n"));
        let queued = replies
            .split(|&b| b == b'\n')
            .filter(|line| line.starts_with(b"250 2.0.0 Ok: queued as "))
            .count();
        assert_eq!(queued, accepted.len(), "250 replies vs. accepted messages");
        for data in &accepted {
            assert!(crlf_clean(data), "bare CR or LF in accepted data");
            assert!(data.is_empty() || data.ends_with(b"\r\n"));
            assert!(
                data.len() <= MAX_MESSAGE_SIZE,
                "message over the size limit"
            );
        }
        all.extend(accepted);
    }
    all
}

/// Google's pasted authorization code or redirect URL: never panics; a code
/// that is accepted is non-empty and free of white space and controls.
pub fn check_pasted_code(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    if let Ok(pasted) = hikyaku::tokens::parse_pasted_code(&text) {
        assert!(!pasted.code.is_empty(), "empty code accepted");
        assert!(
            pasted
                .code
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control()),
            "code with white space or controls accepted"
        );
    }
}

/// The Microsoft endpoint field: never panics; what it accepts is an https
/// URL ending in /oauth2/v2.0, and the normal form is accepted as itself.
pub fn check_endpoint(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    if let Ok(check) = hikyaku::tokens::validate_microsoft_endpoint(&text) {
        let n = &check.normalized;
        assert!(n.starts_with("https://"), "not https: {n}");
        assert!(n.ends_with("/oauth2/v2.0"), "wrong path: {n}");
        match hikyaku::tokens::validate_microsoft_endpoint(n) {
            Ok(again) => assert_eq!(&again.normalized, n, "normal form is not stable"),
            Err(e) => panic!("normal form {n} refused: {e}"),
        }
    }
}

/// The configuration file: never panics, whatever the text.
pub fn check_config(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let _ = hikyaku::config::Config::parse(&text, "fuzz");
}

/// The authorized mailbox the rewrite target puts into From.
pub const MAILBOX: &str = "printer@contoso.example";

/// Splits a message at its first empty line: the header block (each line
/// with its CRLF) and the body after the empty line.
pub fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    if let Some(body) = message.strip_prefix(b"\r\n") {
        return (&[], body);
    }
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

fn header_lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    block
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The From rewrite: never panics. On a message as the intake hands it over
/// (CRLF line endings only), the body is unchanged byte for byte, and every
/// line of the new header block is an original line, or belongs to a new
/// `From:`/`Reply-To:` field (its first line or a folded continuation): no
/// display name or address can start a header of its own.
pub fn check_rewrite(input: &[u8]) {
    let output = hikyaku::delivery::rewrite_from(input, MAILBOX, true);
    if !crlf_clean(input) {
        return;
    }
    assert!(
        crlf_clean(&output),
        "bare CR or LF in the rewritten message"
    );
    let (head, body) = split_message(input);
    let (new_head, new_body) = split_message(&output);
    assert!(body == new_body, "the body changed");
    if output.as_ref() != input {
        let froms = header_lines(new_head)
            .filter(|l| starts_with_ignore_case(l, b"From:"))
            .count();
        assert_eq!(froms, 1, "a rewritten message has exactly one From field");
    }
    let original: std::collections::HashSet<&[u8]> = header_lines(head).collect();
    let mut in_new_field = false;
    for line in header_lines(new_head) {
        if matches!(line.first(), Some(b' ' | b'\t')) && in_new_field {
            continue;
        }
        in_new_field =
            starts_with_ignore_case(line, b"From:") || starts_with_ignore_case(line, b"Reply-To:");
        assert!(
            in_new_field || original.contains(line),
            "header line not in the original: {:?}",
            String::from_utf8_lossy(line)
        );
    }
}
