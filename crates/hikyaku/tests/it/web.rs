//! The server and its Remote UI: first-run setup, sign-in, roles on every
//! page and API route, CSRF, session expiry, throttling, audit, API basics.

use hikyaku::queue::JobStore as _;
use testkit::{ADMIN_PASSWORD, Browser, TestServer, add_user};

/// Every page: (path, roles allowed as [Administrator, NetworkAdmin, GeneralUser]).
const PAGES: &[(&str, [bool; 3])] = &[
    ("/", [true, true, true]),
    ("/jobs", [true, true, true]),
    ("/settings", [true, true, false]),
    ("/settings/send/email", [true, true, false]),
    ("/settings/send/oauth/microsoft", [true, true, false]),
    ("/settings/send/oauth/microsoft/edit", [true, true, false]),
    ("/settings/send/oauth/google", [true, false, false]),
    ("/settings/send/oauth/google/edit", [true, false, false]),
    ("/settings/management/users", [true, false, false]),
    ("/settings/management/datetime", [true, true, false]),
    ("/settings/management/ca-certificates", [true, true, false]),
    ("/settings/management/audit-log", [true, false, false]),
    ("/account/password", [true, true, true]),
];

/// Every API read route with the roles allowed.
const API_GETS: &[(&str, [bool; 3])] = &[
    ("/api/v1/status", [true, true, true]),
    ("/api/v1/oauth/microsoft", [true, true, false]),
    ("/api/v1/oauth/google", [true, false, false]),
    ("/api/v1/users", [true, false, false]),
    ("/api/v1/audit-log", [true, false, false]),
    ("/api/v1/api-tokens", [true, false, false]),
];

#[tokio::test]
async fn first_run_setup_link_creates_the_administrator_once() {
    let server = TestServer::start().await;
    let url = server
        .setup_url
        .clone()
        .expect("setup link printed on first start");
    let b = Browser::new(&server);
    // A forged CSRF token changes nothing.
    let token = url.split("token=").nth(1).expect("token").to_string();
    let page = b.get(&url).await;
    // Switching the language keeps the one-time link.
    let link = page
        .body
        .split("href=\"")
        .find(|s| s.starts_with("/lang/ja"))
        .and_then(|s| s.split('"').next())
        .expect("language link")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let back = b.get(&link).await;
    assert_eq!(back.status, 303);
    assert_eq!(
        back.location.as_deref(),
        Some(format!("/setup?token={token}").as_str())
    );
    b.get("/lang/en?next=/").await;
    let forged = b
        .post_form(
            "/setup",
            &[
                ("csrf", "forged"),
                ("token", &token),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("confirm", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    // Mismatched passwords: a clear message, nothing created.
    let page = b.get(&url).await;
    let csrf = page.csrf();
    let bad = b
        .post_form(
            "/setup",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("confirm", "something else!"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("do not match"), "{}", bad.body);
    let short = b
        .post_form(
            "/setup",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("username", "admin"),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert!(short.body.contains("at least 10"), "{}", short.body);
    // The real thing, then the link is spent.
    let ok = b
        .post_form(
            "/setup",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("confirm", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let reused = b.get(&url).await;
    assert_eq!(reused.status, 410);
    assert!(reused.body.contains("already been used"), "{}", reused.body);
    let again = b
        .post_form(
            "/setup",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("username", "evil"),
                ("password", ADMIN_PASSWORD),
                ("confirm", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(again.status, 400);
    assert!(b.login("admin", ADMIN_PASSWORD).await.location.as_deref() == Some("/"));
    let wrong = Browser::new(&server).get("/setup?token=nonsense").await;
    assert!(wrong.body.contains("not valid"), "{}", wrong.body);
}

#[tokio::test]
async fn an_expired_setup_link_says_so() {
    let server = TestServer::start().await;
    let url = server.setup_url.clone().expect("setup link");
    server.clock.jump(time::Duration::minutes(61));
    let page = Browser::new(&server).get(&url).await;
    assert_eq!(page.status, 410);
    assert!(page.body.contains("expired"), "{}", page.body);
}

#[tokio::test]
async fn login_logout_and_session_rules() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let portal = admin.get("/").await;
    assert_eq!(portal.status, 200);
    assert!(portal.body.contains("Remote UI Portal"), "{}", portal.body);

    // Wrong password: generic message, no session.
    let b = Browser::new(&server);
    let csrf = b.get("/login").await.csrf();
    let r = b
        .post_form(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "admin"),
                ("password", "wrong password!"),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Login failed"), "{}", r.body);
    let r = b
        .post_form(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "nobody"),
                ("password", "wrong password!"),
            ],
        )
        .await;
    assert!(r.body.contains("Login failed"));
    assert_eq!(b.get("/").await.status, 303);

    // Login without the pre-session CSRF token is refused.
    let fresh = Browser::new(&server);
    let r = fresh
        .post_form(
            "/login",
            &[
                ("csrf", "x"),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 403);

    // Cookies: HttpOnly, SameSite=Strict; a new id at every login.
    let c = Browser::new(&server);
    let csrf = c.get("/login").await.csrf();
    let resp = c
        .client
        .post(c.base.clone() + "/login")
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .expect("login");
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("hikyaku_session="))
        .expect("session cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    // Logout ends the session on the server: replaying the old cookie fails.
    let old_id = cookie.split(';').next().expect("id").to_string();
    let replay = |cookie: String| {
        let url = server.url("/settings");
        async move {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client")
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .expect("get")
                .status()
                .as_u16()
        }
    };
    assert_eq!(replay(old_id.clone()).await, 200);
    let csrf = c.session_csrf().await;
    assert_eq!(c.post_form("/logout", &[("csrf", &csrf)]).await.status, 303);
    assert_eq!(replay(old_id).await, 303);
    let logout = admin.submit("/", "/logout", &[]).await;
    assert_eq!(logout.status, 303);
    assert_eq!(admin.get("/").await.status, 303);
    // Logout without a CSRF token is refused.
    c.login("admin", ADMIN_PASSWORD).await;
    let no_csrf = c.post_form("/logout", &[]).await;
    assert_eq!(no_csrf.status, 403);
}

#[tokio::test]
async fn sessions_expire_when_idle() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    assert_eq!(admin.get("/settings").await.status, 200);
    server.clock.jump(time::Duration::minutes(14));
    assert_eq!(admin.get("/settings").await.status, 200);
    server.clock.jump(time::Duration::minutes(16));
    let r = admin.get("/settings").await;
    assert_eq!(r.status, 303);
    assert!(
        r.location
            .unwrap_or_default()
            .starts_with("/login?next=%2Fsettings")
    );
}

#[tokio::test]
async fn failed_logins_are_throttled_per_user_and_address() {
    let server = TestServer::start().await;
    let _admin = server.setup_admin().await;
    let b = Browser::new(&server);
    let csrf = b.get("/login").await.csrf();
    for _ in 0..3 {
        let r = b
            .post_form(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("username", "admin"),
                    ("password", "not the password"),
                ],
            )
            .await;
        assert_eq!(r.status, 401);
    }
    // The wait after three failures is 2 s; on a busy machine the password
    // checks alone can take that long, so the clock is held back to keep the
    // attempt below inside the wait.
    server.clock.jump(time::Duration::seconds(-30));
    // Even the right password is refused while throttled, with the same message.
    let r = b
        .post_form(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Login failed"));
    server.clock.jump(time::Duration::seconds(40));
    let r = b
        .post_form(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let audit = b.get("/settings/management/audit-log").await.body;
    assert!(
        audit.contains("login_failed")
            && audit.contains("login_throttled")
            && audit.contains(">login<"),
        "{audit}"
    );
}

#[tokio::test]
async fn every_role_against_every_page_and_api_route() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    add_user(&admin, "netadmin", "network_admin").await;
    add_user(&admin, "user", "general_user").await;
    let net = Browser::new(&server);
    net.login("netadmin", ADMIN_PASSWORD).await;
    let user = Browser::new(&server);
    user.login("user", ADMIN_PASSWORD).await;
    let anon = Browser::new(&server);
    for (i, b) in [&admin, &net, &user].into_iter().enumerate() {
        for (path, allowed) in PAGES {
            let r = b.get(path).await;
            let expected = if allowed[i] { 200 } else { 403 };
            assert_eq!(r.status, expected, "role {i} GET {path}: {}", r.body);
        }
        for (path, allowed) in API_GETS {
            let r = b.get(path).await;
            let expected = if allowed[i] { 200 } else { 403 };
            assert_eq!(r.status, expected, "role {i} GET {path}: {}", r.body);
            if !allowed[i] {
                assert_eq!(r.json()["error"], "forbidden");
            }
        }
    }
    for (path, _) in PAGES {
        assert_eq!(anon.get(path).await.status, 303, "anonymous {path}");
    }
    for (path, _) in API_GETS {
        let r = anon.get(path).await;
        assert_eq!(r.status, 401, "anonymous {path}");
    }
    // State-changing routes are refused to the wrong role even with a valid CSRF token.
    let csrf = net.session_csrf().await;
    let r = net
        .post_form(
            "/settings/send/oauth/google/edit",
            &[("csrf", &csrf), ("enabled", "on"), ("client_id", "x")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = net
        .post_form(
            "/settings/management/users",
            &[
                ("csrf", &csrf),
                ("username", "x1234"),
                ("password", ADMIN_PASSWORD),
                ("role", "administrator"),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    for (path, fields) in [
        (
            "/settings/management/users/role",
            [("username", "admin"), ("role", "general_user")],
        ),
        (
            "/settings/management/users/password",
            [("username", "admin"), ("password", "taken over!!")],
        ),
        (
            "/settings/management/api-tokens",
            [("name", "mine"), ("role", "network_admin")],
        ),
        (
            "/settings/management/api-tokens/revoke",
            [("name", "ci"), ("role", "")],
        ),
    ] {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(&fields);
        assert_eq!(
            net.post_form(path, &form).await.status,
            403,
            "network admin {path}"
        );
    }
    let csrf = user.session_csrf().await;
    let r = user
        .post_form(
            "/settings/send/oauth/microsoft/edit",
            &[("csrf", &csrf), ("enabled", "on")],
        )
        .await;
    assert_eq!(r.status, 403);
    // The Settings menu shows only what the role may open.
    let menu = net.get("/settings").await.body;
    assert!(
        menu.contains("menu-oauth-microsoft")
            && !menu.contains("menu-oauth-google")
            && !menu.contains("menu-users"),
        "{menu}"
    );
}

#[tokio::test]
async fn csrf_is_required_on_every_state_change() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    for path in [
        "/settings/management/users",
        "/settings/management/users/role",
        "/settings/management/users/password",
        "/settings/management/api-tokens",
        "/settings/management/api-tokens/revoke",
        "/account/password",
        "/settings/send/oauth/microsoft/edit",
        "/settings/send/oauth/google/edit",
        "/logout",
    ] {
        let missing = admin
            .post_form(
                path,
                &[
                    ("username", "x"),
                    ("password", ADMIN_PASSWORD),
                    ("role", "general_user"),
                ],
            )
            .await;
        assert_eq!(missing.status, 403, "no token on {path}");
        let wrong = admin
            .post_form(
                path,
                &[
                    ("csrf", "forged"),
                    ("username", "x"),
                    ("password", ADMIN_PASSWORD),
                    ("role", "general_user"),
                ],
            )
            .await;
        assert_eq!(wrong.status, 403, "forged token on {path}");
    }
    // Nothing changed.
    assert!(
        !admin
            .get("/settings/management/users")
            .await
            .body
            .contains("<td>x</td>")
    );
    // The API with a session cookie needs the X-CSRF-Token header.
    let r = admin
        .client
        .put(server.url("/api/v1/oauth/microsoft"))
        .json(&serde_json::json!({"enabled": false}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn user_management_refuses_bad_input_and_audits() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let r = admin
        .submit(
            "/settings/management/users",
            "/settings/management/users",
            &[
                ("username", "bob"),
                ("password", ADMIN_PASSWORD),
                ("role", "superuser"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Unknown role: superuser"));
    let r = admin
        .submit(
            "/settings/management/users",
            "/settings/management/users",
            &[
                ("username", "bad name!"),
                ("password", ADMIN_PASSWORD),
                ("role", "general_user"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    add_user(&admin, "bob", "general_user").await;
    let dup = admin
        .submit(
            "/settings/management/users",
            "/settings/management/users",
            &[
                ("username", "bob"),
                ("password", ADMIN_PASSWORD),
                ("role", "general_user"),
            ],
        )
        .await;
    assert!(dup.body.contains("already exists"));
    let last = admin
        .submit(
            "/settings/management/users",
            "/settings/management/users/delete",
            &[("username", "admin")],
        )
        .await;
    assert!(last.body.contains("last Administrator"), "{}", last.body);
    let del = admin
        .submit(
            "/settings/management/users",
            "/settings/management/users/delete",
            &[("username", "bob")],
        )
        .await;
    assert_eq!(del.status, 303);
    let audit = admin.get("/api/v1/audit-log").await.json();
    let actions: Vec<String> = audit
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or("").to_string())
        .collect();
    for a in ["setup", "login", "user_add", "user_delete"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    let entry = audit
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["action"] == "user_add")
        .expect("user_add");
    assert_eq!(entry["actor"], "admin");
    assert_eq!(entry["source"], "127.0.0.1");
}

#[tokio::test]
async fn api_health_openapi_tokens_and_malformed_json() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let anon = Browser::new(&server);
    let health = anon.get("/api/v1/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let spec = anon.get("/api/v1/openapi.json").await.json();
    assert_eq!(spec["openapi"], "3.0.3");
    for path in [
        "/api/v1/status",
        "/api/v1/oauth/{provider}",
        "/api/v1/users",
        "/api/v1/oauth/google/authorization-code",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} documented");
    }
    // API token created through the store as the CLI does, used as a bearer.
    let token = "hky_test_token_value";
    let store = hikyaku::store::Store::open(server.dir.path())
        .await
        .expect("store");
    store
        .create_api_token(
            "ci",
            hikyaku::roles::Role::NetworkAdmin,
            &hikyaku::secrets::hash_token(token),
            0,
        )
        .await
        .expect("token");
    let client = reqwest::Client::new();
    let r = client
        .get(server.url("/api/v1/oauth/microsoft"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["token_status"], "not_registered");
    assert_eq!(body["connection_status"], "not_checked");
    let r = client
        .get(server.url("/api/v1/oauth/google"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 403);
    let r = client
        .get(server.url("/api/v1/status"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 401);
    // Malformed JSON and unknown roles: 400 with a message.
    let csrf = admin.session_csrf().await;
    let r = admin
        .client
        .post(server.url("/api/v1/users"))
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "bad_request");
    // An array is not a body, though serde would read a struct from one.
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/api/v1/users",
            serde_json::json!(["eve", ADMIN_PASSWORD, "general_user"]),
        ),
        (
            reqwest::Method::PUT,
            "/api/v1/network/proxy",
            serde_json::json!([]),
        ),
    ] {
        let r = admin
            .client
            .request(method, server.url(path))
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 400, "{path}");
        let body: serde_json::Value = r.json().await.expect("json");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("must be a JSON object")),
            "{body}"
        );
    }
    let r = admin
        .client
        .post(server.url("/api/v1/users"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"name": "eve", "password": ADMIN_PASSWORD, "role": "root"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let r = admin
        .client
        .post(server.url("/api/v1/users"))
        .header("x-csrf-token", &csrf)
        .json(
            &serde_json::json!({"name": "eve", "password": ADMIN_PASSWORD, "role": "general_user"}),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 201);
}

#[tokio::test]
async fn japanese_pages_use_the_seeds_labels() {
    let server = TestServer::start().await;
    let _ = server.setup_admin().await;
    let ja = Browser::with_lang(&server, "ja,en;q=0.5");
    ja.login("admin", ADMIN_PASSWORD).await;
    let portal = ja.get("/").await.body;
    assert!(
        portal.contains("リモートUIのポータル画面")
            && portal.contains("設定/登録")
            && portal.contains("トークンの稼働状況")
            && portal.contains("ログアウト"),
        "{portal}"
    );
    let menu = ja.get("/settings").await.body;
    for label in [
        "送信",
        "OAuth 2.0(Microsoft)の設定",
        "OAuth 2.0(Google)の設定",
    ] {
        assert!(menu.contains(label), "{label}");
    }
    let ms = ja.get("/settings/send/oauth/microsoft").await.body;
    for label in [
        "基本設定",
        "編集",
        "サーバーの接続状況",
        "トークンの稼働状況",
        "未登録",
    ] {
        assert!(ms.contains(label), "{label} in {ms}");
    }
    let edit = ja.get("/settings/send/oauth/microsoft/edit").await.body;
    for label in [
        "基本設定の編集",
        "OAuth 2.0(Microsoft)を使用する",
        "サーバー証明書を検証する",
        "CNを検証項目に追加する",
        "Microsoft Entra ID認可サーバーのエンドポイント",
        "OK",
    ] {
        assert!(edit.contains(label), "{label}");
    }
    // The choice is remembered in a cookie over Accept-Language.
    let r = ja.get("/lang/en?next=/settings").await;
    assert_eq!(r.location.as_deref(), Some("/settings"));
    assert!(
        ja.get("/settings")
            .await
            .body
            .contains("Settings/Registration")
    );
    // An open redirect through next= is not possible.
    assert_eq!(
        ja.get("/lang/en?next=//evil.example")
            .await
            .location
            .as_deref(),
        Some("/")
    );
}

#[tokio::test]
async fn network_addresses_get_https_with_a_generated_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = testkit::test_config(dir.path());
    config.web.listen = "0.0.0.0:0".parse().expect("addr");
    let server = TestServer::start_with(
        dir,
        config,
        std::sync::Arc::new(hikyaku::clock::OffsetClock::default()),
    )
    .await;
    assert!(
        server
            .setup_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
        "{:?}",
        server.setup_url
    );
    let port = server.base.rsplit(':').next().expect("port").to_string();
    // The generated certificate is in the data directory; a client that trusts it connects.
    let pem =
        std::fs::read(server.dir.path().join("tls/ui-cert.pem")).expect("generated certificate");
    let cert = reqwest::Certificate::from_pem(&pem).expect("pem");
    let client = reqwest::Client::builder()
        .tls_certs_merge([cert])
        .build()
        .expect("client");
    let health = client
        .get(format!("https://localhost:{port}/api/v1/health"))
        .send()
        .await
        .expect("https works");
    assert_eq!(health.status().as_u16(), 200);
    // Plain HTTP is not served there.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/health"))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
    // Cookies carry Secure over HTTPS.
    let login = client
        .get(format!("https://localhost:{port}/login"))
        .send()
        .await
        .expect("login page");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

#[tokio::test]
async fn plain_http_on_a_network_address_shows_a_warning_banner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = testkit::test_config(dir.path());
    config.web.listen = "0.0.0.0:0".parse().expect("addr");
    config.web.allow_plain_http = true;
    let server = TestServer::start_with(
        dir,
        config,
        std::sync::Arc::new(hikyaku::clock::OffsetClock::default()),
    )
    .await;
    let port = server.base.rsplit(':').next().expect("port").to_string();
    let page = reqwest::get(format!("http://127.0.0.1:{port}/login"))
        .await
        .expect("plain http")
        .text()
        .await
        .expect("body");
    assert!(page.contains("plain HTTP"), "{page}");
}

#[tokio::test]
async fn sending_api_routes_validate_and_check_roles() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let store = hikyaku::store::Store::open(server.dir.path())
        .await
        .expect("store");
    for (name, role) in [
        ("adm", hikyaku::roles::Role::Administrator),
        ("net", hikyaku::roles::Role::NetworkAdmin),
        ("gen", hikyaku::roles::Role::GeneralUser),
    ] {
        store
            .create_api_token(
                name,
                role,
                &hikyaku::secrets::hash_token(&format!("tok-{name}")),
                0,
            )
            .await
            .expect("token");
    }
    let _ = admin;
    let c = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, who: &str, body: Option<serde_json::Value>| {
        let mut r = c
            .request(method, server.url(path))
            .bearer_auth(format!("tok-{who}"));
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let resp = r.send().await.expect("request");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str::<serde_json::Value>(&text).unwrap_or(serde_json::Value::Null),
            )
        }
    };
    use reqwest::Method;
    // E-mail Settings: validation, then saved.
    let (s, b) = call(Method::PUT, "/api/v1/email/microsoft", "net", Some(serde_json::json!({"smtp_host": "smtp..bad", "smtp_port": 587, "smtp_security": "plain"}))).await;
    assert_eq!(s, 422, "{b}");
    assert!(b["errors"].as_array().is_some_and(|e| e.len() == 2), "{b}");
    let (s, b) = call(Method::PUT, "/api/v1/email/microsoft", "net", Some(serde_json::json!({"smtp_host": "smtp.office365.us", "smtp_port": 587, "smtp_security": "starttls", "is_default": true}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["smtp_host"], "smtp.office365.us");
    assert_eq!(
        call(Method::GET, "/api/v1/email/microsoft", "gen", None)
            .await
            .0,
        403
    );
    // Submitters and allowlist.
    let (s, _) = call(
        Method::POST,
        "/api/v1/submitters",
        "net",
        Some(
            serde_json::json!({"name": "mfp", "password": ADMIN_PASSWORD, "provider": "microsoft"}),
        ),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(
        call(
            Method::POST,
            "/api/v1/submitters",
            "net",
            Some(serde_json::json!({"name": "mfp", "password": ADMIN_PASSWORD, "provider": "microsoft"}))
        )
        .await
        .0,
        409
    );
    // Bound to no account, it could send through Google: not a NetworkAdmin's.
    assert_eq!(
        call(
            Method::POST,
            "/api/v1/submitters",
            "net",
            Some(serde_json::json!({"name": "any", "password": ADMIN_PASSWORD}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            Method::POST,
            "/api/v1/submitters",
            "net",
            Some(serde_json::json!({"name": "x", "password": "short"}))
        )
        .await
        .0,
        400
    );
    let (_, list) = call(Method::GET, "/api/v1/submitters", "adm", None).await;
    assert_eq!(list[0]["name"], "mfp");
    assert_eq!(list[0]["provider"], "microsoft");
    assert!(list[0].get("password_hash").is_none());
    assert_eq!(
        call(
            Method::POST,
            "/api/v1/allowlist",
            "net",
            Some(serde_json::json!({"cidr": "0.0.0.0/0"}))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            Method::POST,
            "/api/v1/allowlist",
            "net",
            Some(serde_json::json!({"cidr": "192.0.2.0/28"}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            Method::POST,
            "/api/v1/allowlist",
            "net",
            Some(serde_json::json!({"cidr": "192.0.2.0/28", "provider": "microsoft"}))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        call(
            Method::DELETE,
            "/api/v1/allowlist/192.0.2.0_28",
            "net",
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(Method::DELETE, "/api/v1/submitters/mfp", "gen", None)
            .await
            .0,
        403
    );
    assert_eq!(
        call(Method::DELETE, "/api/v1/submitters/mfp", "net", None)
            .await
            .0,
        204
    );
    // CA certificates: malformed PEM refused with the reason.
    let (s, b) = call(Method::POST, "/api/v1/ca-certificates", "net", Some(serde_json::json!({"pem": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}))).await;
    assert_eq!(s, 400, "{b}");
    assert!(!b["message"].as_str().unwrap_or("").is_empty());
    assert_eq!(
        call(
            Method::DELETE,
            "/api/v1/ca-certificates/notanumber",
            "net",
            None
        )
        .await
        .0,
        400
    );
    // Jobs: queue one locally, list, delete. It is due tomorrow so that the
    // server's own queue never claims it: a job being sent cannot be
    // deleted (409), and the claim could land between enqueue and delete.
    let tomorrow = time::OffsetDateTime::now_utc().unix_timestamp() + 86_400;
    let job = hikyaku::intake::store_sink::new_job(
        "test",
        "local",
        None,
        "a@example.com",
        vec!["b@example.com".into()],
        b"Subject: api\r\n\r\nx\r\n".to_vec(),
    );
    store.enqueue(&job, tomorrow).await.expect("enqueue");
    let (s, b) = call(Method::GET, "/api/v1/jobs?state=queued", "gen", None).await;
    assert_eq!(s, 200);
    assert_eq!(b[0]["subject"], "api");
    assert_eq!(
        call(Method::GET, "/api/v1/jobs?state=bogus", "gen", None)
            .await
            .0,
        400
    );
    assert_eq!(
        call(Method::GET, "/api/v1/jobs?limit=abc", "gen", None)
            .await
            .0,
        400
    );
    assert_eq!(
        call(
            Method::DELETE,
            &format!("/api/v1/jobs/{}", job.id),
            "net",
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(Method::GET, "/api/v1/jobs/nope", "gen", None).await.0,
        404
    );
    assert_eq!(
        call(
            Method::DELETE,
            &format!("/api/v1/jobs/{}", job.id),
            "adm",
            None
        )
        .await
        .0,
        204
    );
    // Unknown routes and methods answer JSON too.
    let (s, b) = call(Method::PATCH, "/api/v1/users", "adm", None).await;
    assert_eq!(s, 405);
    assert_eq!(b["error"], "method_not_allowed");
}

#[tokio::test]
async fn job_history_pages_through_older_jobs() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let store = hikyaku::store::Store::open(server.dir.path())
        .await
        .expect("store");
    for i in 0..105 {
        let job = hikyaku::intake::store_sink::new_job(
            "test",
            "local",
            None,
            "a@example.com",
            vec!["b@example.com".into()],
            format!("Subject: page {i}\r\n\r\nx\r\n").into_bytes(),
        );
        store.enqueue(&job, 1_000 + i).await.expect("enqueue");
    }
    let rows = |p: &testkit::Page| p.body.matches("<tr id=\"job-").count();
    let first = admin.get("/jobs").await;
    assert_eq!(rows(&first), 100);
    assert!(first.body.contains("page 104") && !first.body.contains("page 4<"));
    assert!(!first.body.contains("id=\"jobs-newer\""));
    let older = first
        .body
        .split("id=\"jobs-older\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .and_then(|s| s.split('"').next())
        .expect("a link to older jobs")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let second = admin.get(&older).await;
    assert_eq!(rows(&second), 5, "{}", second.body);
    assert!(second.body.contains("page 4<") && second.body.contains("page 0<"));
    assert!(second.body.contains("id=\"jobs-newer\""));
    assert!(!second.body.contains("id=\"jobs-older\""));
}

/// Refused forms and operations say what is wrong in the page's language:
/// the same refusals with Accept-Language en and ja, and no English sentence
/// on the Japanese pages.
#[tokio::test]
async fn refusals_are_shown_in_the_page_language() {
    let server = TestServer::start().await;
    let en = server.setup_admin().await;
    add_user(&en, "guser", "general_user").await;
    let ja = Browser::with_lang(&server, "ja");
    ja.login("admin", ADMIN_PASSWORD).await;

    struct Case {
        what: &'static str,
        status: u16,
        en: &'static [&'static str],
        ja: &'static [&'static str],
    }
    let cases = [
        Case {
            what: "basic settings without endpoint and client id",
            status: 400,
            en: &[
                "Microsoft Entra ID Authorization Server Endpoint: enter https://login.microsoftonline.com/",
                "Client ID: enter the Application (client) ID of your Entra app registration",
            ],
            ja: &[
                "Microsoft Entra ID認可サーバーのエンドポイント:https://login.microsoftonline.com/",
                "クライアントID:Microsoft Entraで登録したアプリのアプリケーション(クライアント)IDを入力してください。",
            ],
        },
        Case {
            what: "basic settings with an http endpoint",
            status: 400,
            en: &["the endpoint must use https, not http"],
            ja: &["Microsoft Entra ID認可サーバーのエンドポイント:httpは使用できません。"],
        },
        Case {
            what: "duplicate user",
            status: 400,
            en: &["A user named guser already exists. Choose another name."],
            ja: &["ユーザー名「guser」はすでに登録されています。別の名前を入力してください。"],
        },
        Case {
            what: "unknown role",
            status: 400,
            en: &["Unknown role: superuser."],
            ja: &["権限「superuser」は使用できません。"],
        },
        Case {
            what: "e-mail settings",
            status: 400,
            en: &[
                "is not a host name (e.g. smtp.office365.com)",
                "Port: enter a number from 1 to 65535",
            ],
            ja: &[
                "はホスト名ではありません。smtp.office365.comのようなホスト名を入力してください。",
                "ポート番号:1〜65535の数値を入力してください",
            ],
        },
        Case {
            what: "google not switched on",
            status: 400,
            en: &["OAuth 2.0 (Google) is not switched on: use Edit in Basic Settings first."],
            ja: &[
                "OAuth 2.0(Google)が使用する設定になっていません。先に基本設定の[編集]で使用する設定にしてください。",
            ],
        },
        Case {
            what: "unknown time zone",
            status: 400,
            en: &["Unknown time zone"],
            ja: &["タイムゾーン「+99:00」は使用できません。一覧から選択してください。"],
        },
        Case {
            what: "proxy settings",
            status: 400,
            en: &[
                "proxy port",
                "is not usable — enter a number from 1 to 65535",
            ],
            ja: &["プロキシのポート番号「0」は使用できません。"],
        },
    ];
    // English sentences that must not appear on a Japanese page.
    let english = [
        "already exists",
        "Client ID:",
        "enter https://",
        "must use https",
        "is not a host name",
        "Unknown role",
        "is not switched on",
        "Unknown time zone",
        "is not usable",
    ];
    for (b, lang) in [(&en, "en"), (&ja, "ja")] {
        for case in &cases {
            let page = match case.what {
                "basic settings without endpoint and client id" => {
                    b.submit(
                        "/settings/send/oauth/microsoft/edit",
                        "/settings/send/oauth/microsoft/edit",
                        &[("enabled", "on"), ("endpoint", ""), ("client_id", "")],
                    )
                    .await
                }
                "basic settings with an http endpoint" => {
                    b.submit(
                        "/settings/send/oauth/microsoft/edit",
                        "/settings/send/oauth/microsoft/edit",
                        &[
                            ("enabled", "on"),
                            (
                                "endpoint",
                                "http://login.microsoftonline.com/common/oauth2/v2.0",
                            ),
                            ("client_id", "abc"),
                        ],
                    )
                    .await
                }
                "duplicate user" | "unknown role" => {
                    let role = if case.what == "unknown role" {
                        "superuser"
                    } else {
                        "general_user"
                    };
                    b.submit(
                        "/settings/management/users",
                        "/settings/management/users",
                        &[
                            ("username", "guser"),
                            ("password", ADMIN_PASSWORD),
                            ("role", role),
                        ],
                    )
                    .await
                }
                "e-mail settings" => {
                    b.submit(
                        "/settings/send/email",
                        "/settings/send/email",
                        &[
                            ("provider", "microsoft"),
                            ("smtp_host", "bad host"),
                            ("smtp_port", "0"),
                            ("smtp_security", "starttls"),
                            ("sender", ""),
                        ],
                    )
                    .await
                }
                "google not switched on" => b.get("/settings/send/oauth/google/register").await,
                "unknown time zone" => {
                    b.submit(
                        "/settings/management/datetime",
                        "/settings/management/datetime",
                        &[("zone", "+99:00")],
                    )
                    .await
                }
                "proxy settings" => {
                    b.submit(
                        "/settings/management/network",
                        "/settings/management/network",
                        &[("host", "proxy.example.com"), ("port", "0")],
                    )
                    .await
                }
                other => unreachable!("{other}"),
            };
            assert_eq!(
                page.status, case.status,
                "{lang} {}: {}",
                case.what, page.body
            );
            let (expected, other) = if lang == "en" {
                (case.en, case.ja)
            } else {
                (case.ja, case.en)
            };
            for text in expected {
                assert!(
                    page.body.contains(text),
                    "{lang} {}: {text:?} missing in {}",
                    case.what,
                    page.body
                );
            }
            for text in other {
                assert!(!page.body.contains(text), "{lang} {}: {text:?}", case.what);
            }
            if lang == "ja" {
                for text in english {
                    assert!(
                        !page.body.contains(text),
                        "English {text:?} on a Japanese page ({}): {}",
                        case.what,
                        page.body
                    );
                }
            }
        }
    }
}

/// The reason after the Server Connection Status label, and the Audit Log's
/// own sentences, are in the page's language; names and addresses stay.
#[tokio::test]
async fn status_reasons_and_audit_details_are_shown_in_the_page_language() {
    let server = TestServer::start().await;
    let en = server.setup_admin().await;
    let ja = Browser::with_lang(&server, "ja");
    ja.login("admin", ADMIN_PASSWORD).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let endpoint = format!("https://127.0.0.1:{dead}/common/oauth2/v2.0");
    let page = "/settings/send/oauth/microsoft";
    let saved = en
        .submit(
            &format!("{page}/edit"),
            &format!("{page}/edit"),
            &[
                ("enabled", "on"),
                ("verify_cert", "on"),
                ("endpoint", &endpoint),
                ("client_id", "11111111-2222-3333-4444-555555555555"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    en.submit(page, &format!("{page}/refresh"), &[]).await;
    let target = format!("127.0.0.1:{dead}");
    let status = |body: &str| {
        let start = body.find("id=\"connection-status\"").expect("status cell");
        let end = body[start..].find("</td>").expect("end") + start;
        body[start..end].to_string()
    };
    let en_status = status(&en.get(page).await.body);
    // 127.0.0.1 is no known Microsoft login host: the reason does not say
    // what the port did, only that no HTTPS server answered.
    assert!(
        en_status.contains(&format!("Failed — no HTTPS server answered at {target}")),
        "{en_status}"
    );
    let ja_status = status(&ja.get(page).await.body);
    assert!(
        ja_status.contains(&format!(
            "失敗 — {target}でHTTPSサーバーが応答しませんでした。"
        )),
        "{ja_status}"
    );
    assert!(!ja_status.contains("answered"), "{ja_status}");

    let audit = "/settings/management/audit-log";
    let en_audit = en.get(audit).await.body;
    assert!(
        en_audit.contains("signed in as Administrator"),
        "{en_audit}"
    );
    let ja_audit = ja.get(audit).await.body;
    assert!(
        ja_audit.contains("Administratorとしてログイン"),
        "{ja_audit}"
    );
    assert!(!ja_audit.contains("signed in as"), "{ja_audit}");
}

/// Writes `text` into the store with `sql` (one `?1`), as an older version
/// of hikyaku would have left it.
async fn write_as_an_older_version(server: &TestServer, sql: &'static str, text: &str) {
    let db = server.dir.path().join(hikyaku::store::DB_FILE);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the database");
    sqlx::query(sql)
        .bind(text)
        .execute(&pool)
        .await
        .expect("write as an older version");
    pool.close().await;
}

/// A database of an older version holds the account reasons as English
/// prose: the pages (in either language) and the API show it as it is.
#[tokio::test]
async fn reasons_stored_as_prose_by_an_older_version_are_still_shown() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let prose = "declined by the user — get a new code";
    write_as_an_older_version(
        &server,
        "UPDATE accounts SET token_status = 'error', token_reason = ?1 WHERE provider = 'microsoft'",
        prose,
    )
    .await;
    let ja = Browser::with_lang(&server, "ja");
    ja.login("admin", ADMIN_PASSWORD).await;
    // The store may reuse what it read for up to a second.
    testkit::eventually(
        std::time::Duration::from_secs(5),
        "the stored prose on the Japanese page",
        async || {
            let page = ja.get("/settings/send/oauth/microsoft").await.body;
            if page.contains(prose) {
                Ok(())
            } else {
                Err(page)
            }
        },
    )
    .await;
    let api = admin.get("/api/v1/oauth/microsoft").await.json();
    assert_eq!(api["token_reason"], prose, "{api}");
    assert_eq!(api["token_reason_code"], "legacy", "{api}");
}

/// Audit details are data: the page renders them (and labels the action) in
/// its language, the API gives the English and the code, and prose that an
/// older version stored is shown as it is.
#[tokio::test]
async fn audit_details_are_rendered_from_their_code_and_old_prose_is_still_shown() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let prose = "bob (general_user)";
    write_as_an_older_version(
        &server,
        "INSERT INTO audit_log (at, actor, source, action, detail) VALUES (1, 'admin', '127.0.0.1', 'user_add', ?1)",
        prose,
    )
    .await;

    let api = admin.get("/api/v1/audit-log").await.json();
    let entries = api.as_array().expect("array");
    let login = entries
        .iter()
        .find(|e| e["action"] == "login")
        .expect("login");
    assert_eq!(login["detail"], "signed in as Administrator", "{login}");
    assert_eq!(login["detail_code"], "audit-login", "{login}");
    let old = entries
        .iter()
        .find(|e| e["action"] == "user_add")
        .expect("user_add");
    assert_eq!(old["detail"], prose, "{old}");
    assert_eq!(old["detail_code"], "legacy", "{old}");

    let ja = Browser::with_lang(&server, "ja");
    ja.login("admin", ADMIN_PASSWORD).await;
    let page = ja.get("/settings/management/audit-log").await.body;
    assert!(page.contains(&format!("lang=\"en\">{prose}<")), "{page}");
    assert!(page.contains("ユーザーの追加"), "{page}");
    assert!(page.contains("最初の管理者を作成しました"), "{page}");
    assert!(!page.contains("first Administrator created"), "{page}");
    let en = admin.get("/settings/management/audit-log").await.body;
    assert!(en.contains("User added") && en.contains(prose), "{en}");
}

/// `next=` leads only to a page of this site: characters that browsers
/// drop or read as `/` cannot make it leave, and control characters give a
/// redirect home, not an error (also at sign-in, after the session exists).
#[tokio::test]
async fn next_never_leaves_the_site_nor_fails() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    for next in [
        "/%09/evil.example",
        "/%5C/evil.example",
        "/%0D%0ASet-Cookie:%20x=1",
        "/%0Bx",
    ] {
        let r = admin.get(&format!("/lang/en?next={next}")).await;
        assert_eq!(r.status, 303, "{next}: {}", r.body);
        assert_eq!(r.location.as_deref(), Some("/"), "{next}");
    }
    let b = Browser::new(&server);
    let csrf = b.get("/login").await.csrf();
    for next in ["/\r\nSet-Cookie: x=1", "/\u{b}x", "/\t/evil.example"] {
        let r = b
            .post_form(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("username", "admin"),
                    ("password", ADMIN_PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{next:?}: {}", r.body);
        assert_eq!(r.location.as_deref(), Some("/"), "{next:?}");
    }
}

/// A sign-in attempt with the pre-sign-in CSRF token `csrf`.
async fn try_login(b: &Browser, csrf: &str, user: &str, password: &str) -> testkit::Page {
    b.post_form(
        "/login",
        &[("csrf", csrf), ("username", user), ("password", password)],
    )
    .await
}

/// What an anonymous request can make the server keep is bounded: a huge
/// sign-in or setup form is refused before it is read, a user name no user
/// can have is refused before it is stored, and a flood of attempts while
/// throttled leaves one audit entry, not one each.
#[tokio::test]
async fn anonymous_input_is_bounded() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let b = Browser::new(&server);
    let csrf = b.get("/login").await.csrf();
    let huge = "x".repeat(2 * 1024 * 1024);
    for path in ["/login", "/setup"] {
        let r = b
            .post_form(
                path,
                &[("csrf", &csrf), ("username", &huge), ("password", "p")],
            )
            .await;
        assert_eq!(r.status, 413, "{path}");
    }
    let long = "u".repeat(300);
    assert_eq!(try_login(&b, &csrf, &long, "not it").await.status, 400);
    for _ in 0..3 {
        assert_eq!(try_login(&b, &csrf, "admin", "not it").await.status, 401);
    }
    // Held back so that the whole flood falls inside one wait.
    server.clock.jump(time::Duration::seconds(-60));
    for _ in 0..20 {
        assert_eq!(try_login(&b, &csrf, "admin", "not it").await.status, 401);
    }
    let audit = admin.get("/api/v1/audit-log").await.json();
    let entries = audit.as_array().expect("array");
    let count = |action: &str| entries.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("login_failed"), 3, "{audit}");
    assert_eq!(count("login_throttled"), 1, "{audit}");
    assert!(
        entries
            .iter()
            .all(|e| e["actor"].as_str().is_some_and(|a| a.len() <= 256)),
        "{audit}"
    );
}
