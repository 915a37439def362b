//! The HTTP transports end to end against fakecloud: a Microsoft app-only
//! account sending through Graph `sendMail` and a Google service account
//! through the Gmail API deliver exactly the envelope's recipients (an
//! envelope-only one as Bcc, a header-only one never), attachments intact;
//! `429` + `Retry-After` is honoured, a refused token is refreshed once, and
//! a missing permission is explained in English and Japanese.

use std::time::{Duration, Instant};

use fakecloud::{ApiFault, CertMode, FakeCloud, MailApi};
use hikyaku::cli_app::AppAccountArgs;
use hikyaku::queue::JobStore as _;
use hikyaku::store::Store;
use hikyaku::store::accounts::Account;
use testkit::{Browser, TestServer, eventually, start_fakecloud};

const TENANT: &str = "contoso.example";
const APP: &str = "22222222-aaaa-4bbb-8ccc-000000000001";
const SECRET: &str = "Qx8Q~graph.secret.value";
const SA_EMAIL: &str = "relay@hikyaku-test.iam.gserviceaccount.com";
const MS_MAILBOX: &str = "scanner@contoso.example";
const G_MAILBOX: &str = "alerts@workspace.example";

use super::apponly::{args, server};

/// An app-only account set up as the command line does (apponly.rs).
async fn add_app(server: &TestServer, args: AppAccountArgs) -> Account {
    super::apponly::add_app(server, args).await.unwrap()
}

/// Switches the account to `transport` with its API at fakecloud, on the
/// Accounts page.
async fn switch(admin: &Browser, fc: &FakeCloud, a: &Account, transport: &str) {
    let page = format!("/settings/send/accounts/{}/settings", a.id);
    let r = admin
        .submit(
            &page,
            &page,
            &[
                ("name", &a.name),
                ("provider", a.provider.as_str()),
                ("cloud", "worldwide"),
                ("endpoint", a.endpoint.as_deref().unwrap_or("")),
                ("smtp_host", &a.smtp_host),
                ("smtp_scope", ""),
                ("graph_host", &fc.api_host()),
                ("send_as", ""),
                ("rate_per_minute", ""),
                ("max_connections", ""),
                ("enabled", "on"),
                ("transport", transport),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "switch to {transport}: {}", r.body);
}

async fn queue(
    server: &TestServer,
    id: i64,
    from: &str,
    rcpts: &[&str],
    message: String,
) -> String {
    let store = Store::open(server.dir.path()).await.unwrap();
    let job = hikyaku::intake::store_sink::new_job(
        "test",
        "local",
        Some(id),
        from,
        rcpts.iter().map(|r| r.to_string()).collect(),
        message.into_bytes(),
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    store.enqueue(&job, now).await.unwrap();
    job.id
}

/// A message with a binary attachment; `to` and `cc` are its header recipients.
fn message(from: &str, to: &str, cc: &str, subject: &str, attachment: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(attachment);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "From: {from}\r\nTo: {to}\r\nCc: {cc}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nこんにちは\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"scan.bin\"\r\n\r\n{}\r\n--b1--\r\n",
        lines.join("\r\n")
    )
}

async fn arrived(fc: &FakeCloud, subject: &str) -> fakecloud::ApiMessage {
    eventually(Duration::from_secs(30), subject, || async {
        fc.api_inbox()
            .into_iter()
            .find(|m| String::from_utf8_lossy(&m.data).contains(&format!("Subject: {subject}")))
    })
    .await
}

async fn job_reply(server: &TestServer, id: &str) -> (String, String) {
    let store = Store::open(server.dir.path()).await.unwrap();
    let j = store.job(id).await.unwrap();
    (
        j.state.as_str().to_string(),
        j.last_reply_reason
            .map(|r| r.to_string())
            .unwrap_or_default(),
    )
}

fn attachment() -> Vec<u8> {
    (0..60_000u32)
        .map(|i| (i.wrapping_mul(7919) >> 3) as u8)
        .collect()
}

#[tokio::test]
async fn graph_and_gmail_api_deliver_exactly_the_envelope() {
    let fc = start_fakecloud().await;
    fc.register_app(TENANT, APP);
    fc.add_app_secret(APP, SECRET, false);
    fc.grant_app_mailbox(APP, MS_MAILBOX);
    let key_json = fc.new_service_account(SA_EMAIL);
    fc.delegate(
        SA_EMAIL,
        &[
            "https://mail.google.com/",
            "https://www.googleapis.com/auth/gmail.send",
        ],
    );
    fc.add_workspace_user(G_MAILBOX);
    let (server, admin) = server(&fc).await;
    let files = tempfile::tempdir().unwrap();
    let secret_file = files.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let ms = add_app(
        &server,
        AppAccountArgs {
            microsoft_app: true,
            tenant: Some(TENANT.into()),
            client_id: Some(APP.into()),
            endpoint: Some(fc.entra_endpoint(TENANT)),
            client_secret_file: Some(secret_file),
            ..args(MS_MAILBOX)
        },
    )
    .await;
    let key_file = files.path().join("key.json");
    std::fs::write(&key_file, key_json).unwrap();
    let google = add_app(
        &server,
        AppAccountArgs {
            google_service_account: Some(key_file),
            ..args(G_MAILBOX)
        },
    )
    .await;
    switch(&admin, &fc, &ms, "graph").await;
    switch(&admin, &fc, &google, "gmail_api").await;
    // A transport the provider does not offer is refused with what to choose.
    let page = format!("/settings/send/accounts/{}/settings", ms.id);
    let r = admin
        .submit(
            &page,
            &page,
            &[
                ("name", &ms.name),
                ("provider", "microsoft"),
                ("transport", "gmail_api"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert!(r.body.contains("smtp or graph"), "{}", r.body);

    let bytes = attachment();
    for (a, from, subject) in [
        (&ms, MS_MAILBOX, "via-graph"),
        (&google, G_MAILBOX, "via-gmail"),
    ] {
        // hidden@ is only in the envelope: it must be delivered as Bcc.
        queue(
            &server,
            a.id,
            from,
            &["desk@example.net", "copy@example.net", "hidden@example.net"],
            message(
                from,
                "desk@example.net",
                "copy@example.net",
                subject,
                &bytes,
            ),
        )
        .await;
        let m = arrived(&fc, subject).await;
        assert_eq!(
            m.api,
            if a.id == ms.id {
                MailApi::Graph
            } else {
                MailApi::Gmail
            }
        );
        let mut rcpts = m.recipients.clone();
        rcpts.sort();
        assert_eq!(
            rcpts,
            vec!["copy@example.net", "desk@example.net", "hidden@example.net"]
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.data)
            .unwrap();
        let att = parsed.attachments().next().expect("the attachment");
        assert_eq!(att.contents(), &bytes[..], "attachment byte-intact");
        assert_eq!(parsed.body_text(0).unwrap().trim(), "こんにちは");
    }

    // A header recipient outside the envelope: not sent, the job says why.
    let before = fc.api_inbox().len();
    let id = queue(
        &server,
        ms.id,
        MS_MAILBOX,
        &["desk@example.net"],
        message(
            MS_MAILBOX,
            "desk@example.net",
            "boss@example.net",
            "header-only",
            b"x",
        ),
    )
    .await;
    eventually(Duration::from_secs(30), "header-only fails", || async {
        let (state, reply) = job_reply(&server, &id).await;
        (state == "failed").then_some(reply)
    })
    .await;
    let (_, reply) = job_reply(&server, &id).await;
    assert!(reply.contains("boss@example.net"), "{reply}");
    // Only the failure notice to the sender may have gone out since.
    let later = &fc.api_inbox()[before..];
    assert!(
        later
            .iter()
            .all(|m| !m.recipients.contains(&"boss@example.net".to_string())
                && !m.recipients.contains(&"desk@example.net".to_string())),
        "nobody of the refused message received it: {:?}",
        later.iter().map(|m| &m.recipients).collect::<Vec<_>>()
    );

    // 429 with Retry-After: 2 → the next try no sooner, delivered once.
    fc.push_api_fault(ApiFault {
        status: 429,
        retry_after: Some(2),
        code: "ApplicationThrottled".into(),
    });
    let queued = Instant::now();
    queue(
        &server,
        ms.id,
        MS_MAILBOX,
        &["desk@example.net"],
        message(
            MS_MAILBOX,
            "desk@example.net",
            "desk@example.net",
            "throttled",
            b"y",
        ),
    )
    .await;
    let m = arrived(&fc, "throttled").await;
    assert!(m.received_at.duration_since(queued) >= Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let copies = fc
        .api_inbox()
        .iter()
        .filter(|m| String::from_utf8_lossy(&m.data).contains("Subject: throttled"))
        .count();
    assert_eq!(copies, 1);

    // 401: one refresh of the token, then delivered.
    let tokens_before = fc.app_token_requests();
    fc.push_api_fault(ApiFault {
        status: 401,
        retry_after: None,
        code: "InvalidAuthenticationToken".into(),
    });
    queue(
        &server,
        google.id,
        G_MAILBOX,
        &["desk@example.net"],
        message(
            G_MAILBOX,
            "desk@example.net",
            "desk@example.net",
            "after-401",
            b"z",
        ),
    )
    .await;
    arrived(&fc, "after-401").await;
    assert_eq!(
        fc.app_token_requests(),
        tokens_before + 1,
        "exactly one refresh"
    );

    // 403: the job waits with the reason and what to grant, in both languages.
    fc.push_api_fault(ApiFault {
        status: 403,
        retry_after: None,
        code: "ErrorAccessDenied".into(),
    });
    let id = queue(
        &server,
        ms.id,
        MS_MAILBOX,
        &["desk@example.net"],
        message(
            MS_MAILBOX,
            "desk@example.net",
            "desk@example.net",
            "forbidden",
            b"w",
        ),
    )
    .await;
    let reason = eventually(Duration::from_secs(30), "403 recorded", || async {
        let store = Store::open(server.dir.path()).await.unwrap();
        store.job(&id).await.unwrap().last_reply_reason
    })
    .await;
    let en = reason.to_string();
    let ja_admin = Browser::with_lang(&server, "ja");
    ja_admin.login("admin", testkit::ADMIN_PASSWORD).await;
    let ja = ja_admin.get("/jobs").await.body;
    assert!(
        en.contains("ErrorAccessDenied") && en.contains("grant Mail.Send (application)"),
        "{en}"
    );
    assert!(
        ja.contains("ErrorAccessDenied") && ja.contains("付与してください"),
        "{ja}"
    );
}

/// The two app-only accounts of the first test, on their HTTP transports.
async fn app_accounts(fc: &FakeCloud) -> (TestServer, Browser, Account, Account) {
    fc.register_app(TENANT, APP);
    fc.add_app_secret(APP, SECRET, false);
    fc.grant_app_mailbox(APP, MS_MAILBOX);
    let key_json = fc.new_service_account(SA_EMAIL);
    fc.delegate(SA_EMAIL, &["https://www.googleapis.com/auth/gmail.send"]);
    fc.add_workspace_user(G_MAILBOX);
    let (server, admin) = server(fc).await;
    let files = tempfile::tempdir().unwrap();
    let secret_file = files.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let ms = add_app(
        &server,
        AppAccountArgs {
            microsoft_app: true,
            tenant: Some(TENANT.into()),
            client_id: Some(APP.into()),
            endpoint: Some(fc.entra_endpoint(TENANT)),
            client_secret_file: Some(secret_file),
            transport: Some("graph".into()),
            ..args(MS_MAILBOX)
        },
    )
    .await;
    let key_file = files.path().join("key.json");
    std::fs::write(&key_file, key_json).unwrap();
    let google = add_app(
        &server,
        AppAccountArgs {
            google_service_account: Some(key_file),
            transport: Some("gmail_api".into()),
            ..args(G_MAILBOX)
        },
    )
    .await;
    // Added on their transports by the command's --transport.
    assert_eq!(ms.transport.as_str(), "graph");
    assert_eq!(google.transport.as_str(), "gmail_api");
    assert_eq!(ms.token_status, "active", "{:?}", ms.token_reason);
    switch(&admin, fc, &ms, "graph").await;
    switch(&admin, fc, &google, "gmail_api").await;
    (server, admin, ms, google)
}

/// Pseudo-random bytes: no run a compressor or a base64 slip could hide in.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The job as the JSON API shows it.
async fn api_job(admin: &Browser, id: &str) -> serde_json::Value {
    admin.get(&format!("/api/v1/jobs/{id}")).await.json()
}

#[tokio::test]
async fn large_messages_go_through_graph_drafts_and_the_gmail_resumable_upload() {
    let fc = start_fakecloud().await;
    let (server, admin, ms, google) = app_accounts(&fc).await;
    // (name, message size, through a draft, upload sessions): 2.5 MB fits
    // one sendMail request; 3.9 and 4.1 MB do not (their base64 is over
    // 4 MB), their attachment (under 3 MB) is posted to the draft; 30 MB
    // goes in 320 KiB-multiple ranges of an upload session.
    let cases = [
        ("graph-2.5mb", 2_500_000usize, false, 0usize),
        ("graph-3.9mb", 3_900_000, true, 0),
        ("graph-4.1mb", 4_100_000, true, 0),
        ("graph-30mb", 30_000_000, true, 1),
    ];
    for (n, (subject, size, draft, sessions)) in cases.into_iter().enumerate() {
        // The attachment's base64 lines make a message about 1.37 times its size.
        let bytes = noise(size * 100 / 137, n as u64 + 7);
        let id = queue(
            &server,
            ms.id,
            MS_MAILBOX,
            &["desk@example.net", "copy@example.net", "hidden@example.net"],
            message(
                MS_MAILBOX,
                "desk@example.net",
                "copy@example.net",
                subject,
                &bytes,
            ),
        )
        .await;
        let job = eventually(Duration::from_secs(180), "sent or failed", || async {
            let j = api_job(&admin, &id).await;
            (j["state"] == "sent" || j["state"] == "failed").then_some(j)
        })
        .await;
        assert_eq!(job["state"], "sent", "{subject}: {job}");
        let m = eventually(Duration::from_secs(180), subject, || async {
            fc.api_inbox().into_iter().find(|m| {
                String::from_utf8_lossy(&m.data[..m.data.len().min(4096)])
                    .contains(&format!("Subject: {subject}\r\n"))
            })
        })
        .await;
        assert_eq!(m.api, MailApi::Graph);
        assert_eq!((m.draft, m.upload_sessions), (draft, sessions), "{subject}");
        let mut rcpts = m.recipients.clone();
        rcpts.sort();
        assert_eq!(
            rcpts,
            vec!["copy@example.net", "desk@example.net", "hidden@example.net"],
            "{subject}: exactly the envelope"
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.data)
            .unwrap();
        let att = parsed.attachments().next().expect("the attachment");
        assert!(
            att.contents() == &bytes[..],
            "{subject}: attachment byte-identical"
        );
        assert_eq!(parsed.body_text(0).unwrap().trim(), "こんにちは");
        // The envelope-only recipient is invisible to the others.
        assert!(
            !String::from_utf8_lossy(&m.data).contains("hidden@example.net"),
            "{subject}: Bcc visible"
        );
        let job = eventually(Duration::from_secs(30), "recorded as sent", || async {
            let j = api_job(&admin, &id).await;
            (j["state"] == "sent").then_some(j)
        })
        .await;
        assert_eq!(job["transport"], "graph", "{job}");
        assert!(
            job["provider_id"].as_str().is_some_and(|i| !i.is_empty()),
            "{job}"
        );
    }
    assert_eq!(fc.graph_open_drafts(), 0, "no draft is left behind");

    // Text alone over the request limit: no route fits; the job says why.
    let text = "0123456789".repeat(450_000);
    let id = queue(
        &server,
        ms.id,
        MS_MAILBOX,
        &["desk@example.net"],
        format!(
            "From: {MS_MAILBOX}\r\nTo: desk@example.net\r\nSubject: all-text\r\n\r\n{text}\r\n"
        ),
    )
    .await;
    let job = eventually(Duration::from_secs(60), "all-text fails", || async {
        let j = api_job(&admin, &id).await;
        (j["state"] == "failed").then_some(j)
    })
    .await;
    assert_eq!(job["last_reply_code"], "job-http-text-too-large", "{job}");
    assert!(
        job["last_reply"]
            .as_str()
            .is_some_and(|r| r.contains("without its attachments")),
        "{job}"
    );

    // 30 MB through the Gmail API's resumable upload.
    let bytes = noise(30_000_000 * 100 / 137, 99);
    let id = queue(
        &server,
        google.id,
        G_MAILBOX,
        &["desk@example.net", "hidden@example.net"],
        message(
            G_MAILBOX,
            "desk@example.net",
            "desk@example.net",
            "gmail-30mb",
            &bytes,
        ),
    )
    .await;
    let m = eventually(Duration::from_secs(180), "gmail-30mb", || async {
        fc.api_inbox().into_iter().find(|m| {
            String::from_utf8_lossy(&m.data[..m.data.len().min(4096)])
                .contains("Subject: gmail-30mb\r\n")
        })
    })
    .await;
    assert_eq!(m.api, MailApi::Gmail);
    let parsed = mail_parser::MessageParser::default()
        .parse(&m.data)
        .unwrap();
    assert!(parsed.attachments().next().expect("attachment").contents() == &bytes[..]);
    let mut rcpts = m.recipients.clone();
    rcpts.sort();
    assert_eq!(rcpts, vec!["desk@example.net", "hidden@example.net"]);
    assert!(!String::from_utf8_lossy(&m.data).contains("hidden@example.net"));
    let job = eventually(Duration::from_secs(30), "gmail job sent", || async {
        let j = api_job(&admin, &id).await;
        (j["state"] == "sent").then_some(j)
    })
    .await;
    assert_eq!(job["transport"], "gmail_api", "{job}");
    assert_eq!(job["provider_id"].as_str(), Some(m.id.as_str()), "{job}");
    // The CSV export names the transport and the provider's id too.
    let csv = admin.get("/api/v1/jobs.csv").await.body;
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",transport,provider_id"),
        "{csv}"
    );
    assert!(csv.contains(&format!(",gmail_api,{}", m.id)), "{csv}");
}

/// A message with plain, 8-bit and UTF-8 header fields and an 8-bit body.
fn international(from: &str, to: &str, marker: &str) -> String {
    format!(
        "From: Scanner <{from}>\r\nTo: {to}\r\nSubject: =?UTF-8?B?6KuL5rGC5pu4?= {marker}\r\nX-Note: 日本語のヘッダー {marker}\r\nX-Plain: plain ascii\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße — 日本語の本文 {marker}\r\n"
    )
}

/// Submits `message` over SMTP as the submitter bound to the account.
async fn submit_smtp(server: &TestServer, to: &str, message: &str) {
    use crate::sending::{SUBMITTER, Smtp};
    let (mut s, _) = Smtp::connect(server.smtp_addrs()[0]).await;
    s.cmd("EHLO printer.local").await;
    assert!(
        s.auth_plain(SUBMITTER, testkit::ADMIN_PASSWORD)
            .await
            .starts_with("235")
    );
    let r = s.send("scanner@printer.local", &[to], message).await;
    assert!(r.starts_with("250"), "{r}");
    s.cmd("QUIT").await;
}

/// Checks a delegated account's HTTP delivery: the headers and body as sent.
async fn assert_international(fc: &FakeCloud, api: MailApi, marker: &str, to: &str) {
    let m = eventually(Duration::from_secs(30), marker, || async {
        fc.api_inbox().into_iter().find(|m| {
            String::from_utf8_lossy(&m.data).contains(&format!("X-Note: 日本語のヘッダー {marker}"))
        })
    })
    .await;
    assert_eq!(m.api, api);
    assert_eq!(m.recipients, vec![to.to_string()]);
    let data = String::from_utf8(m.data.clone()).expect("UTF-8 kept");
    for part in [
        format!("Subject: =?UTF-8?B?6KuL5rGC5pu4?= {marker}\r\n"),
        "X-Plain: plain ascii\r\n".to_string(),
        format!("\r\n\r\nGrüße — 日本語の本文 {marker}\r\n"),
    ] {
        assert!(data.contains(&part), "{part:?} in {data}");
    }
    let parsed = mail_parser::MessageParser::default()
        .parse(&m.data)
        .unwrap();
    assert_eq!(parsed.subject(), Some(format!("請求書 {marker}").as_str()));
}

#[tokio::test]
async fn a_delegated_microsoft_account_sends_through_graph() {
    use crate::oauth_flow::{MAILBOX, by_id, edit_microsoft, refresh, trust};
    use hikyaku::provider::Provider;
    let fc = crate::oauth_flow::fakecloud(CertMode::Trusted).await;
    let server = crate::oauth_flow::server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    let r = edit_microsoft(&admin, &fc.entra_endpoint("organizations"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let store = Store::open(server.dir.path()).await.unwrap();
    let a = store.account_for(Provider::Microsoft).await.unwrap();
    switch(&admin, &fc, &a, "graph").await;
    // The device code is asked for Graph's Mail.Send on the account's host.
    let page = refresh(&admin, "microsoft").await;
    let code = by_id(&page, "user-code").expect("a user code");
    let asked = fc
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path.ends_with("/devicecode"))
        .and_then(|r| r.form.into_iter().find(|(k, _)| k == "scope"))
        .map(|(_, v)| v)
        .unwrap_or_default();
    assert!(
        asked.starts_with(&format!(
            "https://{}/Mail.Send offline_access",
            fc.api_host()
        )) && !asked.contains("outlook"),
        "the delegated Graph scope: {asked}"
    );
    fc.approve_user_code(&code, MAILBOX).expect("approve");
    eventually(Duration::from_secs(10), "token Active", || async {
        let p = admin.get("/settings/send/oauth/microsoft").await;
        (by_id(&p, "token-status").as_deref() == Some("Active")).then_some(())
    })
    .await;
    crate::sending::add_submitter(&admin, "microsoft").await;
    submit_smtp(
        &server,
        "boss@example.com",
        &international(MAILBOX, "boss@example.com", "ms-1"),
    )
    .await;
    assert_international(&fc, MailApi::Graph, "ms-1", "boss@example.com").await;
    assert!(fc.inbox().is_empty(), "nothing went over SMTP");

    // Send Test E-mail goes through the account's transport.
    admin
        .submit_done(
            "/settings/send/oauth/microsoft",
            "/settings/send/oauth/microsoft/test",
            &[("to", "someone@example.com")],
        )
        .await;
    let m = eventually(
        Duration::from_secs(30),
        "test e-mail over Graph",
        || async {
            fc.api_inbox()
                .into_iter()
                .find(|m| m.recipients == vec!["someone@example.com".to_string()])
        },
    )
    .await;
    assert_eq!(m.api, MailApi::Graph);
    assert!(fc.inbox().is_empty(), "nothing went over SMTP");
    // The history names the transport on the page.
    let jobs = admin.get("/jobs").await.body;
    assert!(jobs.contains("Microsoft Graph API (HTTPS)"), "{jobs}");

    // Back to SMTP: the authorization ends and Token Status says to authorize again.
    let a = store.account(a.id).await.unwrap();
    switch(&admin, &fc, &a, "smtp").await;
    let page = admin.get("/settings/send/oauth/microsoft").await;
    assert!(
        page.body.contains("authorize this account again"),
        "{}",
        page.body
    );
    assert_ne!(by_id(&page, "token-status").as_deref(), Some("Active"));
}

#[tokio::test]
async fn a_delegated_google_account_sends_through_the_gmail_api() {
    use crate::oauth_flow::{GMAIL, edit_google, paste, refresh, register_url, trust};
    use hikyaku::provider::Provider;
    let fc = crate::oauth_flow::fakecloud(CertMode::Trusted).await;
    let server = crate::oauth_flow::server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    assert_eq!(
        edit_google(&admin, "google-client-secret").await.status,
        303
    );
    let store = Store::open(server.dir.path()).await.unwrap();
    let a = store.account_for(Provider::Google).await.unwrap();
    switch(&admin, &fc, &a, "gmail_api").await;
    refresh(&admin, "google").await;
    let url = register_url(&admin).await;
    // The consent is asked for gmail.send, not full mail access.
    let scope = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    assert!(
        scope
            .split(' ')
            .any(|s| s == "https://www.googleapis.com/auth/gmail.send")
            && !scope.contains("https://mail.google.com/"),
        "{scope}"
    );
    let redirect = fc.google_consent(&url, GMAIL).expect("consent");
    let r = paste(&admin, &redirect).await;
    assert_eq!(r.status, 303, "{}", r.body);
    crate::sending::add_submitter(&admin, "google").await;
    submit_smtp(
        &server,
        "boss@example.com",
        &international(GMAIL, "boss@example.com", "g-1"),
    )
    .await;
    assert_international(&fc, MailApi::Gmail, "g-1", "boss@example.com").await;
    assert!(fc.inbox().is_empty(), "nothing went over SMTP");
    let jobs = admin.get("/jobs").await.body;
    assert!(jobs.contains("Gmail API (HTTPS)"), "{jobs}");
}

/// `hikyaku account add` with app-only flags takes `--transport`, and
/// refuses one the provider does not offer before saving anything.
#[test]
fn account_add_takes_a_transport_with_the_app_only_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hikyaku.toml"), "data_dir = \"d\"\n").unwrap();
    std::fs::write(dir.path().join("key.json"), "{}").unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hikyaku"))
            .current_dir(dir.path())
            .arg("account")
            .args(args)
            .env_remove("HIKYAKU_CONFIG")
            .env_remove("HIKYAKU_MASTER_KEY")
            .output()
            .expect("hikyaku runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    for args in [
        &[
            "add",
            "--google-service-account",
            "key.json",
            "--mailbox",
            G_MAILBOX,
            "--transport",
            "graph",
        ][..],
        &[
            "add",
            "--microsoft-app",
            "--tenant",
            TENANT,
            "--client-id",
            APP,
            "--client-secret-file",
            "secret",
            "--mailbox",
            MS_MAILBOX,
            "--transport",
            "gmail_api",
        ][..],
    ] {
        let (ok, out) = run(args);
        assert!(!ok, "{out}");
        assert!(
            out.contains("transport")
                && out.contains("smtp or graph")
                && !out.contains("cannot be used with"),
            "{out}"
        );
    }
    let (ok, out) = run(&["list"]);
    assert!(ok, "{out}");
    assert!(
        !out.contains(G_MAILBOX) && !out.contains(MS_MAILBOX),
        "nothing saved: {out}"
    );
}

#[tokio::test]
async fn the_http_transports_go_through_the_outbound_proxy() {
    let fc = start_fakecloud().await;
    let (server, admin, ms, google) = app_accounts(&fc).await;
    let proxy = testkit::ConnectProxy::start(None).await;
    let network = "/settings/management/network";
    let r = admin
        .submit(
            network,
            network,
            &[("host", "127.0.0.1"), ("port", &proxy.port())],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let target = fc.base_url().trim_start_matches("https://").to_string();
    for (a, from, subject) in [
        (&ms, MS_MAILBOX, "graph-via-proxy"),
        (&google, G_MAILBOX, "gmail-via-proxy"),
    ] {
        let before = proxy.connects();
        queue(
            &server,
            a.id,
            from,
            &["desk@example.net"],
            message(from, "desk@example.net", "desk@example.net", subject, b"p"),
        )
        .await;
        arrived(&fc, subject).await;
        // A tunnel opened for it, unless the one the other API's requests
        // opened (same host) is reused.
        assert!(
            proxy.connects() > before || before > 0,
            "{subject}: {:?}",
            proxy.targets()
        );
    }
    assert!(proxy.connects() >= 1);
    assert!(
        proxy.targets().iter().all(|t| *t == target),
        "{:?}",
        proxy.targets()
    );
}

/// Killed between Graph's acceptance and the record of it: the message goes
/// again after the restart, once more at most, and is then recorded as sent.
#[tokio::test]
async fn a_kill_between_the_http_request_and_the_record_sends_at_most_one_duplicate() {
    let fc = start_fakecloud().await;
    let (mut server, _admin, ms, _google) = app_accounts(&fc).await;
    server.stop().await;
    let data = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let store = Store::open(data.path()).await.unwrap();
    let job = hikyaku::intake::store_sink::new_job(
        "test",
        "local",
        Some(ms.id),
        MS_MAILBOX,
        vec!["desk@example.net".into()],
        message(
            MS_MAILBOX,
            "desk@example.net",
            "desk@example.net",
            "killed",
            b"k",
        )
        .into_bytes(),
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    store.enqueue(&job, now).await.unwrap();
    store.close().await;
    fc.delay_api_replies(Some(Duration::from_secs(20)));
    let work = tempfile::tempdir().unwrap();
    let mut hk = testkit::Hikyaku::new(
        std::path::Path::new(env!("CARGO_BIN_EXE_hikyaku")),
        data.path(),
        work.path(),
        2,
    );
    hk.start().await;
    let copies = || {
        fc.api_inbox()
            .iter()
            .filter(|m| String::from_utf8_lossy(&m.data).contains("Subject: killed\r\n"))
            .count()
    };
    // Graph has the message; its 202 has not come back yet.
    eventually(Duration::from_secs(60), "the first request", || async {
        (copies() == 1).then_some(())
    })
    .await;
    hk.kill();
    fc.delay_api_replies(None);
    hk.start().await;
    let state = eventually(
        Duration::from_secs(180),
        "sent after the restart",
        || async {
            let store = Store::open(data.path()).await.ok()?;
            let j = store.job(&job.id).await.ok()?;
            store.close().await;
            (j.state.as_str() == "sent").then_some(j)
        },
    )
    .await;
    assert_eq!(state.state.as_str(), "sent");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n = copies();
    println!("crash window over Graph: {n} copies for one kill");
    assert!((1..=2).contains(&n), "{n} copies for one kill");
    hk.kill();
}

/// Saves the account's settings page with the API at fakecloud and
/// "Large messages over Graph" as given.
async fn save_graph_settings(admin: &Browser, fc: &FakeCloud, a: &Account, large: bool) -> String {
    let page = format!("/settings/send/accounts/{}/settings", a.id);
    let mut fields = vec![
        ("name", a.name.as_str()),
        ("provider", a.provider.as_str()),
        ("cloud", "worldwide"),
        ("endpoint", a.endpoint.as_deref().unwrap_or("")),
        ("smtp_host", a.smtp_host.as_str()),
        ("smtp_scope", ""),
        ("send_as", ""),
        ("rate_per_minute", ""),
        ("max_connections", ""),
        ("enabled", "on"),
        ("transport", "graph"),
    ];
    let host = fc.api_host();
    fields.push(("graph_host", &host));
    if large {
        fields.push(("graph_large_messages", "on"));
    }
    let r = admin.submit(&page, &page, &fields).await;
    assert_eq!(r.status, 303, "{}", r.body);
    admin.get(&page).await.body
}

/// Runs a device authorization on the Microsoft page and approves it;
/// returns the scope it asked for once the account is Active with a grant
/// that holds Mail.ReadWrite or not, as `read_write` says.
async fn authorize_again(admin: &Browser, fc: &FakeCloud, id: i64, read_write: bool) -> String {
    use crate::oauth_flow::{MAILBOX, by_id, refresh};
    let before = fc.requests().len();
    let mut page = refresh(admin, "microsoft").await;
    if by_id(&page, "user-code").is_none() {
        // Active: a new authorization runs beside the token in use.
        let base = "/settings/send/oauth/microsoft";
        let r = admin.submit(base, &format!("{base}/new-code"), &[]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        page = admin.get(base).await;
    }
    let code = by_id(&page, "user-code").expect("a user code");
    let asked = fc.requests()[before..]
        .iter()
        .rev()
        .find(|r| r.path.ends_with("/devicecode"))
        .and_then(|r| r.form.iter().find(|(k, _)| k == "scope"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    fc.approve_user_code(&code, MAILBOX).expect("approve");
    eventually(Duration::from_secs(15), "authorization done", || async {
        let a = admin.get(&format!("/api/v1/accounts/{id}")).await.json();
        let granted = a["granted_scope"].as_str().unwrap_or("");
        (a["token_status"] == "active" && granted.contains("Mail.ReadWrite") == read_write)
            .then_some(())
    })
    .await;
    asked
}

/// Submits `message` over SMTP as the bound submitter; the reply to DATA.
async fn submit_reply(server: &TestServer, message: &str) -> String {
    use crate::sending::{SUBMITTER, Smtp};
    let (mut s, _) = Smtp::connect(server.smtp_addrs()[0]).await;
    s.cmd("EHLO printer.local").await;
    assert!(
        s.auth_plain(SUBMITTER, testkit::ADMIN_PASSWORD)
            .await
            .starts_with("235")
    );
    let r = s
        .send("scanner@printer.local", &["desk@example.net"], message)
        .await;
    s.cmd("QUIT").await;
    r
}

#[tokio::test]
async fn a_delegated_graph_account_takes_large_messages_once_mail_readwrite_is_granted() {
    use crate::oauth_flow::{MAILBOX, edit_microsoft, trust};
    use hikyaku::provider::Provider;
    let fc = crate::oauth_flow::fakecloud(CertMode::Trusted).await;
    let server = crate::oauth_flow::server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    let r = edit_microsoft(&admin, &fc.entra_endpoint("organizations"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let store = Store::open(server.dir.path()).await.unwrap();
    let a = store.account_for(Provider::Microsoft).await.unwrap();
    let form = save_graph_settings(&admin, &fc, &a, false).await;
    assert!(
        form.contains("id=\"graph_large_messages\"") && !form.contains("checked> Large"),
        "the opt-in is offered, off: {form}"
    );
    let asked = authorize_again(&admin, &fc, a.id, false).await;
    assert!(
        !asked.contains("Mail.ReadWrite"),
        "least privilege: {asked}"
    );
    crate::sending::add_submitter(&admin, "microsoft").await;
    let big = |subject: &str, size: usize, seed: u64| {
        let bytes = noise(size * 100 / 137, seed);
        let m = message(
            MAILBOX,
            "desk@example.net",
            "desk@example.net",
            subject,
            &bytes,
        );
        (m, bytes)
    };

    // Off: a 4.1 MB message is refused at intake, nothing queued.
    let (m41, _) = big("large-off", 4_100_000, 1);
    let r = submit_reply(&server, &m41).await;
    assert!(r.starts_with("552 5.3.4"), "{r}");

    // On: the settings say the account must be authorized again, and Token
    // Status shows it, in English and Japanese.
    let a = store.account(a.id).await.unwrap();
    save_graph_settings(&admin, &fc, &a, true).await;
    let page = admin.get("/settings/send/oauth/microsoft").await.body;
    assert!(
        page.contains("Large messages over Graph were turned on")
            && page.contains("Authorize this account again"),
        "{page}"
    );
    let ja_admin = Browser::with_lang(&server, "ja");
    ja_admin.login("admin", testkit::ADMIN_PASSWORD).await;
    let ja = ja_admin.get("/settings/send/oauth/microsoft").await.body;
    assert!(
        ja.contains("Graph で大きなメッセージを送る設定がオンになりました")
            && ja.contains("認証をやり直してください"),
        "{ja}"
    );
    let form = ja_admin
        .get(&format!("/settings/send/accounts/{}/settings", a.id))
        .await
        .body;
    assert!(form.contains("Mail.ReadWrite も要求する"), "{form}");

    // Admin consent refused: the grant lacks Mail.ReadWrite; the account
    // sends (Active) but stays at about 3 MB, and says why.
    fc.withhold_permissions(&["Mail.ReadWrite"]);
    let asked = authorize_again(&admin, &fc, a.id, false).await;
    assert!(
        asked.contains(&format!("https://{}/Mail.ReadWrite", fc.api_host())),
        "{asked}"
    );
    let page = admin.get("/settings/send/oauth/microsoft").await.body;
    assert!(page.contains("did not grant Mail.ReadWrite"), "{page}");
    let json = admin
        .get(&format!("/api/v1/accounts/{}", a.id))
        .await
        .json();
    assert_eq!(
        json["token_warning_code"], "token-graph-read-write-not-granted",
        "{json}"
    );
    assert_eq!(json["max_message_size"], 3_080_192, "{json}");
    let ja = ja_admin.get("/settings/send/oauth/microsoft").await.body;
    assert!(ja.contains("Mail.ReadWrite が許可されなかった"), "{ja}");
    let r = submit_reply(&server, &m41).await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // Its refreshes ask only for what was granted, so it keeps sending.
    let refreshes = fc.refresh_count();
    fc.expire_access_tokens();
    let (small, _) = big("small-after-refresh", 50_000, 3);
    let r = submit_reply(&server, &small).await;
    assert!(r.starts_with("250"), "{r}");
    arrived(&fc, "small-after-refresh").await;
    assert!(fc.refresh_count() > refreshes, "a refresh happened");

    // Consent given, authorized again: 4.1 MB and 30 MB are taken and go
    // through a draft, attachments byte-identical.
    fc.withhold_permissions(&[]);
    authorize_again(&admin, &fc, a.id, true).await;
    let json = admin
        .get(&format!("/api/v1/accounts/{}", a.id))
        .await
        .json();
    assert_eq!(json["graph_large_messages"], true, "{json}");
    assert_eq!(json["max_message_size"], 35 * 1024 * 1024, "{json}");
    for (subject, size, sessions) in [("large-4.1mb", 4_100_000, 0), ("large-30mb", 30_000_000, 1)]
    {
        let (m, bytes) = big(subject, size, size as u64);
        let r = submit_reply(&server, &m).await;
        assert!(r.starts_with("250"), "{subject}: {r}");
        let got = eventually(Duration::from_secs(180), subject, || async {
            fc.api_inbox().into_iter().find(|m| {
                String::from_utf8_lossy(&m.data[..m.data.len().min(4096)])
                    .contains(&format!("Subject: {subject}\r\n"))
            })
        })
        .await;
        assert_eq!(got.api, MailApi::Graph);
        assert_eq!(
            (got.draft, got.upload_sessions),
            (true, sessions),
            "{subject}"
        );
        assert_eq!(got.recipients, vec!["desk@example.net".to_string()]);
        let parsed = mail_parser::MessageParser::default()
            .parse(&got.data)
            .unwrap();
        let att = parsed.attachments().next().expect("the attachment");
        assert!(att.contents() == &bytes[..], "{subject}: byte-identical");
        assert_eq!(parsed.body_text(0).unwrap().trim(), "こんにちは");
    }
    assert_eq!(fc.graph_open_drafts(), 0);
    assert!(fc.inbox().is_empty(), "nothing went over SMTP");
}

/// `hikyaku account add --graph-large-messages` and `account set`: the
/// setting, the limit it gives before the grant, refusals that save nothing.
#[test]
fn the_command_line_turns_large_messages_over_graph_on_and_off() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hikyaku.toml"), "data_dir = \"d\"\n").unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hikyaku"))
            .current_dir(dir.path())
            .arg("account")
            .args(args)
            .env_remove("HIKYAKU_CONFIG")
            .env_remove("HIKYAKU_MASTER_KEY")
            .output()
            .expect("hikyaku runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run(&[
        "add",
        "--provider",
        "microsoft",
        "--name",
        "big",
        "--transport",
        "graph",
        "--graph-large-messages",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["show", "big"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("large via graph: on (Mail.ReadWrite not granted yet")
            && out.contains("max message:     3080192 bytes"),
        "{out}"
    );
    let (ok, out) = run(&["set", "big", "--graph-large-messages", "off"]);
    assert!(ok && out.contains("large via graph: off"), "{out}");
    // Google has no such setting; app-only accounts have the application
    // permission instead: both refused, nothing saved.
    let (ok, out) = run(&[
        "add",
        "--provider",
        "google",
        "--name",
        "g",
        "--graph-large-messages",
    ]);
    assert!(!ok && out.contains("for Microsoft accounts"), "{out}");
    let (ok, out) = run(&[
        "add",
        "--microsoft-app",
        "--tenant",
        TENANT,
        "--client-id",
        APP,
        "--client-secret-file",
        "secret",
        "--mailbox",
        MS_MAILBOX,
        "--graph-large-messages",
    ]);
    assert!(!ok && out.contains("cannot be used with"), "{out}");
    let (ok, out) = run(&["list"]);
    assert!(ok, "{out}");
    assert!(!out.contains(" g ") && !out.contains(MS_MAILBOX), "{out}");
}
