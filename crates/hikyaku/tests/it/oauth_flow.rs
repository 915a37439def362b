//! The seed's OAuth 2.0 set-up, end to end through the real server's pages
//! and API, against fakecloud: Microsoft steps 1–14 (device code) and Google
//! Step 2 (pasted authorization code with PKCE).

use std::sync::Arc;
use std::time::Duration;

use fakecloud::{CertMode, FakeCloud, Options};
use hikyaku::clock::OffsetClock;

use testkit::{ADMIN_PASSWORD, Browser, Page, TestServer, add_user, eventually, test_config};

pub const MAILBOX: &str = "printer@contoso.example";
pub const GMAIL: &str = "scanner@example.com";

pub async fn fakecloud(cert: CertMode) -> FakeCloud {
    FakeCloud::start(Options {
        device_poll_interval_secs: 1,
        cert,
        ..Options::default()
    })
    .await
    .expect("fakecloud starts")
}

/// hikyaku configured with fakecloud's Google endpoints.
pub async fn server_for(fc: &FakeCloud) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.google.auth_url = fc.google_auth_url();
    config.google.token_url = fc.google_token_url();
    config.google.revoke_url = fc.google_revoke_url();
    config.google.discovery_url = format!("{}/.well-known/openid-configuration", fc.base_url());
    TestServer::start_with(dir, config, Arc::new(OffsetClock::default())).await
}

/// Management → CA Certificates: trust fakecloud's test CA.
pub async fn trust(admin: &Browser, fc: &FakeCloud) {
    let r = admin
        .submit(
            "/settings/management/ca-certificates",
            "/settings/management/ca-certificates",
            &[("pem", &fc.ca_pem())],
        )
        .await;
    // Trusting the same CA twice is refused as "already trusted": fine here.
    assert!(
        r.status == 303 || r.body.contains("already trusted"),
        "{}",
        r.body
    );
}

/// The text of the element with `id` in a page.
pub fn by_id(page: &Page, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\"");
    let at = page.body.find(&marker)?;
    let start = page.body[at..].find('>')? + at + 1;
    let end = page.body[start..].find('<')? + start;
    Some(page.body[start..end].trim().to_string())
}

pub async fn edit_microsoft(admin: &Browser, endpoint: &str, extra: &[(&str, &str)]) -> Page {
    let mut fields = vec![
        ("enabled", "on"),
        ("verify_cert", "on"),
        ("endpoint", endpoint),
        ("client_id", "ms-client-id"),
    ];
    fields.extend_from_slice(extra);
    admin
        .submit(
            "/settings/send/oauth/microsoft/edit",
            "/settings/send/oauth/microsoft/edit",
            &fields,
        )
        .await
}

pub async fn refresh(admin: &Browser, provider: &str) -> Page {
    let page = format!("/settings/send/oauth/{provider}");
    let r = admin.submit(&page, &format!("{page}/refresh"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    admin.get(&page).await
}

/// Steps 1–13 for Microsoft; returns the admin's browser with the token Active.
pub async fn authorize_microsoft(server: &TestServer, fc: &FakeCloud) -> Browser {
    let admin = server.setup_admin().await;
    trust(&admin, fc).await;
    assert_eq!(
        edit_microsoft(&admin, &fc.entra_endpoint("organizations"), &[])
            .await
            .status,
        303
    );
    let page = refresh(&admin, "microsoft").await;
    assert_eq!(
        by_id(&page, "connection-status").as_deref(),
        Some("Successful"),
        "{}",
        page.body
    );
    let code = by_id(&page, "user-code").expect("a user code is shown");
    fc.approve_user_code(&code, MAILBOX).expect("approve");
    eventually(Duration::from_secs(10), "token Active", || async {
        let p = admin.get("/settings/send/oauth/microsoft").await;
        (by_id(&p, "token-status").as_deref() == Some("Active")).then_some(())
    })
    .await;
    admin
}

#[tokio::test]
async fn microsoft_seed_steps_1_to_14() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    // Steps 4–8: Edit Basic Settings, OK.
    let r = edit_microsoft(&admin, &fc.entra_endpoint("organizations"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    // Steps 9–11: Refresh → Successful, the link, Message, User Code and its expiration.
    let page = refresh(&admin, "microsoft").await;
    assert_eq!(
        by_id(&page, "connection-status").as_deref(),
        Some("Successful"),
        "{}",
        page.body
    );
    let code = by_id(&page, "user-code").expect("user code");
    let message = by_id(&page, "device-message").expect("message");
    assert!(message.contains(&code), "{message}");
    assert!(
        by_id(&page, "verification-uri")
            .expect("link")
            .ends_with("/devicelogin")
    );
    assert!(
        by_id(&page, "user-code-expiration")
            .expect("expiration")
            .contains("UTC")
    );
    assert_eq!(by_id(&page, "token-status").as_deref(), Some("Authorizing"));
    // The user signs in; within two poll intervals the token is Active (steps 12–13).
    fc.approve_user_code(&code, MAILBOX).expect("approve");
    let approved = tokio::time::Instant::now();
    let page = eventually(Duration::from_secs(10), "token Active", || async {
        let p = admin.get("/settings/send/oauth/microsoft").await;
        (by_id(&p, "token-status").as_deref() == Some("Active")).then_some(p)
    })
    .await;
    assert!(
        approved.elapsed() <= Duration::from_millis(2500),
        "Active after {:?}",
        approved.elapsed()
    );
    assert_eq!(by_id(&page, "mailbox").as_deref(), Some(MAILBOX));
    // The Portal and the API agree.
    assert!(admin.get("/").await.body.contains("Active"));
    let api = admin.get("/api/v1/oauth/microsoft").await.json();
    assert_eq!(api["token_status"], "active");
    assert_eq!(api["connection_status"], "successful");
    assert_eq!(api["mailbox"], MAILBOX);
    // No secret in pages, API answers or the database file.
    for body in [
        page.body.clone(),
        api.to_string(),
        admin.get("/api/v1/status").await.body,
    ] {
        assert!(
            !body.contains("EwB") && !body.contains("M.C5"),
            "a token leaked: {body}"
        );
    }
    let db = std::fs::read(server.dir.path().join("hikyaku.sqlite-wal")).unwrap_or_default();
    let db2 = std::fs::read(server.dir.path().join("hikyaku.sqlite")).unwrap_or_default();
    for bytes in [db, db2] {
        assert!(
            !bytes.windows(4).any(|w| w == b"M.C5"),
            "refresh token stored in clear"
        );
        assert!(
            !bytes.windows(3).any(|w| w == b"EwB"),
            "access token stored in clear"
        );
    }
    // Step 14: log out.
    assert_eq!(admin.submit("/", "/logout", &[]).await.status, 303);
    assert_eq!(
        admin.get("/settings/send/oauth/microsoft").await.status,
        303
    );
}

#[tokio::test]
async fn microsoft_endpoint_values_are_validated() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    for (value, expect) in [
        (
            "http://login.microsoftonline.com/common/oauth2/v2.0",
            "https",
        ),
        ("https://login.microsoftonline.com/oauth2/v2.0", "tenant"),
        ("not a url", "URL"),
        (
            "https://login.microsoftonline.com/common/oauth2/token",
            "/oauth2/v2.0",
        ),
    ] {
        let r = edit_microsoft(&admin, value, &[]).await;
        assert_eq!(r.status, 400, "{value}");
        assert!(
            r.body.contains(expect),
            "{value}: expected {expect} in {}",
            r.body
        );
    }
    // Nothing was saved.
    let api = admin.get("/api/v1/oauth/microsoft").await.json();
    assert_eq!(api["enabled"], false);
    // Client ID is required.
    let r = admin
        .submit(
            "/settings/send/oauth/microsoft/edit",
            "/settings/send/oauth/microsoft/edit",
            &[
                ("enabled", "on"),
                (
                    "endpoint",
                    "https://login.microsoftonline.com/common/oauth2/v2.0",
                ),
            ],
        )
        .await;
    assert!(r.body.contains("Client ID"), "{}", r.body);
}

#[tokio::test]
async fn microsoft_connection_failures_say_why() {
    // Unknown tenant.
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    edit_microsoft(&admin, &fc.entra_endpoint("nosuchtenant.example"), &[]).await;
    let page = refresh(&admin, "microsoft").await;
    let status = by_id(&page, "connection-status").expect("status");
    assert!(
        status.starts_with("Failed") && status.contains("not found"),
        "{status}"
    );
    assert!(by_id(&page, "user-code").is_none());
    // Untrusted certificate: Failed with the TLS reason, until the CA is trusted.
    let fc2 = fakecloud(CertMode::Trusted).await;
    edit_microsoft(&admin, &fc2.entra_endpoint("organizations"), &[]).await;
    let page = refresh(&admin, "microsoft").await;
    let status = by_id(&page, "connection-status").expect("status");
    assert!(
        status.starts_with("Failed") && status.to_lowercase().contains("certificate"),
        "{status}"
    );
}

#[tokio::test]
async fn add_cn_fails_only_when_switched_on_and_verify_off_warns() {
    let fc = fakecloud(CertMode::CnMismatch).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    let endpoint = fc.entra_endpoint("organizations");
    edit_microsoft(&admin, &endpoint, &[]).await;
    let page = refresh(&admin, "microsoft").await;
    assert_eq!(
        by_id(&page, "connection-status").as_deref(),
        Some("Successful"),
        "{}",
        page.body
    );
    edit_microsoft(&admin, &endpoint, &[("verify_cn", "on")]).await;
    let page = refresh(&admin, "microsoft").await;
    let status = by_id(&page, "connection-status").expect("status");
    assert!(
        status.starts_with("Failed") && status.contains("CN"),
        "{status}"
    );
    // Verification off: Successful, with a warning on the page.
    let r = admin
        .submit(
            "/settings/send/oauth/microsoft/edit",
            "/settings/send/oauth/microsoft/edit",
            &[
                ("enabled", "on"),
                ("endpoint", &endpoint),
                ("client_id", "ms-client-id"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let page = refresh(&admin, "microsoft").await;
    assert_eq!(
        by_id(&page, "connection-status").as_deref(),
        Some("Successful")
    );
    assert!(page.body.contains("verification is off"), "{}", page.body);
    // The portal flags it too.
    let portal = admin.get("/").await;
    assert!(
        portal
            .body
            .contains("Microsoft: Server certificate verification is off"),
        "{}",
        portal.body
    );
}

#[tokio::test]
async fn declined_and_expired_codes_then_a_new_code_works() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    edit_microsoft(&admin, &fc.entra_endpoint("organizations"), &[]).await;
    let page = refresh(&admin, "microsoft").await;
    let code = by_id(&page, "user-code").expect("code");
    fc.decline_user_code(&code).expect("decline");
    let page = eventually(Duration::from_secs(10), "declined", || async {
        let p = admin.get("/settings/send/oauth/microsoft").await;
        by_id(&p, "token-status")
            .filter(|s| s.starts_with("Error"))
            .map(|_| p)
    })
    .await;
    assert!(
        by_id(&page, "token-status")
            .expect("status")
            .contains("declined"),
        "{}",
        page.body
    );
    // Refresh (the seed's step 12) re-reads the status: the reason stays in
    // view and no code replaces it until one is asked for.
    let page = refresh(&admin, "microsoft").await;
    assert!(
        by_id(&page, "token-status")
            .is_some_and(|s| s.starts_with("Error") && s.contains("declined")),
        "{}",
        page.body
    );
    assert!(by_id(&page, "user-code").is_none(), "{}", page.body);
    // A new code, which then expires.
    let r = admin
        .submit(
            "/settings/send/oauth/microsoft",
            "/settings/send/oauth/microsoft/new-code",
            &[],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = admin.get("/settings/send/oauth/microsoft").await;
    let second = by_id(&page, "user-code").expect("new code");
    assert_ne!(second, code);
    fc.expire_device_codes();
    let page = eventually(Duration::from_secs(10), "expired", || async {
        let p = admin.get("/settings/send/oauth/microsoft").await;
        by_id(&p, "token-status")
            .filter(|s| s.starts_with("Error"))
            .map(|_| p)
    })
    .await;
    assert!(
        by_id(&page, "token-status")
            .expect("status")
            .contains("expired"),
        "{}",
        page.body
    );
    // And a third code is approved.
    admin
        .submit(
            "/settings/send/oauth/microsoft",
            "/settings/send/oauth/microsoft/new-code",
            &[],
        )
        .await;
    let third = by_id(
        &admin.get("/settings/send/oauth/microsoft").await,
        "user-code",
    )
    .expect("third code");
    fc.approve_user_code(&third, MAILBOX).expect("approve");
    eventually(Duration::from_secs(10), "Active", || async {
        (by_id(
            &admin.get("/settings/send/oauth/microsoft").await,
            "token-status",
        )
        .as_deref()
            == Some("Active"))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn switching_microsoft_off_discards_the_tokens() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = authorize_microsoft(&server, &fc).await;
    let r = admin
        .submit(
            "/settings/send/oauth/microsoft/edit",
            "/settings/send/oauth/microsoft/edit",
            &[
                ("verify_cert", "on"),
                ("endpoint", &fc.entra_endpoint("organizations")),
                ("client_id", "ms-client-id"),
                ("confirm_off", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let api = admin.get("/api/v1/oauth/microsoft").await.json();
    assert_eq!(api["token_status"], "not_registered");
    assert_eq!(api["mailbox"], serde_json::Value::Null);
    let audit = admin.get("/settings/management/audit-log").await.body;
    assert!(audit.contains("tokens discarded"), "{audit}");
}

#[tokio::test]
async fn restart_keeps_the_token_and_a_pending_poll() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    edit_microsoft(&admin, &fc.entra_endpoint("organizations"), &[]).await;
    let code = by_id(&refresh(&admin, "microsoft").await, "user-code").expect("code");
    // hikyaku restarts while the user has not signed in yet.
    let server = server.restart().await;
    fc.approve_user_code(&code, MAILBOX).expect("approve");
    let admin = Browser::new(&server);
    admin.login("admin", ADMIN_PASSWORD).await;
    eventually(Duration::from_secs(10), "Active after restart", || async {
        (by_id(
            &admin.get("/settings/send/oauth/microsoft").await,
            "token-status",
        )
        .as_deref()
            == Some("Active"))
        .then_some(())
    })
    .await;
}

pub async fn edit_google(admin: &Browser, secret: &str) -> Page {
    admin
        .submit(
            "/settings/send/oauth/google/edit",
            "/settings/send/oauth/google/edit",
            &[
                ("enabled", "on"),
                ("verify_cert", "on"),
                ("client_id", "google-client-id.apps.googleusercontent.com"),
                ("client_secret", secret),
            ],
        )
        .await
}

/// The authorization URL shown on Register Authorization Information.
pub async fn register_url(admin: &Browser) -> String {
    let page = admin.get("/settings/send/oauth/google/register").await;
    assert_eq!(page.status, 200, "{}", page.body);
    by_id(&page, "google-auth-url")
        .expect("URL for Google Authorization Server")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

pub async fn paste(admin: &Browser, code: &str) -> Page {
    admin
        .submit(
            "/settings/send/oauth/google/register",
            "/settings/send/oauth/google/register",
            &[("code", code)],
        )
        .await
}

/// Step 2 for Google; returns the admin's browser with the token Active.
pub async fn authorize_google(server: &TestServer, fc: &FakeCloud, admin: &Browser) {
    let _ = server;
    trust(admin, fc).await;
    assert_eq!(edit_google(admin, "google-client-secret").await.status, 303);
    let page = refresh(admin, "google").await;
    assert_eq!(
        by_id(&page, "connection-status").as_deref(),
        Some("Successful"),
        "{}",
        page.body
    );
    let url = register_url(admin).await;
    let redirect = fc.google_consent(&url, GMAIL).expect("consent");
    let r = paste(admin, &redirect).await;
    assert_eq!(r.status, 303, "{}", r.body);
}

#[tokio::test]
async fn google_step_2_with_the_pasted_url_and_with_the_bare_code() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    authorize_google(&server, &fc, &admin).await;
    let page = admin.get("/settings/send/oauth/google").await;
    assert_eq!(
        by_id(&page, "token-status").as_deref(),
        Some("Active"),
        "{}",
        page.body
    );
    assert_eq!(by_id(&page, "mailbox").as_deref(), Some(GMAIL));
    // The secret is write-only: never in the page, the edit form or the API.
    for body in [
        page.body,
        admin.get("/settings/send/oauth/google/edit").await.body,
        admin.get("/api/v1/oauth/google").await.body,
    ] {
        assert!(
            !body.contains("google-client-secret") && !body.contains("ya29."),
            "{body}"
        );
    }
    // Register again with only the code part. Opening the page does not take
    // the Active token out of service: mail goes on meanwhile.
    let url = register_url(&admin).await;
    assert_eq!(
        admin.get("/api/v1/oauth/google").await.json()["token_status"],
        "active"
    );
    let redirect = fc.google_consent(&url, GMAIL).expect("consent");
    let code = url::Url::parse(&redirect)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let r = paste(&admin, &code).await;
    assert_eq!(r.status, 303, "{}", r.body);
}

#[tokio::test]
async fn google_bad_codes_are_refused_with_a_reason() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    edit_google(&admin, "google-client-secret").await;
    // Garbage.
    register_url(&admin).await;
    let r = paste(&admin, "this is not a code").await;
    assert_eq!(r.status, 400);
    // State mismatch: a redirect URL from an older registration.
    let old = register_url(&admin).await;
    let old_redirect = fc.google_consent(&old, GMAIL).expect("consent");
    // Reloading the page offers the same URL; the API asks for a new one.
    assert_eq!(register_url(&admin).await, old);
    let csrf = admin.session_csrf().await;
    let fresh = admin
        .client
        .post(admin.base.clone() + "/api/v1/oauth/google/authorization-url")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("post");
    assert_eq!(fresh.status().as_u16(), 200);
    let r = paste(&admin, &old_redirect).await;
    assert_eq!(r.status, 400);
    assert!(r.body.to_lowercase().contains("state"), "{}", r.body);
    // Expired code.
    let url = register_url(&admin).await;
    let redirect = fc.google_consent(&url, GMAIL).expect("consent");
    fc.expire_google_codes();
    let r = paste(&admin, &redirect).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("new URL") || r.body.to_lowercase().contains("expired"),
        "{}",
        r.body
    );
    // Denied.
    let url = register_url(&admin).await;
    let denied = fc.google_deny(&url).expect("deny");
    let r = paste(&admin, &denied).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("denied") || r.body.contains("access_denied"),
        "{}",
        r.body
    );
    // Wrong secret: invalid_client.
    edit_google(&admin, "wrong-secret").await;
    let url = register_url(&admin).await;
    let redirect = fc.google_consent(&url, GMAIL).expect("consent");
    let r = paste(&admin, &redirect).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("Client ID") || r.body.contains("secret"),
        "{}",
        r.body
    );
    assert_ne!(
        by_id(
            &admin.get("/settings/send/oauth/google").await,
            "token-status"
        )
        .as_deref(),
        Some("Active")
    );
}

#[tokio::test]
async fn google_is_administrator_only_and_switching_off_revokes() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    add_user(&admin, "net", "network_admin").await;
    let net = Browser::new(&server);
    net.login("net", ADMIN_PASSWORD).await;
    assert_eq!(net.get("/settings/send/oauth/google").await.status, 403);
    assert_eq!(
        net.get("/settings/send/oauth/google/register").await.status,
        403
    );
    let csrf = net.session_csrf().await;
    let r = net
        .client
        .post(server.url("/api/v1/oauth/google/authorization-url"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 403);
    // Nor can a NetworkAdmin change what sends through the Google account:
    // its upstream server (where its token would go), or a submitter or an
    // allowlist entry that sends as its mailbox. Microsoft's stay open.
    let email = |provider: &'static str| {
        vec![
            ("provider", provider),
            ("smtp_host", "elsewhere.example"),
            ("smtp_port", "587"),
            ("smtp_security", "starttls"),
        ]
    };
    let r = net
        .submit(
            "/settings/send/email",
            "/settings/send/email",
            &email("google"),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = net
        .submit(
            "/settings/send/email",
            "/settings/send/email",
            &email("microsoft"),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let put = net
        .client
        .put(server.url("/api/v1/email/google"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"smtp_host": "elsewhere.example", "smtp_port": 587, "smtp_security": "starttls"}))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status().as_u16(), 403);
    let r = net
        .submit(
            "/settings/send/email",
            "/settings/send/submitters",
            &[
                ("name", "copier"),
                ("password", "a long password 1"),
                ("provider", "google"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = net
        .submit(
            "/settings/send/email",
            "/settings/send/allowlist",
            &[("cidr", "192.0.2.9/32"), ("provider", "google")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let api = admin.get("/api/v1/email/google").await.json();
    assert_ne!(api["smtp_host"], "elsewhere.example", "{api}");
    // What an Administrator bound to Google, a NetworkAdmin cannot remove.
    let r = admin
        .submit(
            "/settings/send/email",
            "/settings/send/submitters",
            &[
                ("name", "copier"),
                ("password", "a long password 1"),
                ("provider", "google"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = net
        .submit(
            "/settings/send/email",
            "/settings/send/submitters/delete",
            &[("name", "copier")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let del = net
        .client
        .delete(server.url("/api/v1/submitters/copier"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status().as_u16(), 403);
    let r = admin
        .submit(
            "/settings/send/email",
            "/settings/send/submitters/delete",
            &[("name", "copier")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = net.get("/settings/send/email").await;
    assert!(
        page.body
            .contains("Only an Administrator can change what sends through this account"),
        "{}",
        page.body
    );
    authorize_google(&server, &fc, &admin).await;
    // Turning it off asks first: the tokens stay until confirmed.
    let r = admin
        .submit(
            "/settings/send/oauth/google/edit",
            "/settings/send/oauth/google/edit",
            &[("client_id", "google-client-id.apps.googleusercontent.com")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("id=\"confirm-off\""), "{}", r.body);
    assert_eq!(
        admin.get("/api/v1/oauth/google").await.json()["token_status"],
        "active"
    );
    let r = admin
        .submit(
            "/settings/send/oauth/google/edit",
            "/settings/send/oauth/google/edit",
            &[
                ("client_id", "google-client-id.apps.googleusercontent.com"),
                ("confirm_off", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        admin.get("/api/v1/oauth/google").await.json()["token_status"],
        "not_registered"
    );
    assert!(
        fc.requests().iter().any(|r| r.path == "/revoke"),
        "the token was revoked at Google"
    );
}

/// A configured endpoint whose device code answer carries a `javascript:`
/// sign-in address: the page shows the address as text with a warning,
/// never as a link.
#[tokio::test]
async fn a_verification_uri_that_is_not_https_is_not_a_link() {
    let fc = FakeCloud::start(Options {
        device_poll_interval_secs: 1,
        verification_uri: Some("javascript:alert(document.cookie)".to_owned()),
        ..Options::default()
    })
    .await
    .expect("fakecloud starts");
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    let r = edit_microsoft(&admin, &fc.entra_endpoint("organizations"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = refresh(&admin, "microsoft").await;
    assert!(by_id(&page, "user-code").is_some(), "{}", page.body);
    assert_eq!(
        by_id(&page, "verification-uri").as_deref(),
        Some("javascript:alert(document.cookie)")
    );
    assert!(!page.body.contains("href=\"javascript:"), "{}", page.body);
    assert!(page.body.contains("not an https address"), "{}", page.body);
}

/// A NetworkAdmin may add trust anchors, but not for Google: a CA of its
/// own (here fakecloud's, standing for a TLS-intercepting proxy's) does not
/// make Google's refresh token and client secret go to a server it
/// vouches for. Microsoft's connections do trust it.
#[tokio::test]
async fn a_network_admins_ca_is_not_trusted_with_googles_credentials() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    authorize_google(&server, &fc, &admin).await;
    add_user(&admin, "netadmin", "network_admin").await;
    // The Administrator's CA goes; the NetworkAdmin brings the same one.
    let cas = admin.get("/api/v1/ca-certificates").await.json();
    let id = cas[0]["id"].as_i64().expect("id");
    assert_eq!(cas[0]["for_google"], true, "{cas}");
    let r = admin
        .submit(
            "/settings/management/ca-certificates",
            "/settings/management/ca-certificates/delete",
            &[("id", &id.to_string())],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let net = Browser::new(&server);
    net.login("netadmin", ADMIN_PASSWORD).await;
    trust(&net, &fc).await;
    let cas = admin.get("/api/v1/ca-certificates").await.json();
    assert_eq!(cas[0]["for_google"], false, "{cas}");

    let refreshes = || {
        fc.requests()
            .into_iter()
            .filter(|r| {
                r.form
                    .iter()
                    .any(|(k, v)| k == "grant_type" && v == "refresh_token")
            })
            .count()
    };
    let before = refreshes();
    let r = admin
        .submit(
            "/settings/send/oauth/google",
            "/settings/send/oauth/google/refresh-token",
            &[],
        )
        .await;
    // The refresh fails at TLS, before anything is sent.
    assert!(r.body.contains("token endpoint unreachable"), "{}", r.body);
    assert_eq!(
        refreshes(),
        before,
        "the refresh token went to a server only the NetworkAdmin's CA vouches for"
    );
    // The connection check says why, naming the certificate problem and
    // who can fix it.
    let page = refresh(&admin, "google").await;
    let status = by_id(&page, "connection-status").unwrap_or_default();
    assert!(
        status.starts_with("Failed") && status.contains("unknown issuer"),
        "{status}"
    );
    assert!(
        status.contains("an Administrator must add the issuing CA")
            && status.contains("does not apply to Google"),
        "{status}"
    );
    // Microsoft trusts the NetworkAdmin's CA.
    assert_eq!(
        edit_microsoft(&admin, &fc.entra_endpoint("organizations"), &[])
            .await
            .status,
        303
    );
    let page = refresh(&admin, "microsoft").await;
    assert_eq!(
        by_id(&page, "connection-status").as_deref(),
        Some("Successful"),
        "{}",
        page.body
    );
}
