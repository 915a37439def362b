//! Large messages are stored in pieces as they arrive and sent over SMTP
//! piece by piece: they arrive byte for byte, and nothing of a message that
//! was not accepted stays in the store.

use std::time::Duration;

use testkit::{Client, PASSWORD, SUBMITTER, eventually};

const FROM: &str = "scanner@printer.local";
const TO: &str = "boss@example.com";

/// A message of about `len` bytes whose lines vary in length and often
/// start with a dot, so that piece edges fall anywhere (mid-line, between
/// CR and LF, before a dot).
fn big_message(key: &str, len: usize) -> (String, String) {
    let head = format!(
        "From: Scanner <{FROM}>\r\nTo: {TO}\r\nSubject: pieces {key}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    );
    let mut body = String::with_capacity(len + 1000);
    let mut i: u64 = 0;
    while head.len() + body.len() < len {
        let pad = "x".repeat(usize::try_from(i * 37 % 900).unwrap_or(0));
        if i.is_multiple_of(5) {
            body.push_str(&format!(".{i} {pad}\r\n"));
        } else {
            body.push_str(&format!("{i} {pad}\r\n"));
        }
        i += 1;
    }
    (format!("{head}{body}"), body)
}

async fn session(addr: std::net::SocketAddr) -> Client {
    let (mut c, greeting) = Client::connect(addr).await.expect("connect");
    assert!(greeting.starts_with("220"), "{greeting}");
    c.login_plain(SUBMITTER, PASSWORD).await.expect("login");
    c
}

#[tokio::test]
async fn ten_and_thirty_megabyte_messages_arrive_byte_for_byte() {
    let fc = testkit::start_fakecloud().await;
    let (server, _admin) = testkit::prepare(&fc, tempfile::tempdir().expect("tempdir")).await;
    let addr = server.smtp_addrs()[0];
    let mut sent = Vec::new();
    for (key, len) in [("ten", 10 * 1024 * 1024), ("thirty", 30 * 1024 * 1024)] {
        let (message, body) = big_message(key, len);
        let mut c = session(addr).await;
        let r = c.send(FROM, TO, &message).await.expect("reply");
        assert!(r.reply.starts_with("250"), "{key}: {}", r.reply);
        c.quit().await;
        sent.push((key, body));
    }
    let inbox = fc.wait_for_inbox(2, Duration::from_secs(120)).await;
    for (key, body) in &sent {
        let m = inbox
            .iter()
            .find(|m| {
                testkit::header(&m.data, "Subject").as_deref() == Some(&format!("pieces {key}"))
            })
            .unwrap_or_else(|| panic!("{key} arrived"));
        let start = m
            .data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end")
            + 4;
        assert!(
            m.data[start..] == *body.as_bytes(),
            "{key}: body changed ({} bytes sent, {} arrived)",
            body.len(),
            m.data.len() - start
        );
    }
    // Sent: their pieces are dropped with them.
    let store = hikyaku::store::Store::open(server.dir.path())
        .await
        .expect("store");
    eventually(
        Duration::from_secs(20),
        "pieces of sent messages dropped",
        || async { (store.message_pieces().await.ok() == Some((0, 0))).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_client_leaving_mid_data_leaves_no_pieces() {
    let fc = testkit::start_fakecloud().await;
    let (server, _admin) = testkit::prepare(&fc, tempfile::tempdir().expect("tempdir")).await;
    let store = hikyaku::store::Store::open(server.dir.path())
        .await
        .expect("store");
    let mut c = session(server.smtp_addrs()[0]).await;
    for (line, code) in [
        (format!("MAIL FROM:<{FROM}>"), "250"),
        (format!("RCPT TO:<{TO}>"), "250"),
        ("DATA".to_string(), "354"),
    ] {
        let r = c.cmd(&line).await.expect("reply");
        assert!(r.starts_with(code), "{line}: {r}");
    }
    let (message, _) = big_message("left", 4 * 1024 * 1024);
    c.write(&message.as_bytes()[..2 * 1024 * 1024])
        .await
        .expect("half the message");
    // The half is stored in pieces while the client is still there…
    eventually(
        Duration::from_secs(20),
        "pieces stored as they arrive",
        || async {
            store
                .message_pieces()
                .await
                .ok()
                .filter(|&(_, unattached)| unattached >= 4)
        },
    )
    .await;
    // …and gone once it leaves without the final dot.
    drop(c);
    eventually(Duration::from_secs(20), "the pieces removed", || async {
        (store.message_pieces().await.ok() == Some((0, 0))).then_some(())
    })
    .await;
    assert!(fc.inbox().is_empty(), "nothing was sent");
}
