//! Accounts end to end against fakecloud: several Microsoft accounts, each
//! authorized as its own mailbox; routing at intake (binding, send-as by
//! envelope and by From, default, unroutable → 550 with nothing queued);
//! per-account rate and connection caps; delete with jobs moved or failed;
//! roles; a national cloud's hosts and scope.

use std::time::Duration;

use fakecloud::{CertMode, FakeCloud};
use reqwest::Method;
use serde_json::{Value, json};

use crate::oauth_flow::{MAILBOX, authorize_microsoft, by_id, fakecloud, server_for};
use crate::sending::{Smtp, point_smtp};
use testkit::{ADMIN_PASSWORD, Browser, TestServer, add_user, eventually};

/// One API call with the browser's session (cookie and CSRF header).
pub(crate) async fn api(
    b: &Browser,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let csrf = b.session_csrf().await;
    let mut req = b
        .client
        .request(method, format!("{}{path}", b.base))
        .header("x-csrf-token", csrf);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("API call");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Adds a delegated Microsoft account through the API, authorizes it as
/// `mailbox` at fakecloud and points it at fakecloud's Exchange.
async fn add_authorized(admin: &Browser, fc: &FakeCloud, mut body: Value, mailbox: &str) -> i64 {
    body["provider"] = json!("microsoft");
    let (s, a) = api(admin, Method::POST, "/api/v1/accounts", Some(body)).await;
    assert_eq!(s, 201, "{a}");
    let id = a["id"].as_i64().unwrap();
    let (s, b) = api(
        admin,
        Method::PUT,
        &format!("/api/v1/accounts/{id}/oauth"),
        Some(json!({
            "enabled": true,
            "verify_cert": true,
            "endpoint": fc.entra_endpoint("organizations"),
            "client_id": "ms-client-id",
        })),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api(
        admin,
        Method::POST,
        &format!("/api/v1/accounts/{id}/connection-check"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["connection_status"], "successful", "{b}");
    let (_, b) = api(
        admin,
        Method::GET,
        &format!("/api/v1/accounts/{id}/oauth"),
        None,
    )
    .await;
    let code = b["device_code"]["user_code"]
        .as_str()
        .expect("a user code")
        .to_string();
    fc.approve_user_code(&code, mailbox).unwrap();
    eventually(Duration::from_secs(10), "token Active", || async {
        let (_, b) = api(admin, Method::GET, &format!("/api/v1/accounts/{id}"), None).await;
        (b["token_status"] == "active").then_some(())
    })
    .await;
    let (s, b) = api(
        admin,
        Method::PUT,
        &format!("/api/v1/accounts/{id}/email"),
        Some(json!({
            "smtp_host": "localhost",
            "smtp_port": fc.exchange_smtp_addr().port(),
            "smtp_security": "starttls",
        })),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    id
}

fn message(from: &str, subject: &str) -> String {
    format!("From: {from}\r\nTo: dest@example.net\r\nSubject: {subject}\r\n\r\nbody\r\n")
}

/// Sends one message (AUTH as `user` unless `None`); returns the reply.
async fn submit(
    server: &TestServer,
    user: Option<&str>,
    envelope: &str,
    from: &str,
    subject: &str,
) -> String {
    let (mut c, _) = Smtp::connect(server.smtp_addrs()[0]).await;
    c.cmd("EHLO test").await;
    if let Some(user) = user {
        let r = c.auth_plain(user, ADMIN_PASSWORD).await;
        assert!(r.starts_with("235"), "{r}");
    }
    c.send(envelope, &["dest@example.net"], &message(from, subject))
        .await
}

fn subject_of(m: &fakecloud::ReceivedMessage) -> String {
    testkit::header(&m.data, "Subject").unwrap_or_default()
}

const SCANS: &str = "scan@contoso.example";
const ERP: &str = "erp@contoso.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routing_limits_and_deleting_accounts() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = authorize_microsoft(&server, &fc).await;
    point_smtp(&admin, "microsoft", fc.exchange_smtp_addr(), "starttls").await;
    let scans = add_authorized(
        &admin,
        &fc,
        json!({"name": "scans", "send_as": ["@scans.example"], "rate_per_minute": 2}),
        SCANS,
    )
    .await;
    let erp = add_authorized(
        &admin,
        &fc,
        json!({"name": "erp", "send_as": ["invoices@erp.example"], "max_connections": 1}),
        ERP,
    )
    .await;
    fc.allow_send_as(SCANS, "a@scans.example");
    fc.allow_send_as(ERP, "invoices@erp.example");
    // A submitter bound to erp by name, one unbound, an allowlist entry bound to scans.
    for (name, account) in [("bound", "erp"), ("free", "")] {
        let (s, b) = api(
            &admin,
            Method::POST,
            "/api/v1/submitters",
            Some(json!({"name": name, "password": ADMIN_PASSWORD, "provider": account})),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, b) = api(
        &admin,
        Method::POST,
        "/api/v1/allowlist",
        Some(json!({"cidr": "127.0.0.1/32", "provider": scans.to_string()})),
    )
    .await;
    assert_eq!(s, 201, "{b}");

    // The routing matrix.
    let cases = [
        (
            Some("bound"),
            "x@else.example",
            "x@else.example",
            "binding",
            ERP,
        ),
        (None, "y@else.example", "y@else.example", "allowlist", SCANS),
        (
            Some("free"),
            "a@scans.example",
            "a@scans.example",
            "by envelope",
            SCANS,
        ),
        (
            Some("free"),
            "device@lan.example",
            "invoices@erp.example",
            "by from",
            ERP,
        ),
        (
            Some("free"),
            "z@else.example",
            "z@else.example",
            "default",
            MAILBOX,
        ),
    ];
    for (user, envelope, from, subject, _) in cases {
        let r = submit(&server, user, envelope, from, subject).await;
        assert!(r.starts_with("250"), "{subject}: {r}");
    }
    let inbox = fc.wait_for_inbox(5, Duration::from_secs(30)).await;
    assert_eq!(inbox.len(), 5, "{inbox:?}");
    for (_, _, from, subject, mailbox) in cases {
        let m = inbox
            .iter()
            .find(|m| subject_of(m) == subject)
            .unwrap_or_else(|| panic!("{subject} delivered"));
        assert_eq!(
            m.auth_user, mailbox,
            "{subject} went through the wrong account"
        );
        let header_from = testkit::header(&m.data, "From").unwrap_or_default();
        if matches!(subject, "by envelope" | "by from") {
            // The account may send as this From: it is kept.
            assert!(header_from.contains(from), "{subject}: From {header_from}");
        } else {
            assert!(
                header_from.contains(mailbox),
                "{subject}: From {header_from}"
            );
        }
    }
    // The job history names the account.
    let jobs = admin.get("/jobs").await;
    assert!(jobs.body.contains("erp (Microsoft)"), "{}", jobs.body);

    // Unroutable: no account is the default any more, three are Active.
    let (s, b) = api(
        &admin,
        Method::PUT,
        "/api/v1/email/microsoft",
        Some(json!({"smtp_host": "localhost", "smtp_port": fc.exchange_smtp_addr().port(), "smtp_security": "starttls", "is_default": false})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (_, before) = api(&admin, Method::GET, "/api/v1/jobs?limit=1000", None).await;
    let r = submit(
        &server,
        Some("free"),
        "z@else.example",
        "z@else.example",
        "nowhere",
    )
    .await;
    assert!(r.starts_with("550 5.7.1"), "{r}");
    assert!(r.contains("no account routes this message"), "{r}");
    let (_, after) = api(&admin, Method::GET, "/api/v1/jobs?limit=1000", None).await;
    assert_eq!(
        before.as_array().unwrap().len(),
        after.as_array().unwrap().len(),
        "nothing queued"
    );

    // Limits: scans sends 2 a minute, erp over one connection; the default
    // account is not held up by either.
    for i in 0..3 {
        for (envelope, from) in [
            ("a@scans.example", "a@scans.example"),
            ("device@lan.example", "invoices@erp.example"),
        ] {
            let r = submit(
                &server,
                Some("free"),
                envelope,
                from,
                &format!("load {i} {from}"),
            )
            .await;
            assert!(r.starts_with("250"), "{r}");
        }
        let r = submit(
            &server,
            Some("bound"),
            "q@else.example",
            "q@else.example",
            &format!("load {i} bound"),
        )
        .await;
        assert!(r.starts_with("250"), "{r}");
    }
    // scans already sent 2 this minute (allowlist, envelope): none of its 3
    // new ones goes out yet, while erp's 6 do, one connection at a time.
    let inbox = fc.wait_for_inbox(11, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let inbox_now = fc.inbox();
    assert_eq!(
        inbox_now.len(),
        11,
        "{:?}",
        inbox_now.iter().map(subject_of).collect::<Vec<_>>()
    );
    assert_eq!(inbox.len(), 11);
    let erp_conns: std::collections::BTreeSet<u64> = inbox_now
        .iter()
        .filter(|m| m.auth_user == ERP && subject_of(m).starts_with("load"))
        .map(|m| m.connection)
        .collect();
    assert_eq!(erp_conns.len(), 1, "erp used one connection at a time");
    let (_, jobs) = api(&admin, Method::GET, "/api/v1/jobs?state=deferred", None).await;
    let deferred = jobs.as_array().unwrap();
    assert_eq!(deferred.len(), 3, "{jobs}");
    assert!(deferred.iter().all(|j| j["account_id"] == scans), "{jobs}");

    // Deleting scans asks about its 3 waiting jobs; they move to erp…
    let (s, b) = api(
        &admin,
        Method::DELETE,
        &format!("/api/v1/accounts/{scans}"),
        None,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"].as_str().unwrap_or_default().contains("3 jobs"),
        "{b}"
    );
    let page = admin
        .get(&format!("/settings/send/accounts/{scans}/delete"))
        .await;
    assert!(
        by_id(&page, "account-delete-waiting")
            .unwrap_or_default()
            .contains('3'),
        "{}",
        page.body
    );
    let (s, b) = api(
        &admin,
        Method::DELETE,
        &format!("/api/v1/accounts/{scans}?jobs=move:{erp}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["jobs"], 3);
    let (_, jobs) = api(&admin, Method::GET, "/api/v1/jobs?state=deferred", None).await;
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .all(|j| j["account_id"] == erp),
        "{jobs}"
    );
    // …and erp's are failed when it goes.
    let (s, b) = api(
        &admin,
        Method::DELETE,
        &format!("/api/v1/accounts/{erp}?jobs=fail"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (_, failed) = api(&admin, Method::GET, "/api/v1/jobs?state=failed", None).await;
    let failed = failed.as_array().unwrap();
    assert_eq!(
        failed.len(),
        b["jobs"].as_u64().unwrap() as usize,
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .all(|j| j["last_reply_code"] == "job-account-deleted"
                || j["last_reply"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("was deleted")),
        "{failed:?}"
    );
    let (_, list) = api(&admin, Method::GET, "/api/v1/accounts", None).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn google_accounts_are_refused_to_a_network_admin_and_clouds_set_the_hosts() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = authorize_microsoft(&server, &fc).await;
    add_user(&admin, "net", "network_admin").await;
    let net = Browser::new(&server);
    net.login("net", ADMIN_PASSWORD).await;
    // Pages: the Accounts page is theirs (in the settings menu, in both
    // languages), a Google account's screens are not.
    assert!(
        net.get("/settings")
            .await
            .body
            .contains("id=\"menu-accounts\"")
    );
    assert_eq!(net.get("/settings/send/accounts").await.status, 200);
    let ja = Browser::with_lang(&server, "ja");
    ja.login("admin", ADMIN_PASSWORD).await;
    let page = ja.get("/settings/send/accounts").await.body;
    assert!(
        page.contains("送信アカウント") && page.contains("稼働中") && page.contains("委任"),
        "{page}"
    );
    let page = admin.get("/settings/send/accounts").await.body;
    assert!(
        page.contains("Accounts") && page.contains("Active") && page.contains("Delegated"),
        "{page}"
    );
    let (_, list) = api(&admin, Method::GET, "/api/v1/accounts", None).await;
    let google = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["provider"] == "google")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    for path in [
        format!("/settings/send/accounts/{google}"),
        format!("/settings/send/accounts/{google}/settings"),
        format!("/settings/send/accounts/{google}/delete"),
    ] {
        assert_eq!(net.get(&path).await.status, 403, "{path}");
    }
    let r = net
        .submit(
            "/settings/send/accounts/new",
            "/settings/send/accounts",
            &[("name", "g2"), ("provider", "google"), ("enabled", "on")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // API: the same refusals; Microsoft accounts are theirs.
    assert_eq!(
        api(
            &net,
            Method::GET,
            &format!("/api/v1/accounts/{google}"),
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api(
            &net,
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"name": "g3", "provider": "google"}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api(
            &net,
            Method::DELETE,
            &format!("/api/v1/accounts/{google}?jobs=fail"),
            None
        )
        .await
        .0,
        403
    );
    let (_, mine) = api(&net, Method::GET, "/api/v1/accounts", None).await;
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|a| a["provider"] == "microsoft"),
        "{mine}"
    );

    // A GCC High account: its device-code request asks for GCC High's SMTP
    // scope, at the (overridden) authority; its SMTP host is the override.
    let (s, a) = api(
        &net,
        Method::POST,
        "/api/v1/accounts",
        Some(json!({
            "name": "gov",
            "provider": "microsoft",
            "cloud": "gcc_high",
            "endpoint": fc.entra_endpoint("organizations"),
            "smtp_host": "127.0.0.1",
        })),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["cloud"], "gcc_high");
    assert_eq!(a["smtp_scope"], "https://outlook.office365.us/SMTP.Send");
    assert_eq!(a["graph_host"], "graph.microsoft.us");
    assert_eq!(a["smtp_host"], "127.0.0.1");
    let id = a["id"].as_i64().unwrap();
    let page = net
        .get(&format!("/settings/send/accounts/{id}/settings"))
        .await;
    assert!(
        page.body.contains("https://outlook.office365.us/SMTP.Send"),
        "{}",
        page.body
    );
    let (s, b) = api(
        &net,
        Method::PUT,
        &format!("/api/v1/accounts/{id}/oauth"),
        Some(json!({"enabled": true, "verify_cert": true, "endpoint": fc.entra_endpoint("organizations"), "client_id": "ms-client-id"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api(
        &net,
        Method::POST,
        &format!("/api/v1/accounts/{id}/device-code"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // The last device code asked for is this account's, with its scope.
    let asked = fc
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/devicecode"))
        .map(|r| r.form_value("scope").unwrap_or_default().to_string())
        .collect::<Vec<_>>();
    let last = asked.last().expect("a device code request");
    assert!(
        last.starts_with("https://outlook.office365.us/SMTP.Send "),
        "{asked:?}"
    );
    assert!(!last.contains("outlook.office.com"), "{asked:?}");
    // The account's page shows its name; the default account's does not.
    let page = net.get(&format!("/settings/send/accounts/{id}")).await;
    assert_eq!(
        by_id(&page, "account-name").as_deref(),
        Some("Account name: gov")
    );
    assert!(
        by_id(
            &net.get("/settings/send/oauth/microsoft").await,
            "account-name"
        )
        .is_none()
    );
}

/// `hikyaku account …` in a data directory, as an administrator at the
/// terminal does it; returns the exit status and everything printed.
fn account_cli(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hikyaku"))
        .current_dir(dir)
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
}

#[tokio::test]
async fn accounts_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hikyaku.toml"), "data_dir = \"d\"\n").unwrap();
    let (ok, out) = account_cli(
        dir.path(),
        &[
            "add",
            "--provider",
            "microsoft",
            "--name",
            "scans",
            "--cloud",
            "gcc_high",
            "--send-as",
            "@scans.example",
            "--rate-per-minute",
            "10",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = account_cli(
        dir.path(),
        &[
            "add",
            "--provider",
            "google",
            "--name",
            "g",
            "--cloud",
            "dod",
        ],
    );
    assert!(!ok && out.contains("not offered"), "{out}");
    let (ok, out) = account_cli(dir.path(), &["list"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("microsoft") && out.contains("google") && out.contains("scans"),
        "{out}"
    );
    let (ok, out) = account_cli(dir.path(), &["show", "scans"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("smtp.office365.us") && out.contains("@scans.example"),
        "{out}"
    );
    assert!(
        out.contains("https://outlook.office365.us/SMTP.Send"),
        "{out}"
    );
    // A job waits for scans: removing it needs a decision.
    let store = hikyaku::store::Store::open(&dir.path().join("d"))
        .await
        .unwrap();
    let scans = store.account_by_name("scans").await.unwrap().id;
    let job = hikyaku::intake::store_sink::new_job(
        "t",
        "local",
        Some(scans),
        "a@scans.example",
        vec!["b@example.com".into()],
        b"Subject: s\r\n\r\nx\r\n".to_vec(),
    );
    hikyaku::queue::JobStore::enqueue(&store, &job, 1)
        .await
        .unwrap();
    store.close().await;
    let (ok, out) = account_cli(dir.path(), &["remove", "scans"]);
    assert!(!ok && out.contains("1 jobs still wait"), "{out}");
    let (ok, out) = account_cli(
        dir.path(),
        &["remove", "scans", "--move-jobs-to", "microsoft"],
    );
    assert!(ok, "{out}");
    let store = hikyaku::store::Store::open(&dir.path().join("d"))
        .await
        .unwrap();
    let ms = store.account_by_name("microsoft").await.unwrap().id;
    let moved = hikyaku::queue::JobStore::job(&store, &job.id)
        .await
        .unwrap();
    assert_eq!(moved.account_id, Some(ms));
    assert!(store.account_by_name("scans").await.is_err());
    store.close().await;
}

#[tokio::test]
async fn the_test_email_is_written_in_the_language_of_the_page() {
    let (fc, server, _admin) = crate::sending::microsoft_ready().await;
    let ja = Browser::with_lang(&server, "ja");
    ja.login("admin", ADMIN_PASSWORD).await;
    let r = ja
        .submit_done(
            "/settings/send/oauth/microsoft",
            "/settings/send/oauth/microsoft/test",
            &[("to", "someone@example.com")],
        )
        .await;
    assert!(
        r.body.contains("テストメールをキューに入れました"),
        "{}",
        r.body
    );
    let inbox = fc.wait_for_inbox(1, Duration::from_secs(15)).await;
    let m = mail_parser::MessageParser::default()
        .parse(&inbox[0].data)
        .expect("a message");
    assert_eq!(
        m.subject(),
        Some("hikyaku テストメール(OAuth 2.0 (Microsoft))")
    );
    let body = m.body_text(0).expect("a text body");
    assert!(
        body.contains(&format!(
            "このテストメールは、hikyaku が OAuth 2.0 (Microsoft) を使い {MAILBOX} として送信しました。"
        )),
        "{body}"
    );
    assert!(body.contains("送信は正常に動作しています"), "{body}");
    // The API writes it in the language Accept-Language asks for, else English.
    let csrf = ja.session_csrf().await;
    for (lang, subject) in [
        (Some("ja"), "hikyaku テストメール(OAuth 2.0 (Microsoft))"),
        (None, "hikyaku test e-mail (OAuth 2.0 (Microsoft))"),
    ] {
        let before = fc.inbox().len();
        let mut req = ja
            .client
            .post(format!("{}/api/v1/oauth/microsoft/test-email", ja.base))
            .header("x-csrf-token", &csrf)
            .json(&json!({ "to": "someone@example.com" }));
        if let Some(lang) = lang {
            req = req.header("accept-language", lang);
        }
        let r = req.send().await.expect("API call");
        assert_eq!(r.status().as_u16(), 202, "{:?}", r.text().await);
        let inbox = fc.wait_for_inbox(before + 1, Duration::from_secs(15)).await;
        let m = mail_parser::MessageParser::default()
            .parse(&inbox[before].data)
            .expect("a message");
        assert_eq!(m.subject(), Some(subject));
    }
}

/// With `delivery.rewrite_from = false`, a message whose From the routed
/// account may not send as is refused at intake, naming why, and nothing
/// is queued; a From on the account's list goes out unchanged.
#[tokio::test]
async fn a_from_outside_the_send_as_list_is_refused_when_from_is_not_rewritten() {
    let fc = fakecloud(CertMode::Trusted).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = testkit::test_config(dir.path());
    config.delivery.rewrite_from = false;
    config.google.discovery_url = format!("{}/.well-known/openid-configuration", fc.base_url());
    let server = TestServer::start_with(
        dir,
        config,
        std::sync::Arc::new(hikyaku::clock::OffsetClock::default()),
    )
    .await;
    let admin = authorize_microsoft(&server, &fc).await;
    point_smtp(&admin, "microsoft", fc.exchange_smtp_addr(), "starttls").await;
    add_authorized(
        &admin,
        &fc,
        json!({"name": "erp", "send_as": ["invoices@erp.example"]}),
        ERP,
    )
    .await;
    fc.allow_send_as(ERP, "invoices@erp.example");
    let (s, b) = api(
        &admin,
        Method::POST,
        "/api/v1/submitters",
        Some(json!({"name": "bound", "password": ADMIN_PASSWORD, "provider": "erp"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (_, before) = api(&admin, Method::GET, "/api/v1/jobs?limit=1000", None).await;
    let r = submit(
        &server,
        Some("bound"),
        "device@lan.example",
        "device@lan.example",
        "not on the list",
    )
    .await;
    assert!(r.starts_with("550 5.7.1"), "{r}");
    assert!(
        r.contains("the account erp may not send as device@lan.example"),
        "{r}"
    );
    let (_, after) = api(&admin, Method::GET, "/api/v1/jobs?limit=1000", None).await;
    assert_eq!(
        before.as_array().unwrap().len(),
        after.as_array().unwrap().len(),
        "nothing queued"
    );
    let r = submit(
        &server,
        Some("bound"),
        "device@lan.example",
        "invoices@erp.example",
        "on the list",
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let inbox = fc.wait_for_inbox(1, Duration::from_secs(20)).await;
    assert_eq!(subject_of(&inbox[0]), "on the list");
    assert_eq!(inbox[0].auth_user, ERP);
    let from = testkit::header(&inbox[0].data, "From").unwrap_or_default();
    assert!(from.contains("invoices@erp.example"), "{from}");
}
