//! App-only accounts end to end against fakecloud: a Microsoft app with a
//! client secret, one with a certificate (PKCS#12), and a Google service
//! account with domain-wide delegation deliver; the provider's refusals and
//! Exchange's SMTP refusals appear on the page in English and Japanese with
//! what to do; expiring credentials are warned about; tokens come back after
//! a restart with nobody signing in; secrets never come back out; a
//! NetworkAdmin may not touch a Google service account.

use std::sync::Arc;
use std::time::Duration;

use fakecloud::{AppCertificate, FakeCloud};
use hikyaku::cli_app::AppAccountArgs;
use hikyaku::clock::SystemClock;
use hikyaku::queue::JobStore as _;
use hikyaku::store::Store;
use hikyaku::store::accounts::{Account, EmailSettings};
use testkit::{Browser, TestServer, eventually, start_fakecloud};

const TENANT: &str = "contoso.example";
const SECRET_APP: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const CERT_APP: &str = "11111111-aaaa-4bbb-8ccc-000000000002";
const SECRET: &str = "Qx8Q~app.secret.value-never-shown";
const SA_EMAIL: &str = "relay@hikyaku-test.iam.gserviceaccount.com";
const MS_MAILBOX: &str = "scanner@contoso.example";
const CERT_MAILBOX: &str = "invoices@contoso.example";
const G_MAILBOX: &str = "alerts@workspace.example";

/// The text of the element with `id` in an HTML page.
fn by_id(body: &str, id: &str) -> Option<String> {
    let at = body.find(&format!("id=\"{id}\""))?;
    let start = body[at..].find('>')? + at + 1;
    let end = body[start..].find("</")? + start;
    Some(body[start..end].trim().to_string())
}

/// A running server with its Administrator, fakecloud's CA trusted.
pub(crate) async fn server(fc: &FakeCloud) -> (TestServer, Browser) {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let ca = "/settings/management/ca-certificates";
    let r = admin.submit(ca, ca, &[("pem", &fc.ca_pem())]).await;
    assert_eq!(r.status, 303, "trust the CA: {}", r.body);
    (server, admin)
}

/// What the command line does: a store and token service of its own on the
/// server's data directory.
pub(crate) async fn add_app(server: &TestServer, args: AppAccountArgs) -> Result<Account, String> {
    let (store, key) = hikyaku::app::open_data(&server.config).await.unwrap();
    let tokens =
        hikyaku::app::token_service(&server.config, &store, key.clone(), Arc::new(SystemClock))
            .await
            .unwrap();
    let r = hikyaku::cli_app::add_app_account_cli(&store, &key, &tokens, &SystemClock, &args)
        .await
        .map_err(|e| e.to_string());
    tokens.shutdown();
    // The server rereads accounts written by another process within a
    // second (its cache's lifetime).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    r
}

pub(crate) fn args(mailbox: &str) -> AppAccountArgs {
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
        transport: None,
    }
}

fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn ms_args(fc: &FakeCloud, client_id: &str, mailbox: &str) -> AppAccountArgs {
    AppAccountArgs {
        microsoft_app: true,
        tenant: Some(TENANT.into()),
        client_id: Some(client_id.into()),
        endpoint: Some(fc.entra_endpoint(TENANT)),
        ..args(mailbox)
    }
}

/// Points the account's upstream SMTP at fakecloud (the accounts page does
/// this for real; here the store, as another process would).
async fn upstream(server: &TestServer, id: i64, addr: std::net::SocketAddr) {
    let store = Store::open(server.dir.path()).await.unwrap();
    store
        .save_email_settings(
            id,
            &EmailSettings {
                smtp_host: "localhost".into(),
                smtp_port: addr.port(),
                smtp_security: "starttls".into(),
                sender: None,
                is_default: false,
            },
            0,
        )
        .await
        .unwrap();
}

/// Queues a message for the account (as `hikyaku send` does from another
/// process; delivery picks it up within seconds).
async fn queue(server: &TestServer, id: i64, from: &str, subject: &str) {
    let store = Store::open(server.dir.path()).await.unwrap();
    let message = format!(
        "From: {from}\r\nTo: desk@example.net\r\nSubject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\nbody\r\n"
    );
    let job = hikyaku::intake::store_sink::new_job(
        "test",
        "local",
        Some(id),
        from,
        vec!["desk@example.net".into()],
        message.into_bytes(),
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    store.enqueue(&job, now).await.unwrap();
}

async fn delivered(fc: &FakeCloud, subject: &str) {
    eventually(Duration::from_secs(30), subject, || async {
        fc.inbox()
            .iter()
            .any(|m| String::from_utf8_lossy(&m.data).contains(&format!("Subject: {subject}")))
            .then_some(())
    })
    .await;
}

fn register_ms(fc: &FakeCloud) {
    fc.register_app(TENANT, SECRET_APP);
    fc.add_app_secret(SECRET_APP, SECRET, false);
    fc.grant_app_mailbox(SECRET_APP, MS_MAILBOX);
    fc.register_app(TENANT, CERT_APP);
    fc.grant_app_mailbox(CERT_APP, CERT_MAILBOX);
}

#[tokio::test]
async fn each_credential_kind_delivers_and_comes_back_after_a_restart() {
    let fc = start_fakecloud().await;
    register_ms(&fc);
    let cert = fc.new_app_certificate(CERT_APP, 365, true).unwrap();
    let key_json = fc.new_service_account(SA_EMAIL);
    fc.delegate(SA_EMAIL, &["https://mail.google.com/"]);
    fc.add_workspace_user(G_MAILBOX);
    let (server, _admin) = server(&fc).await;
    let files = tempfile::tempdir().unwrap();

    let secret = add_app(
        &server,
        AppAccountArgs {
            client_secret_file: Some(file(&files, "secret", format!("{SECRET}\n").as_bytes())),
            secret_expires: Some("2099-01-01".into()),
            ..ms_args(&fc, SECRET_APP, MS_MAILBOX)
        },
    )
    .await
    .unwrap();
    assert_eq!(secret.token_status, "active", "{:?}", secret.token_reason);
    let certificate = add_app(
        &server,
        AppAccountArgs {
            certificate: Some(file(&files, "app.pfx", &cert.pfx)),
            certificate_password_file: Some(file(
                &files,
                "pfx-password",
                AppCertificate::PFX_PASSWORD.as_bytes(),
            )),
            ..ms_args(&fc, CERT_APP, CERT_MAILBOX)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        certificate.token_status, "active",
        "{:?}",
        certificate.token_reason
    );
    assert!(certificate.credential_expires_at.is_some());
    let google = add_app(
        &server,
        AppAccountArgs {
            google_service_account: Some(file(&files, "key.json", key_json.as_bytes())),
            ..args(G_MAILBOX)
        },
    )
    .await
    .unwrap();
    assert_eq!(google.token_status, "active", "{:?}", google.token_reason);

    upstream(&server, secret.id, fc.exchange_smtp_addr()).await;
    upstream(&server, certificate.id, fc.exchange_smtp_addr()).await;
    upstream(&server, google.id, fc.gmail_smtp_addr()).await;
    queue(&server, secret.id, MS_MAILBOX, "via-secret").await;
    queue(&server, certificate.id, CERT_MAILBOX, "via-certificate").await;
    queue(&server, google.id, G_MAILBOX, "via-service-account").await;
    for s in ["via-secret", "via-certificate", "via-service-account"] {
        delivered(&fc, s).await;
    }

    // A restart, every token gone at the provider: new ones are fetched
    // with the stored credentials, nobody signs in.
    let server = server.restart().await;
    fc.expire_access_tokens();
    let before = fc.app_token_requests();
    queue(&server, secret.id, MS_MAILBOX, "after-restart-secret").await;
    queue(
        &server,
        certificate.id,
        CERT_MAILBOX,
        "after-restart-certificate",
    )
    .await;
    queue(&server, google.id, G_MAILBOX, "after-restart-google").await;
    for s in [
        "after-restart-secret",
        "after-restart-certificate",
        "after-restart-google",
    ] {
        delivered(&fc, s).await;
    }
    assert!(
        fc.app_token_requests() >= before + 3,
        "new tokens were requested"
    );
}

/// The Token Status cell of the account's page, in `lang`.
async fn status_in(b: &Browser, id: i64) -> String {
    let page = b.get(&format!("/settings/send/accounts/{id}/app")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    by_id(&page.body, "token-status").unwrap_or_default()
        + " "
        + &by_id(&page.body, "expiry-warning").unwrap_or_default()
}

async fn japanese(server: &TestServer) -> Browser {
    let b = Browser::with_lang(server, "ja");
    b.login("admin", testkit::ADMIN_PASSWORD).await;
    b
}

#[tokio::test]
async fn each_refusal_is_shown_with_its_advice_in_english_and_japanese() {
    let fc = start_fakecloud().await;
    register_ms(&fc);
    fc.add_app_secret(SECRET_APP, "expired-secret-value", true);
    let (server, admin) = server(&fc).await;
    let ja = japanese(&server).await;
    let files = tempfile::tempdir().unwrap();
    let with_secret = |secret: &str, client: &str| AppAccountArgs {
        client_secret_file: Some(file(&files, "s", secret.as_bytes())),
        name: Some("ms".into()),
        ..ms_args(&fc, client, MS_MAILBOX)
    };

    // (secret, client id, English words, Japanese words)
    let cases = [
        (
            "wrong-secret-value",
            SECRET_APP,
            "AADSTS7000215",
            "シークレット ID ではなく",
        ),
        (
            "expired-secret-value",
            SECRET_APP,
            "AADSTS7000222",
            "有効期限が切れています",
        ),
        (
            SECRET,
            "22222222-aaaa-4bbb-8ccc-000000000009",
            "AADSTS700016",
            "アプリケーションが見つかりません",
        ),
    ];
    for (secret, client, en, ja_words) in cases {
        let a = add_app(&server, with_secret(secret, client)).await.unwrap();
        let id = a.id;
        assert_eq!(a.token_status, "error");
        let en_text = status_in(&admin, id).await;
        assert!(
            en_text.starts_with("Error") && en_text.contains(en),
            "{en_text}"
        );
        let ja_text = status_in(&ja, id).await;
        assert!(ja_text.contains(ja_words), "{ja_text}");
    }
    // An unknown tenant (or the wrong cloud).
    let a = add_app(
        &server,
        AppAccountArgs {
            endpoint: Some(fc.entra_endpoint("fabrikam.example")),
            tenant: Some("fabrikam.example".into()),
            ..with_secret(SECRET, SECRET_APP)
        },
    )
    .await
    .unwrap();
    assert!(status_in(&admin, a.id).await.contains("AADSTS90002"));
    assert!(
        status_in(&ja, a.id)
            .await
            .contains("テナントが見つかりません")
    );

    // A certificate that was never uploaded to the app.
    let cert = fc.new_app_certificate(CERT_APP, 365, false).unwrap();
    let pem = format!("{}{}", cert.cert_pem, cert.key_pem);
    let c = add_app(
        &server,
        AppAccountArgs {
            certificate: Some(file(&files, "c.pem", pem.as_bytes())),
            name: Some("cert".into()),
            ..ms_args(&fc, CERT_APP, CERT_MAILBOX)
        },
    )
    .await
    .unwrap();
    assert!(status_in(&admin, c.id).await.contains("AADSTS700027"));
    assert!(
        status_in(&ja, c.id)
            .await
            .contains("証明書がこのアプリにアップロードされていません")
    );
    // A scope that is not the resource's /.default, forced.
    fc.set_app_token_error(Some((
        400,
        "invalid_scope",
        "AADSTS1002012: The provided value for scope x is not valid.",
    )));
    let r = admin
        .submit(
            &format!("/settings/send/accounts/{}/app", c.id),
            &format!("/settings/send/accounts/{}/app/check", c.id),
            &[],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let t = status_in(&admin, c.id).await;
    assert!(
        t.contains("/.default") && t.contains("AADSTS1002012"),
        "{t}"
    );
    fc.set_app_token_error(None);

    // Working credentials, but Exchange has not granted the mailbox: 535 5.7.3.
    let a = add_app(&server, with_secret(SECRET, SECRET_APP))
        .await
        .unwrap();
    assert_eq!(a.token_status, "active");
    let ungranted = add_app(
        &server,
        AppAccountArgs {
            name: Some("ungranted".into()),
            ..AppAccountArgs {
                client_secret_file: Some(file(&files, "s2", SECRET.as_bytes())),
                ..ms_args(&fc, SECRET_APP, "nobody@contoso.example")
            }
        },
    )
    .await
    .unwrap();
    upstream(&server, ungranted.id, fc.exchange_smtp_addr()).await;
    queue(&server, ungranted.id, "nobody@contoso.example", "ungranted").await;
    eventually(Duration::from_secs(30), "535 shown", || async {
        let t = status_in(&admin, ungranted.id).await;
        t.contains("New-ServicePrincipal").then_some(())
    })
    .await;
    assert!(
        status_in(&ja, ungranted.id)
            .await
            .contains("エンタープライズアプリケーション")
    );
    // SMTP AUTH disabled for the mailbox: 535 5.7.139.
    fc.disable_smtp_auth(MS_MAILBOX);
    upstream(&server, a.id, fc.exchange_smtp_addr()).await;
    queue(&server, a.id, MS_MAILBOX, "auth-disabled").await;
    eventually(Duration::from_secs(30), "5.7.139 shown", || async {
        let t = status_in(&admin, a.id).await;
        (t.contains("5.7.139") && t.contains("Authenticated SMTP")).then_some(())
    })
    .await;
    assert!(status_in(&ja, a.id).await.contains("認証済み SMTP"));
}

#[tokio::test]
async fn google_refusals_are_explained() {
    let fc = start_fakecloud().await;
    let key_json = fc.new_service_account(SA_EMAIL);
    fc.add_workspace_user(G_MAILBOX);
    let (server, admin) = server(&fc).await;
    let ja = japanese(&server).await;
    let files = tempfile::tempdir().unwrap();
    let key = file(&files, "key.json", key_json.as_bytes());
    let sa = |mailbox: &str| AppAccountArgs {
        google_service_account: Some(key.clone()),
        name: Some("google-sa".into()),
        ..args(mailbox)
    };
    // No delegation yet.
    let a = add_app(&server, sa(G_MAILBOX)).await.unwrap();
    let t = status_in(&admin, a.id).await;
    assert!(
        t.contains("unauthorized_client") && t.contains("numeric Client ID"),
        "{t}"
    );
    assert!(
        status_in(&ja, a.id)
            .await
            .contains("ドメイン全体の委任がありません")
    );
    // Delegated, but for another scope.
    fc.delegate(SA_EMAIL, &["https://www.googleapis.com/auth/gmail.send"]);
    let a = add_app(&server, sa(G_MAILBOX)).await.unwrap();
    assert!(status_in(&admin, a.id).await.contains("access_denied"));
    // A mailbox outside the domain.
    fc.delegate(SA_EMAIL, &["https://mail.google.com/"]);
    let a = add_app(&server, sa("someone@elsewhere.example"))
        .await
        .unwrap();
    let t = status_in(&admin, a.id).await;
    assert!(t.contains("not a user of the Workspace domain"), "{t}");
    // The key was deleted in Google Cloud.
    fc.delete_service_account_keys(SA_EMAIL);
    let a = add_app(&server, sa(G_MAILBOX)).await.unwrap();
    let t = status_in(&admin, a.id).await;
    assert!(t.contains("create a new JSON key"), "{t}");
    assert!(status_in(&ja, a.id).await.contains("新しい JSON 鍵"));
}

#[tokio::test]
async fn expiring_credentials_are_warned_about() {
    let fc = start_fakecloud().await;
    register_ms(&fc);
    let old = fc.new_app_certificate(CERT_APP, -2, true).unwrap();
    let (server, admin) = server(&fc).await;
    let ja = japanese(&server).await;
    let files = tempfile::tempdir().unwrap();
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
        .date()
        .to_string();
    let a = add_app(
        &server,
        AppAccountArgs {
            client_secret_file: Some(file(&files, "s", SECRET.as_bytes())),
            secret_expires: Some(soon.clone()),
            ..ms_args(&fc, SECRET_APP, MS_MAILBOX)
        },
    )
    .await
    .unwrap();
    let t = status_in(&admin, a.id).await;
    assert!(
        t.starts_with("Active") && t.contains(&format!("client secret expires on {soon}")),
        "{t}"
    );
    assert!(
        status_in(&ja, a.id)
            .await
            .contains("クライアントシークレットの有効期限は")
    );
    let c = add_app(
        &server,
        AppAccountArgs {
            certificate: Some(file(
                &files,
                "old.pem",
                format!("{}{}", old.cert_pem, old.key_pem).as_bytes(),
            )),
            ..ms_args(&fc, CERT_APP, CERT_MAILBOX)
        },
    )
    .await
    .unwrap();
    let t = status_in(&admin, c.id).await;
    assert!(t.contains("certificate expired on"), "{t}");
    assert!(status_in(&ja, c.id).await.contains("証明書の有効期限が"));
    // The Portal shows both warnings, per account, in the page's language.
    let portal = admin.get("/").await;
    assert_eq!(portal.status, 200, "{}", portal.body);
    let w = by_id(&portal.body, &format!("portal-expiry-{}", a.id)).unwrap_or_default();
    assert!(
        w.contains(&format!("client secret expires on {soon} (in 10 days)")),
        "{w}"
    );
    let w = by_id(&portal.body, &format!("portal-expiry-{}", c.id)).unwrap_or_default();
    assert!(w.contains("certificate expired on"), "{w}");
    let portal = ja.get("/").await;
    let w = by_id(&portal.body, &format!("portal-expiry-{}", a.id)).unwrap_or_default();
    assert!(
        w.contains("クライアントシークレットの有効期限は") && w.contains("あと 10 日"),
        "{w}"
    );
    let w = by_id(&portal.body, &format!("portal-expiry-{}", c.id)).unwrap_or_default();
    assert!(w.contains("証明書の有効期限が"), "{w}");
    assert!(portal.body.contains("資格情報の有効期限"));
}

#[tokio::test]
async fn secrets_stay_write_only_and_google_is_the_administrators() {
    let fc = start_fakecloud().await;
    register_ms(&fc);
    let key_json = fc.new_service_account(SA_EMAIL);
    fc.delegate(SA_EMAIL, &["https://mail.google.com/"]);
    fc.add_workspace_user(G_MAILBOX);
    let (server, admin) = server(&fc).await;
    let files = tempfile::tempdir().unwrap();
    // Accounts with placeholder credentials; the API then sets the real ones.
    let ms = add_app(
        &server,
        AppAccountArgs {
            client_secret_file: Some(file(&files, "s", b"placeholder-secret")),
            ..ms_args(&fc, SECRET_APP, MS_MAILBOX)
        },
    )
    .await
    .unwrap();
    let google = add_app(
        &server,
        AppAccountArgs {
            google_service_account: Some(file(&files, "k.json", key_json.as_bytes())),
            ..args(G_MAILBOX)
        },
    )
    .await
    .unwrap();
    let store = Store::open(server.dir.path()).await.unwrap();
    let (admin_token, net_token) = ("hky_admin_app_token", "hky_net_app_token");
    for (name, role, token) in [
        ("ci-admin", hikyaku::roles::Role::Administrator, admin_token),
        ("ci-net", hikyaku::roles::Role::NetworkAdmin, net_token),
    ] {
        store
            .create_api_token(name, role, &hikyaku::secrets::hash_token(token), 0)
            .await
            .unwrap();
    }
    let client = reqwest::Client::new();
    let put = |id: i64, token: &'static str, body: serde_json::Value| {
        client
            .put(server.url(&format!("/api/v1/accounts/{id}/app-credentials")))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    // A NetworkAdmin manages the Microsoft app, and sees no secret.
    let r = put(
        ms.id,
        net_token,
        serde_json::json!({"client_secret": SECRET, "secret_expires": "2099-12-31"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["token_status"], "active", "{text}");
    assert_eq!(body["client_secret_set"], true);
    assert!(!text.contains(SECRET), "{text}");
    // A secret's ID instead of its Value is refused with the reason.
    let r = put(
        ms.id,
        net_token,
        serde_json::json!({"client_secret": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().await.unwrap().contains("not its Value"));
    // ... but not the Google service account: API and page.
    let r = put(
        google.id,
        net_token,
        serde_json::json!({"service_account_key": key_json.clone()}),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    testkit::add_user(&admin, "netadmin", "network-admin").await;
    let net = Browser::new(&server);
    net.login("netadmin", testkit::ADMIN_PASSWORD).await;
    assert_eq!(
        net.get(&format!("/settings/send/accounts/{}/app", google.id))
            .await
            .status,
        403
    );
    assert_eq!(
        net.get(&format!("/settings/send/accounts/{}/app", ms.id))
            .await
            .status,
        200
    );
    let csrf = net.session_csrf().await;
    let r = net
        .post_form(
            &format!("/settings/send/accounts/{}/app/check", google.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 403);
    // The Administrator may; the key (JSON object) never comes back.
    let key: serde_json::Value = serde_json::from_str(&key_json).unwrap();
    let private_key = key["private_key"].as_str().unwrap().to_string();
    let r = put(
        google.id,
        admin_token,
        serde_json::json!({"service_account_key": key}),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains(SA_EMAIL) && text.contains("\"active\""),
        "{text}"
    );
    let marker = &private_key[40..80];
    assert!(!text.contains(marker));
    // Nothing secret in the pages, the audit log or the database in clear.
    for id in [ms.id, google.id] {
        let page = admin
            .get(&format!("/settings/send/accounts/{id}/app"))
            .await;
        assert!(!page.body.contains(SECRET) && !page.body.contains(marker));
    }
    let audit = client
        .get(server.url("/api/v1/audit-log"))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("app-only credentials"), "{audit}");
    assert!(
        !audit.contains(SECRET) && !audit.contains(marker) && !audit.contains("placeholder-secret")
    );
    let db = std::fs::read(server.dir.path().join(hikyaku::store::DB_FILE)).unwrap_or_default();
    let db = String::from_utf8_lossy(&db);
    assert!(!db.contains(SECRET) && !db.contains(marker));
}

/// A multipart body as a browser sends the page's form.
pub fn multipart(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----hikyakuTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (name, filename, bytes) in files {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn the_page_uploads_a_certificate_and_refuses_a_form_without_its_token() {
    let fc = start_fakecloud().await;
    register_ms(&fc);
    let cert = fc.new_app_certificate(CERT_APP, 200, true).unwrap();
    let (server, admin) = server(&fc).await;
    let files = tempfile::tempdir().unwrap();
    // An app-only account whose secret is wrong; the page switches it to a certificate.
    let a = add_app(
        &server,
        AppAccountArgs {
            client_secret_file: Some(file(&files, "s", b"not-the-secret")),
            ..ms_args(&fc, CERT_APP, CERT_MAILBOX)
        },
    )
    .await
    .unwrap();
    assert_eq!(a.token_status, "error");
    let path = format!("/settings/send/accounts/{}/app", a.id);
    let post = |content_type: String, body: Vec<u8>| {
        admin
            .client
            .post(server.url(&path))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // No CSRF token: refused, nothing changes.
    let (ct, body) = multipart(
        &[
            ("kind", "microsoft_certificate"),
            ("password", AppCertificate::PFX_PASSWORD),
        ],
        &[("certificate", "app.pfx", &cert.pfx)],
    );
    assert_eq!(post(ct, body).await.unwrap().status().as_u16(), 403);
    // A wrong password: the form says so.
    let csrf = admin.get(&path).await.csrf();
    let (ct, body) = multipart(
        &[
            ("csrf", &csrf),
            ("kind", "microsoft_certificate"),
            ("password", "wrong"),
        ],
        &[("certificate", "app.pfx", &cert.pfx)],
    );
    let r = post(ct, body).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("password is wrong"));
    // The right one: saved, checked, Active, with the certificate's expiry.
    let (ct, body) = multipart(
        &[
            ("csrf", &csrf),
            ("mailbox", CERT_MAILBOX),
            ("kind", "microsoft_certificate"),
            ("password", AppCertificate::PFX_PASSWORD),
        ],
        &[("certificate", "app.pfx", &cert.pfx)],
    );
    let r = post(ct, body).await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let page = admin.get(&path).await;
    assert_eq!(
        by_id(&page.body, "token-status").as_deref(),
        Some("Active"),
        "{}",
        page.body
    );
    assert_eq!(by_id(&page.body, "kind").as_deref(), Some("Certificate"));
    assert!(by_id(&page.body, "expires").is_some_and(|e| e.starts_with("20")));
    assert!(!page.body.contains("PRIVATE KEY"));
}

/// Collects log lines written by the subscriber of this test's thread.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_or_key_reaches_the_log() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let fc = start_fakecloud().await;
    register_ms(&fc);
    let cert = fc.new_app_certificate(CERT_APP, 365, true).unwrap();
    let (server, _admin) = server(&fc).await;
    let files = tempfile::tempdir().unwrap();
    let secret = add_app(
        &server,
        AppAccountArgs {
            client_secret_file: Some(file(&files, "s", SECRET.as_bytes())),
            ..ms_args(&fc, SECRET_APP, MS_MAILBOX)
        },
    )
    .await
    .unwrap();
    let pem = format!("{}{}", cert.cert_pem, cert.key_pem);
    let certificate = add_app(
        &server,
        AppAccountArgs {
            certificate: Some(file(&files, "c.pem", pem.as_bytes())),
            ..ms_args(&fc, CERT_APP, CERT_MAILBOX)
        },
    )
    .await
    .unwrap();
    upstream(&server, secret.id, fc.exchange_smtp_addr()).await;
    upstream(&server, certificate.id, fc.exchange_smtp_addr()).await;
    queue(&server, secret.id, MS_MAILBOX, "logged-secret").await;
    queue(&server, certificate.id, CERT_MAILBOX, "logged-certificate").await;
    delivered(&fc, "logged-secret").await;
    delivered(&fc, "logged-certificate").await;
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("app-only access token issued"),
        "the log was captured"
    );
    let key_marker: String = cert.key_pem.lines().nth(3).unwrap_or("").to_string();
    assert!(!text.contains(SECRET), "the secret is in the log");
    assert!(
        !key_marker.is_empty() && !text.contains(&key_marker),
        "the key is in the log"
    );
    assert!(
        !text.contains("client_assertion="),
        "an assertion is in the log"
    );
}

/// One account of each credential kind — delegated Microsoft, a Microsoft
/// app with a secret, a Google service account — deliver at the same time,
/// each within its own limits: the delegated one over at most one
/// connection, the app held to 2 messages a minute, the service account over
/// at most 2 connections. The app's wait holds up neither of the others.
#[tokio::test]
async fn one_account_of_each_kind_delivers_concurrently_within_its_own_limits() {
    use crate::accounts::api;
    use reqwest::Method;
    use serde_json::json;

    let fc = crate::oauth_flow::fakecloud(fakecloud::CertMode::Trusted).await;
    let server = crate::oauth_flow::server_for(&fc).await;
    let admin = crate::oauth_flow::authorize_microsoft(&server, &fc).await;
    crate::sending::point_smtp(&admin, "microsoft", fc.exchange_smtp_addr(), "starttls").await;
    register_ms(&fc);
    let key_json = fc.new_service_account(SA_EMAIL);
    fc.delegate(SA_EMAIL, &["https://mail.google.com/"]);
    fc.add_workspace_user(G_MAILBOX);
    let files = tempfile::tempdir().unwrap();
    let app = add_app(
        &server,
        AppAccountArgs {
            client_secret_file: Some(file(&files, "secret", SECRET.as_bytes())),
            ..ms_args(&fc, SECRET_APP, MS_MAILBOX)
        },
    )
    .await
    .unwrap();
    let google = add_app(
        &server,
        AppAccountArgs {
            google_service_account: Some(file(&files, "key.json", key_json.as_bytes())),
            ..args(G_MAILBOX)
        },
    )
    .await
    .unwrap();
    upstream(&server, app.id, fc.exchange_smtp_addr()).await;
    upstream(&server, google.id, fc.gmail_smtp_addr()).await;
    let (_, list) = api(&admin, Method::GET, "/api/v1/accounts", None).await;
    let delegated = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["credential_kind"] == "delegated" && a["provider"] == "microsoft")
        .and_then(|a| a["id"].as_i64())
        .expect("the delegated Microsoft account");
    for (id, limits) in [
        (delegated, json!({"max_connections": 1})),
        (app.id, json!({"rate_per_minute": 2})),
        (google.id, json!({"max_connections": 2})),
    ] {
        let (s, b) = api(
            &admin,
            Method::PUT,
            &format!("/api/v1/accounts/{id}"),
            Some(limits),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;

    for i in 0..4 {
        queue(
            &server,
            delegated,
            crate::oauth_flow::MAILBOX,
            &format!("d-{i}"),
        )
        .await;
        queue(&server, app.id, MS_MAILBOX, &format!("a-{i}")).await;
        queue(&server, google.id, G_MAILBOX, &format!("g-{i}")).await;
    }
    for i in 0..4 {
        delivered(&fc, &format!("d-{i}")).await;
        delivered(&fc, &format!("g-{i}")).await;
    }
    // The app's first two went too, meanwhile; the other two wait for the
    // next minute.
    for i in 0..2 {
        delivered(&fc, &format!("a-{i}")).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let inbox = fc.inbox();
    let of = |user: &str| -> Vec<&fakecloud::ReceivedMessage> {
        inbox.iter().filter(|m| m.auth_user == user).collect()
    };
    assert_eq!(of(MS_MAILBOX).len(), 2, "2 a minute for the app");
    let connections = |user: &str| {
        let mut c: Vec<u64> = of(user).iter().map(|m| m.connection).collect();
        c.sort_unstable();
        c.dedup();
        c.len()
    };
    assert_eq!(of(crate::oauth_flow::MAILBOX).len(), 4);
    assert_eq!(
        connections(crate::oauth_flow::MAILBOX),
        1,
        "one connection at most"
    );
    assert_eq!(of(G_MAILBOX).len(), 4);
    assert!(connections(G_MAILBOX) <= 2, "two connections at most");
    let (_, waiting) = api(&admin, Method::GET, "/api/v1/jobs?state=deferred", None).await;
    let waiting = waiting.as_array().unwrap();
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    assert!(
        waiting.iter().all(|j| j["account_id"] == app.id),
        "{waiting:?}"
    );
}
