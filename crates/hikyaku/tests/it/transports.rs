//! The HTTP transports end to end against fakecloud: a Microsoft app-only
//! account sending through Graph `sendMail` and a Google service account
//! through the Gmail API deliver exactly the envelope's recipients (an
//! envelope-only one as Bcc, a header-only one never), attachments intact;
//! `429` + `Retry-After` is honoured, a refused token is refreshed once, and
//! a missing permission is explained in English and Japanese.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fakecloud::{ApiFault, FakeCloud, MailApi};
use hikyaku::cli_app::AppAccountArgs;
use hikyaku::clock::SystemClock;
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

async fn server(fc: &FakeCloud) -> (TestServer, Browser) {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let ca = "/settings/management/ca-certificates";
    let r = admin.submit(ca, ca, &[("pem", &fc.ca_pem())]).await;
    assert_eq!(r.status, 303, "trust the CA: {}", r.body);
    (server, admin)
}

async fn add_app(server: &TestServer, args: AppAccountArgs) -> Account {
    let (store, key) = hikyaku::app::open_data(&server.config).await.unwrap();
    let tokens =
        hikyaku::app::token_service(&server.config, &store, key.clone(), Arc::new(SystemClock))
            .await
            .unwrap();
    let r = hikyaku::cli_app::add_app_account_cli(&store, &key, &tokens, &SystemClock, &args)
        .await
        .unwrap();
    tokens.shutdown();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    r
}

fn args(mailbox: &str) -> AppAccountArgs {
    AppAccountArgs {
        microsoft_app: false,
        tenant: None,
        client_id: None,
        client_secret_file: None,
        secret_expires: None,
        certificate: None,
        certificate_password_file: None,
        google_service_account: None,
        mailbox: mailbox.to_string(),
        name: None,
        cloud: "worldwide".into(),
        endpoint: None,
    }
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
