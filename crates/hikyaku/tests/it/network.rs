//! Management → Network: the outbound proxy carries the OAuth calls and the
//! connection check (through a small CONNECT proxy), its failures are reported
//! as proxy failures, no-proxy entries bypass it, roles and CSRF guard it, and
//! its password never leaves the server in clear.

use std::time::Duration;

use fakecloud::{CertMode, FakeCloud};

use crate::oauth_flow::{MAILBOX, by_id, edit_microsoft, fakecloud, refresh, server_for, trust};
use testkit::{ADMIN_PASSWORD, Browser, ConnectProxy, Page, TestServer, add_user, eventually};

const NETWORK: &str = "/settings/management/network";

/// Saves the proxy settings: the page after the save (its redirect followed),
/// or the page with the errors.
async fn set_proxy(admin: &Browser, fields: &[(&str, &str)]) -> Page {
    let r = admin.submit(NETWORK, NETWORK, fields).await;
    match (r.status, &r.location) {
        (303, Some(to)) if to.contains("?done=saved") => admin.get(to).await,
        _ => r,
    }
}

/// fakecloud's `host:port`, as a CONNECT request names it.
fn fc_target(fc: &FakeCloud) -> String {
    fc.base_url().trim_start_matches("https://").to_string()
}

/// An administrator, fakecloud trusted and Microsoft's Basic Settings saved.
async fn microsoft_ready(server: &TestServer, fc: &FakeCloud) -> Browser {
    let admin = server.setup_admin().await;
    trust(&admin, fc).await;
    let r = edit_microsoft(&admin, &fc.entra_endpoint("organizations"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    admin
}

async fn connection_status(admin: &Browser) -> String {
    let page = refresh(admin, "microsoft").await;
    by_id(&page, "connection-status").unwrap_or_default()
}

#[tokio::test]
async fn the_proxy_carries_the_connection_check_and_the_device_authorization() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = microsoft_ready(&server, &fc).await;
    let proxy = ConnectProxy::start(None).await;
    let r = set_proxy(&admin, &[("host", "127.0.0.1"), ("port", &proxy.port())]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(by_id(&r, "proxy-status").is_some_and(|s| s.contains("in use")));

    let page = refresh(&admin, "microsoft").await;
    assert_eq!(
        by_id(&page, "connection-status").as_deref(),
        Some("Successful"),
        "{}",
        page.body
    );
    // The connection check and the device authorization request each opened a tunnel.
    let code = by_id(&page, "user-code").expect("a user code through the proxy");
    assert!(proxy.connects() >= 2, "{:?}", proxy.targets());
    assert!(
        proxy.targets().iter().all(|t| *t == fc_target(&fc)),
        "{:?}",
        proxy.targets()
    );
    let before = proxy.connects();
    fc.approve_user_code(&code, MAILBOX).expect("approve");
    eventually(Duration::from_secs(15), "token Active", || async {
        let p = admin.get("/settings/send/oauth/microsoft").await;
        (by_id(&p, "token-status").as_deref() == Some("Active")).then_some(())
    })
    .await;
    // The device-code poll that fetched the tokens went through the proxy too.
    assert!(proxy.connects() > before, "{:?}", proxy.targets());

    // Clearing the host switches the proxy off: direct again.
    let r = set_proxy(&admin, &[("host", ""), ("port", "")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(by_id(&r, "proxy-status").is_some_and(|s| s.contains("not used")));
    let n = proxy.connects();
    assert_eq!(connection_status(&admin).await, "Successful");
    assert_eq!(proxy.connects(), n, "no tunnel once the proxy is off");
    assert!(
        admin
            .get("/settings/management/audit-log")
            .await
            .body
            .contains("network_proxy")
    );
}

#[tokio::test]
async fn a_stopped_proxy_is_reported_as_a_proxy_failure() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = microsoft_ready(&server, &fc).await;
    let mut proxy = ConnectProxy::start(None).await;
    // Through the API this time (session cookie + X-CSRF-Token).
    let csrf = admin.session_csrf().await;
    let r = admin
        .client
        .put(server.url("/api/v1/network/proxy"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({ "host": "127.0.0.1", "port": proxy.addr.port() }))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 200);
    proxy.stop().await;

    let status = connection_status(&admin).await;
    let address = format!("127.0.0.1:{}", proxy.addr.port());
    assert!(
        status.starts_with("Failed")
            && status.contains(&format!("the proxy {address} refused the connection"))
            && status.contains("Management → Network"),
        "{status}"
    );
    let api = admin.get("/api/v1/oauth/microsoft").await.json();
    assert!(
        api["connection_reason"]
            .as_str()
            .is_some_and(|r| r.contains("proxy")),
        "{api}"
    );
    assert_eq!(api["connection_reason_code"], "via-proxy-refused", "{api}");
    // A device-code request through the dead proxy says so too.
    let r = admin
        .client
        .post(server.url("/api/v1/oauth/microsoft/device-code"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("post");
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("proxy") && body.contains(&address), "{body}");
}

#[tokio::test]
async fn proxy_credentials_wrong_missing_and_right() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = microsoft_ready(&server, &fc).await;
    let proxy = ConnectProxy::start(Some(("alice", "open sesame"))).await;
    let port = proxy.port();

    let r = set_proxy(&admin, &[("host", "127.0.0.1"), ("port", &port)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let status = connection_status(&admin).await;
    assert!(
        status.starts_with("Failed") && status.contains("asked for credentials (HTTP 407)"),
        "{status}"
    );

    let r = set_proxy(
        &admin,
        &[
            ("host", "127.0.0.1"),
            ("port", &port),
            ("username", "alice"),
            ("password", "wrong"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let status = connection_status(&admin).await;
    assert!(
        status.starts_with("Failed")
            && status.contains("407")
            && status.contains("user name and password"),
        "{status}"
    );

    let r = set_proxy(
        &admin,
        &[
            ("host", "127.0.0.1"),
            ("port", &port),
            ("username", "alice"),
            ("password", "open sesame"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(connection_status(&admin).await, "Successful");
    // Saving again with the password field empty keeps the stored password.
    let r = set_proxy(
        &admin,
        &[
            ("host", "127.0.0.1"),
            ("port", &port),
            ("username", "alice"),
        ],
    )
    .await;
    assert!(by_id(&r, "password-state").is_some_and(|s| s.contains("stored")));
    assert_eq!(connection_status(&admin).await, "Successful");
    // "Remove the stored password": 407 again.
    let r = set_proxy(
        &admin,
        &[
            ("host", "127.0.0.1"),
            ("port", &port),
            ("username", "alice"),
            ("remove_password", "on"),
        ],
    )
    .await;
    assert!(by_id(&r, "password-state").is_some_and(|s| s.contains("No password")));
    assert!(connection_status(&admin).await.contains("407"));
}

#[tokio::test]
async fn no_proxy_entries_bypass_the_proxy() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = microsoft_ready(&server, &fc).await;
    let proxy = ConnectProxy::start(None).await;
    let r = set_proxy(
        &admin,
        &[
            ("host", "127.0.0.1"),
            ("port", &proxy.port()),
            ("no_proxy", "127.0.0.1\nlocalhost"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(connection_status(&admin).await, "Successful");
    assert_eq!(proxy.connects(), 0, "{:?}", proxy.targets());
    let api = admin.get("/api/v1/network/proxy").await.json();
    assert_eq!(
        api["no_proxy"],
        serde_json::json!(["127.0.0.1", "localhost"])
    );
}

#[tokio::test]
async fn invalid_values_are_refused_with_what_to_do() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    for (fields, needle) in [
        (
            vec![("host", "http://proxy.example"), ("port", "3128")],
            "leave out http://",
        ),
        (
            vec![("host", "proxy.example"), ("port", "70000")],
            "1 to 65535",
        ),
        (
            vec![
                ("host", "proxy.example"),
                ("port", "3128"),
                ("no_proxy", "ok.example, bad entry"),
            ],
            "no-proxy entry",
        ),
    ] {
        let r = set_proxy(&admin, &fields).await;
        assert_eq!(r.status, 400, "{needle}: {}", r.body);
        assert!(
            by_id(&r, "network-error").is_some_and(|e| e.contains(needle)),
            "{needle}: {}",
            r.body
        );
    }
    let api = admin.get("/api/v1/network/proxy").await.json();
    assert_eq!(api["enabled"], false, "nothing was saved: {api}");
    let csrf = admin.session_csrf().await;
    let r = admin
        .client
        .put(server.url("/api/v1/network/proxy"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({ "host": "proxy.example", "port": 0 }))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 422);
    let r = admin
        .client
        .put(server.url("/api/v1/network/proxy"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({ "host": "proxy.example", "prot": 1 }))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn roles_csrf_and_the_password_never_in_clear() {
    const SECRET: &str = "pr0xy-Secret-Value";
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    add_user(&admin, "net", "network_admin").await;
    add_user(&admin, "user", "general_user").await;
    let net = Browser::new(&server);
    net.login("net", ADMIN_PASSWORD).await;
    let user = Browser::new(&server);
    user.login("user", ADMIN_PASSWORD).await;

    // The Management menu links the page for those who may use it.
    assert!(admin.get("/settings").await.body.contains(NETWORK));
    assert!(!user.get("/settings").await.body.contains(NETWORK));

    // Network administrators can see and save.
    let r = set_proxy(
        &net,
        &[
            ("host", "proxy.example"),
            ("port", "3128"),
            ("username", "alice"),
            ("password", SECRET),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(SECRET));

    // General users: 403 on the page, its form and the API.
    assert_eq!(user.get(NETWORK).await.status, 403);
    let csrf = user.session_csrf().await;
    let r = user
        .post_form(
            NETWORK,
            &[("csrf", &csrf), ("host", "evil.example"), ("port", "1")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(user.get("/api/v1/network/proxy").await.status, 403);
    let r = user
        .client
        .put(server.url("/api/v1/network/proxy"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({ "host": "evil.example", "port": 1 }))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 403);

    // A form without the CSRF token, or an API call without the header, is refused.
    let r = admin
        .post_form(NETWORK, &[("host", "evil.example"), ("port", "1")])
        .await;
    assert!(r.status == 403 || r.status == 400, "{}", r.status);
    let r = admin
        .client
        .put(server.url("/api/v1/network/proxy"))
        .json(&serde_json::json!({ "host": "evil.example", "port": 1 }))
        .send()
        .await
        .expect("put");
    assert!(r.status().is_client_error(), "{}", r.status());

    // Nothing of that changed the setting; the password is only "set".
    for b in [&admin, &net] {
        let page = b.get(NETWORK).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("proxy.example"), "{}", page.body);
        assert!(!page.body.contains("evil.example"));
        assert!(!page.body.contains(SECRET));
        let api = b.get("/api/v1/network/proxy").await;
        assert!(!api.body.contains(SECRET), "{}", api.body);
        let api = api.json();
        assert_eq!(api["password_set"], true, "{api}");
        assert_eq!(api["username"], "alice");
        assert_eq!(api["port"], 3128);
    }
    let audit = admin.get("/settings/management/audit-log").await.body;
    assert!(audit.contains("network_proxy") && !audit.contains(SECRET));

    // The database (and its write-ahead log) holds the password sealed only.
    for entry in std::fs::read_dir(server.dir.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "{} holds the proxy password in clear",
                path.display()
            );
        }
    }

    // After a restart the setting (and the password) is loaded again.
    let server = server.restart().await;
    let admin = Browser::new(&server);
    admin.login("admin", ADMIN_PASSWORD).await;
    let api = admin.get("/api/v1/network/proxy").await.json();
    assert_eq!(api["host"], "proxy.example", "{api}");
    assert_eq!(api["password_set"], true, "{api}");
}
