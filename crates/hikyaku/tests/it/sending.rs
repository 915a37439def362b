//! Sending end to end: SMTP clients and the CLI hand messages to the real
//! server, which delivers them through fakecloud's Exchange and Gmail with
//! XOAUTH2; the open-relay matrix; restart between accept and delivery.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use fakecloud::{CertMode, FakeCloud, SmtpFault, SmtpStage};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::oauth_flow::{
    GMAIL, MAILBOX, authorize_google, authorize_microsoft, by_id, fakecloud, server_for,
};
use testkit::{ADMIN_PASSWORD, Browser, TestServer, eventually};

/// A minimal SMTP client that shows every reply, for asserting on them.
pub struct Smtp {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Smtp {
    pub async fn connect(addr: SocketAddr) -> (Smtp, String) {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the intake");
        let (r, w) = stream.into_split();
        let mut s = Smtp {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = s.reply().await;
        (s, greeting)
    }

    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                .await
                .expect("reply in time")
                .expect("read");
            if n == 0 {
                return all + "<closed>";
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
        self.reply().await
    }

    pub async fn raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    pub async fn auth_plain(&mut self, user: &str, password: &str) -> String {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.cmd(&format!("AUTH PLAIN {token}")).await
    }

    /// MAIL, RCPT, DATA and the message; returns the final reply.
    pub async fn send(&mut self, from: &str, to: &[&str], message: &str) -> String {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        if !r.starts_with("250") {
            return r;
        }
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>")).await;
            if !r.starts_with("250") {
                return r;
            }
        }
        let r = self.cmd("DATA").await;
        if !r.starts_with("354") {
            return r;
        }
        let stuffed = message.replace("\r\n.", "\r\n..");
        self.raw(stuffed.as_bytes()).await;
        self.cmd("\r\n.").await
    }
}

pub const SUBMITTER: &str = "printer";

/// E-mail Settings: the account's upstream SMTP server is fakecloud's.
pub async fn point_smtp(admin: &Browser, provider: &str, addr: SocketAddr, security: &str) {
    let port = addr.port().to_string();
    let r = admin
        .submit(
            "/settings/send/email",
            "/settings/send/email",
            &[
                ("provider", provider),
                ("smtp_host", "localhost"),
                ("smtp_port", &port),
                ("smtp_security", security),
                ("sender", ""),
                ("is_default", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
}

pub async fn add_submitter(admin: &Browser, provider: &str) {
    let r = admin
        .submit(
            "/settings/send/email",
            "/settings/send/submitters",
            &[
                ("name", SUBMITTER),
                ("password", ADMIN_PASSWORD),
                ("provider", provider),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
}

/// A server with the Microsoft account Active, sending through fakecloud's Exchange.
pub async fn microsoft_ready() -> (FakeCloud, TestServer, Browser) {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = authorize_microsoft(&server, &fc).await;
    point_smtp(&admin, "microsoft", fc.exchange_smtp_addr(), "starttls").await;
    add_submitter(&admin, "microsoft").await;
    (fc, server, admin)
}

pub fn message(from: &str, subject: &str, body: &str) -> String {
    format!(
        "From: Scanner <{from}>\r\nTo: boss@example.com\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    )
}

pub async fn submit(server: &TestServer, subject: &str, body: &str) -> String {
    let (mut s, _) = Smtp::connect(server.smtp_addrs()[0]).await;
    s.cmd("EHLO printer.local").await;
    assert!(
        s.auth_plain(SUBMITTER, ADMIN_PASSWORD)
            .await
            .starts_with("235")
    );
    let r = s
        .send(
            "scanner@printer.local",
            &["boss@example.com"],
            &message("scanner@printer.local", subject, body),
        )
        .await;
    s.cmd("QUIT").await;
    r
}

pub async fn job_state(admin: &Browser, subject: &str) -> Option<(String, String)> {
    let page = admin
        .get(&format!(
            "/jobs?q={}",
            url::form_urlencoded::byte_serialize(subject.as_bytes()).collect::<String>()
        ))
        .await;
    let row_at = page.body.find("<tr id=\"job-")?;
    let row = &page.body[row_at..];
    let state = row
        .split("class=\"status-")
        .nth(1)?
        .split('"')
        .next()?
        .to_string();
    Some((state, row.split("</tr>").next()?.to_string()))
}

#[tokio::test]
async fn smtp_message_is_delivered_through_exchange_with_xoauth2() {
    let (fc, server, admin) = microsoft_ready().await;
    let body = "Grüße aus dem Drucker — 日本語の本文\r\n.leading dot line\r\n";
    let r = submit(&server, "Scan 001 — 請求書", body).await;
    assert!(r.starts_with("250"), "{r}");
    let inbox = fc.wait_for_inbox(1, Duration::from_secs(15)).await;
    assert_eq!(inbox.len(), 1);
    let m = &inbox[0];
    assert_eq!(m.mail_from, MAILBOX, "envelope sender is the mailbox");
    assert_eq!(m.auth_user, MAILBOX);
    assert_eq!(m.rcpt_to, vec!["boss@example.com"]);
    let data = String::from_utf8(m.data.clone()).expect("utf-8 intact");
    let parsed = mail_parser::MessageParser::default()
        .parse(&m.data)
        .expect("mime");
    let from = parsed.from().and_then(|f| f.first()).expect("From");
    assert_eq!(
        (from.name(), from.address()),
        (Some("Scanner"), Some(MAILBOX)),
        "From rewritten keeping the name: {data}"
    );
    let reply_to = parsed.reply_to().and_then(|f| f.first()).expect("Reply-To");
    assert_eq!(reply_to.address(), Some("scanner@printer.local"), "{data}");
    assert!(data.contains("Subject: Scan 001 — 請求書"), "{data}");
    assert!(
        data.contains("Grüße aus dem Drucker — 日本語の本文\r\n.leading dot line\r\n"),
        "{data}"
    );
    let (state, row) = eventually(Duration::from_secs(10), "job sent", || async {
        job_state(&admin, "Scan 001")
            .await
            .filter(|(s, _)| s == "sent")
    })
    .await;
    assert_eq!(state, "sent");
    assert!(row.contains("boss@example.com"), "{row}");
}

#[tokio::test]
async fn large_messages_and_bursts_arrive_whole_and_once() {
    let (fc, server, admin) = microsoft_ready().await;
    // Over a megabyte: this one goes through the queue, not the hand-over.
    let line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let big: String = (0..20_000).map(|i| format!("{i:05} {line}\r\n")).collect();
    assert!(big.len() > hikyaku::delivery::handoff::MAX_BYTES);
    let r = submit(&server, "Large scan", &big).await;
    assert!(r.starts_with("250"), "{r}");
    // A burst over several sessions at once, more than delivery's 16 places
    // (4 workers): what finds no place goes through the queue. With the large
    // one, it stays within the account's rate limit (30 a minute).
    let burst = 24;
    let mut tasks = Vec::new();
    for s in 0..4 {
        let addr = server.smtp_addrs()[0];
        tasks.push(tokio::spawn(async move {
            let (mut c, _) = Smtp::connect(addr).await;
            c.cmd("EHLO printer.local").await;
            assert!(
                c.auth_plain(SUBMITTER, ADMIN_PASSWORD)
                    .await
                    .starts_with("235")
            );
            for i in (s..burst).step_by(4) {
                let r = c
                    .send(
                        "scanner@printer.local",
                        &["boss@example.com"],
                        &message("scanner@printer.local", &format!("Burst {i:03}"), "x"),
                    )
                    .await;
                assert!(r.starts_with("250"), "{r}");
            }
            c.cmd("QUIT").await;
        }));
    }
    for t in tasks {
        t.await.expect("session");
    }
    let inbox = fc.wait_for_inbox(burst + 1, Duration::from_secs(30)).await;
    assert_eq!(inbox.len(), burst + 1);
    let large = inbox
        .iter()
        .find(|m| String::from_utf8_lossy(&m.data).contains("Subject: Large scan"))
        .expect("the large message arrived");
    let data = String::from_utf8(large.data.clone()).expect("utf-8");
    assert!(
        data.contains(&format!("\r\n\r\n{big}")),
        "body intact: …{:?}",
        &data[data.len().saturating_sub(200)..]
    );
    let mut subjects: Vec<String> = inbox
        .iter()
        .filter_map(|m| {
            String::from_utf8_lossy(&m.data)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: Burst ").map(str::to_owned))
        })
        .collect();
    subjects.sort();
    let want: Vec<String> = (0..burst).map(|i| format!("{i:03}")).collect();
    assert_eq!(subjects, want, "every message of the burst exactly once");
    let (state, _) = eventually(Duration::from_secs(10), "large job sent", || async {
        job_state(&admin, "Large scan")
            .await
            .filter(|(s, _)| s == "sent")
    })
    .await;
    assert_eq!(state, "sent");
}

// Two workers: the test blocks one on the CLI process while the server it
// talks to runs in this same runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_hands_messages_to_the_running_server() {
    let (fc, server, _admin) = microsoft_ready().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("hikyaku.toml"),
        format!("data_dir = {:?}\n", server.dir.path().display().to_string()),
    )
    .expect("config");
    let attachment = dir.path().join("scan.pdf");
    std::fs::write(&attachment, b"%PDF-1.7\n\x00\x01binary\xff").expect("file");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hikyaku"))
        .current_dir(dir.path())
        .args([
            "send",
            "--to",
            "boss@example.com",
            "--subject",
            "From the CLI",
            "--body",
            "scan attached",
            "--attach",
            attachment.to_str().expect("path"),
        ])
        .output()
        .expect("hikyaku send");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hikyaku"))
        .current_dir(dir.path())
        .args(["sendmail", "-t", "-i"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sendmail");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"To: ops@example.com\nSubject: cron report\n\nall fine\n")
        .expect("write");
    assert!(child.wait().expect("exit").success());
    let inbox = fc.wait_for_inbox(2, Duration::from_secs(20)).await;
    assert_eq!(inbox.len(), 2, "both local submissions delivered");
    let pdf = inbox
        .iter()
        .find(|m| String::from_utf8_lossy(&m.data).contains("From the CLI"))
        .expect("send");
    let parsed = mail_parser::MessageParser::default()
        .parse(&pdf.data)
        .expect("mime");
    assert_eq!(
        parsed.attachments().next().expect("attachment").contents(),
        b"%PDF-1.7\n\x00\x01binary\xff"
    );
    assert!(inbox.iter().all(|m| m.mail_from == MAILBOX));
}

#[tokio::test]
async fn hikyaku_is_never_an_open_relay() {
    let (fc, server, admin) = microsoft_ready().await;
    let addr = server.smtp_addrs()[0];
    // No AUTH, not allowlisted.
    let (mut s, greeting) = Smtp::connect(addr).await;
    assert!(greeting.starts_with("220"));
    s.cmd("EHLO x").await;
    let r = s.cmd("MAIL FROM:<a@example.com>").await;
    assert!(r.starts_with("530"), "{r}");
    // Wrong password, unknown user.
    assert!(
        s.auth_plain(SUBMITTER, "wrong password")
            .await
            .starts_with("535")
    );
    assert!(
        s.auth_plain("nobody", ADMIN_PASSWORD)
            .await
            .starts_with("535")
    );
    assert!(s.cmd("MAIL FROM:<a@example.com>").await.starts_with("530"));
    drop(s);
    // Guesses spread over several connections add up: after four more wrong
    // passwords for the submitter, even the right one is not checked for a
    // while (4 s after the last failure).
    let guesses: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(async move {
                let (mut s, _) = Smtp::connect(addr).await;
                s.cmd("EHLO x").await;
                s.auth_plain(SUBMITTER, &format!("guess {i}")).await
            })
        })
        .collect();
    for g in guesses {
        let r = g.await.expect("guess");
        assert!(r.starts_with("535"), "{r}");
    }
    let (mut s, _) = Smtp::connect(addr).await;
    s.cmd("EHLO x").await;
    let r = s.auth_plain(SUBMITTER, ADMIN_PASSWORD).await;
    assert!(r.starts_with("454 4.7.0 Too many failed logins"), "{r}");
    drop(s);
    // An allowlisted address may send without AUTH; removing it closes the door.
    let r = admin
        .submit(
            "/settings/send/email",
            "/settings/send/allowlist",
            &[("cidr", "127.0.0.1/32"), ("provider", "")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (mut s, _) = Smtp::connect(addr).await;
    s.cmd("EHLO x").await;
    let r = s
        .send(
            "device@lan",
            &["boss@example.com"],
            &message("device@lan", "allowlisted", "hi"),
        )
        .await;
    assert!(r.starts_with("250"), "{r}");
    let r = admin
        .submit(
            "/settings/send/email",
            "/settings/send/allowlist/delete",
            &[("cidr", "127.0.0.1/32")],
        )
        .await;
    assert_eq!(r.status, 303);
    let (mut s, _) = Smtp::connect(addr).await;
    s.cmd("EHLO x").await;
    assert!(s.cmd("MAIL FROM:<a@example.com>").await.starts_with("530"));
    // A range of every address is refused outright.
    let r = admin
        .submit(
            "/settings/send/email",
            "/settings/send/allowlist",
            &[("cidr", "0.0.0.0/0"), ("provider", "")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(fc.wait_for_inbox(1, Duration::from_secs(10)).await.len(), 1);
}

#[tokio::test]
async fn auth_before_starttls_on_a_tls_listener_is_refused() {
    let fc = fakecloud(CertMode::Trusted).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = hikyaku::tls::generate_self_signed(&["localhost".to_string()]).expect("cert");
    std::fs::write(dir.path().join("smtp.pem"), &cert.cert_pem).expect("cert");
    std::fs::write(dir.path().join("smtp.key"), &cert.key_pem).expect("key");
    let mut config = testkit::test_config(dir.path());
    config.intake.starttls_listen = vec!["127.0.0.1:0".parse().expect("addr")];
    config.intake.tls_cert = dir.path().join("smtp.pem").display().to_string();
    config.intake.tls_key = dir.path().join("smtp.key").display().to_string();
    let _ = &fc;
    let server = TestServer::start_with(
        dir,
        config,
        std::sync::Arc::new(hikyaku::clock::OffsetClock::default()),
    )
    .await;
    let (mut s, _) = Smtp::connect(server.smtp_addrs()[1]).await;
    let ehlo = s.cmd("EHLO x").await;
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    let r = s.auth_plain(SUBMITTER, ADMIN_PASSWORD).await;
    assert!(r.starts_with("538") || r.starts_with("530"), "{r}");
}

#[tokio::test]
async fn bad_input_gets_the_right_reply_and_nothing_is_queued() {
    let (fc, server, admin) = microsoft_ready().await;
    let (mut s, _) = Smtp::connect(server.smtp_addrs()[0]).await;
    s.cmd("EHLO x").await;
    assert!(
        s.auth_plain(SUBMITTER, ADMIN_PASSWORD)
            .await
            .starts_with("235")
    );
    // Oversized (SIZE declared), too many recipients, bare LF smuggling.
    assert!(
        s.cmd("MAIL FROM:<a@b.example> SIZE=999999999999")
            .await
            .starts_with("552")
    );
    assert!(s.cmd("MAIL FROM:<a@b.example>").await.starts_with("250"));
    let mut last = String::new();
    for i in 0..101 {
        last = s.cmd(&format!("RCPT TO:<r{i}@example.com>")).await;
    }
    assert!(last.starts_with("452"), "{last}");
    assert!(s.cmd("RSET").await.starts_with("250"));
    assert!(s.cmd("MAIL FROM:<a@b.example>").await.starts_with("250"));
    assert!(s.cmd("RCPT TO:<boss@example.com>").await.starts_with("250"));
    assert!(s.cmd("DATA").await.starts_with("354"));
    s.raw(b"Subject: first\r\n\r\nhello\n.\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n").await;
    let r = s.cmd("\r\n.").await;
    assert!(r.starts_with("554"), "{r}");
    assert!(s.cmd("NOOP").await.starts_with("250"));
    assert!(s.cmd("FOO").await.starts_with("500") || s.cmd("FOO").await.starts_with("502"));
    drop(s);
    // Nor later: nothing shows a job that is not coming, so it gets time
    // to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let jobs = admin.get("/api/v1/status").await.json();
    assert!(
        jobs["queue"].as_object().is_none_or(|q| q.is_empty()),
        "nothing queued: {jobs}"
    );
    assert!(fc.inbox().is_empty());
}

#[tokio::test]
async fn permanent_failure_is_shown_with_the_upstream_reply() {
    let (fc, server, admin) = microsoft_ready().await;
    fc.set_smtp_fault(SmtpFault::ReplyAt {
        stage: SmtpStage::Rcpt,
        code: 550,
        text: "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found".into(),
    });
    let r = submit(&server, "Doomed", "x").await;
    assert!(r.starts_with("250"), "{r}");
    let (_, row) = eventually(Duration::from_secs(15), "job failed", || async {
        job_state(&admin, "Doomed")
            .await
            .filter(|(s, _)| s == "failed")
    })
    .await;
    assert!(row.contains("RecipientNotFound"), "{row}");
}

#[tokio::test]
async fn a_job_reply_shows_in_the_pages_language_and_its_code_in_the_api() {
    let (fc, server, admin) = microsoft_ready().await;
    fc.set_smtp_fault(SmtpFault::Down);
    let r = submit(&server, "Reply in two languages", "body").await;
    assert!(r.starts_with("250"), "{r}");
    let (_, row) = eventually(Duration::from_secs(15), "job deferred", async || {
        job_state(&admin, "Reply in two languages")
            .await
            .filter(|(s, _)| s == "deferred")
    })
    .await;
    assert!(row.contains("(at connect) — check SMTP Server"), "{row}");
    let jobs = admin.get("/api/v1/jobs").await.json();
    let job = &jobs[0];
    assert_eq!(job["last_reply_code"], "job-connect-failed", "{job}");
    assert!(
        job["last_reply"]
            .as_str()
            .is_some_and(|r| r.contains("(at connect) — check SMTP Server")),
        "{job}"
    );
    admin.get("/lang/ja?next=/jobs").await;
    let (_, row) = job_state(&admin, "Reply in two languages")
        .await
        .expect("row");
    assert!(
        row.contains("(接続時)") && !row.contains("(at connect)"),
        "{row}"
    );
}

#[tokio::test]
async fn upstream_down_then_restart_then_delivered_exactly_once() {
    let (fc, server, admin) = microsoft_ready().await;
    fc.set_smtp_fault(SmtpFault::Down);
    let r = submit(&server, "Survives restart", "body").await;
    assert!(r.starts_with("250"), "{r}");
    // The attempt fails (deferred); hikyaku restarts; the cloud comes back.
    eventually(Duration::from_secs(15), "job deferred", async || {
        job_state(&admin, "Survives restart")
            .await
            .filter(|(s, _)| s == "deferred")
    })
    .await;
    let server = server.restart().await;
    fc.set_smtp_fault(SmtpFault::None);
    let admin = Browser::new(&server);
    admin.login("admin", ADMIN_PASSWORD).await;
    // Retry now instead of waiting for the backoff.
    let page = admin.get("/jobs").await;
    let id = page
        .body
        .split("<tr id=\"job-")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the job is listed")
        .to_string();
    let r = admin.submit("/jobs", "/jobs/retry", &[("id", &id)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let inbox = fc.wait_for_inbox(1, Duration::from_secs(15)).await;
    assert_eq!(inbox.len(), 1);
    // A second delivery must not follow: nothing shows one that is not
    // coming, so it gets time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fc.inbox().len(), 1, "delivered once");
    // The history names the account that delivered it and offers no
    // Retry Now for a sent job; an unknown job is not found.
    let (state, row) = job_state(&admin, "Survives restart").await.expect("row");
    assert_eq!(state, "sent", "{row}");
    assert!(row.contains("<td>Microsoft</td>"), "{row}");
    assert!(!row.contains("/jobs/retry"), "{row}");
    let r = admin
        .submit("/jobs", "/jobs/retry", &[("id", "no-such-job")])
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        by_id(
            &admin.get("/settings/send/oauth/microsoft").await,
            "token-status"
        )
        .as_deref(),
        Some("Active")
    );
}

#[tokio::test]
async fn gmail_over_implicit_tls_and_the_test_button() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    authorize_google(&server, &fc, &admin).await;
    point_smtp(&admin, "google", fc.gmail_smtps_addr(), "implicit").await;
    let r = admin
        .submit_done(
            "/settings/send/oauth/google",
            "/settings/send/oauth/google/test",
            &[("to", "someone@example.com")],
        )
        .await;
    assert!(r.body.contains("test e-mail was queued"), "{}", r.body);
    let inbox = fc.wait_for_inbox(1, Duration::from_secs(15)).await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].mail_from, GMAIL);
    assert!(String::from_utf8_lossy(&inbox[0].data).contains("hikyaku test e-mail"));
}

#[tokio::test]
async fn swaks_submits_like_any_mail_client() {
    if !std::path::Path::new("/usr/bin/swaks").exists() {
        assert!(
            std::env::var("CI").is_err(),
            "swaks is missing in CI: scripts/test installs it"
        );
        eprintln!("skipping: swaks not installed (run scripts/test)");
        return;
    }
    let (fc, server, _admin) = microsoft_ready().await;
    let addr = server.smtp_addrs()[0];
    let out = tokio::process::Command::new("swaks")
        .args([
            "--server",
            &addr.ip().to_string(),
            "--port",
            &addr.port().to_string(),
            "--auth",
            "PLAIN",
            "--auth-user",
            SUBMITTER,
            "--auth-password",
            ADMIN_PASSWORD,
        ])
        .args([
            "--from",
            "swaks@printer.local",
            "--to",
            "boss@example.com",
            "--header",
            "Subject: via swaks",
            "--body",
            "hello from swaks",
        ])
        .output()
        .await
        .expect("swaks runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let inbox = fc.wait_for_inbox(1, Duration::from_secs(15)).await;
    assert!(String::from_utf8_lossy(&inbox[0].data).contains("hello from swaks"));
}
