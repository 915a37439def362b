//! Users and API tokens through the real server: tokens listed, revoked and
//! expiring, tied to the user who made them (narrowed when the user is
//! demoted, revoked when the user is deleted); passwords changed (the
//! current one required) and reset, other sessions ending; roles changed
//! without ever leaving no Administrator.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::oauth_flow::by_id;
use testkit::{ADMIN_PASSWORD, Browser, Page, TestServer, add_user};

const USERS: &str = "/settings/management/users";

/// A bearer call of the JSON API: status and body.
async fn bearer(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .request(method, server.url(path))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("request");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(server: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    bearer(server, reqwest::Method::GET, path, token, None).await
}

/// Makes a token on the Users page as the signed-in Administrator; returns
/// the value the page shows once.
async fn make_token(b: &Browser, name: &str, role: &str, expires_in: &str) -> String {
    let page = b
        .submit(
            USERS,
            "/settings/management/api-tokens",
            &[("name", name), ("role", role), ("expires_in", expires_in)],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = by_id(&page, "token-value").expect("the token is shown once");
    assert!(token.starts_with("hky_"), "{token}");
    // Shown once: the list that follows has no value of it.
    assert!(!b.get(USERS).await.body.contains(&token));
    token
}

/// The row of `id` in a page, as text.
fn row(page: &Page, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let Some(at) = page.body.find(&marker) else {
        return String::new();
    };
    let end = page.body[at..]
        .find("</tr>")
        .map_or(page.body.len(), |e| at + e);
    page.body[at..end].to_string()
}

#[tokio::test]
async fn api_tokens_are_listed_revoked_expire_and_follow_their_user() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let ci = make_token(&admin, "ci", "administrator", "").await;
    let (status, users) = get(&server, "/api/v1/users", &ci).await;
    assert_eq!(status, 200, "{users}");

    // Listed on the page and in the API, with user, role and last use.
    let page = admin.get(USERS).await;
    let ci_row = row(&page, "token-ci");
    assert!(
        ci_row.contains("admin") && ci_row.contains("Administrator"),
        "{ci_row}"
    );
    assert!(!ci_row.contains("not used yet"), "last use shown: {ci_row}");
    let (_, list) = get(&server, "/api/v1/api-tokens", &ci).await;
    let listed = &list.as_array().expect("a list")[0];
    assert_eq!(listed["name"], "ci");
    assert_eq!(listed["user"], "admin");
    assert_eq!(listed["state"], "active");
    assert!(listed["last_used_at"].is_i64(), "{listed}");
    assert!(listed.get("token").is_none() && listed.get("token_hash").is_none());

    // Made through the API, with an expiry; a bad expiry is refused clearly.
    let (status, made) = bearer(
        &server,
        reqwest::Method::POST,
        "/api/v1/api-tokens",
        &ci,
        Some(json!({ "name": "short-lived", "role": "general_user", "expires_in": "1h" })),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        (made["user"].as_str(), made["role"].as_str()),
        (Some("admin"), Some("general_user"))
    );
    let short = made["token"].as_str().expect("value").to_string();
    assert_eq!(get(&server, "/api/v1/status", &short).await.0, 200);
    assert_eq!(get(&server, "/api/v1/users", &short).await.0, 403);
    let (status, refused) = bearer(
        &server,
        reqwest::Method::POST,
        "/api/v1/api-tokens",
        &ci,
        Some(json!({ "name": "x", "expires_in": "soon" })),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["message"].as_str().unwrap_or("").contains("90d"),
        "{refused}"
    );

    // A second Administrator makes a token, is demoted: the token narrows.
    add_user(&admin, "boss", "administrator").await;
    let boss = Browser::new(&server);
    boss.login("boss", ADMIN_PASSWORD).await;
    let boss_token = make_token(&boss, "boss-script", "administrator", "").await;
    assert_eq!(get(&server, "/api/v1/audit-log", &boss_token).await.0, 200);
    admin
        .submit_done(
            USERS,
            "/settings/management/users/role",
            &[("username", "boss"), ("role", "network_admin")],
        )
        .await;
    assert_eq!(get(&server, "/api/v1/audit-log", &boss_token).await.0, 403);
    assert_eq!(
        get(&server, "/api/v1/oauth/microsoft", &boss_token).await.0,
        200
    );
    let (_, list) = get(&server, "/api/v1/api-tokens", &ci).await;
    let narrowed = list
        .as_array()
        .and_then(|l| l.iter().find(|t| t["name"] == "boss-script"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (narrowed["role"].as_str(), narrowed["token_role"].as_str()),
        (Some("network_admin"), Some("administrator")),
        "{narrowed}"
    );
    let page = admin.get(USERS).await;
    assert!(
        row(&page, "token-boss-script").contains("own role"),
        "{}",
        row(&page, "token-boss-script")
    );

    // Deleting the user revokes the token: 401, saying why.
    admin
        .submit_done(
            USERS,
            "/settings/management/users/delete",
            &[("username", "boss")],
        )
        .await;
    let (status, body) = get(&server, "/api/v1/status", &boss_token).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert!(
        body["message"].as_str().unwrap_or("").contains("revoked"),
        "{body}"
    );

    // Revoked on the page: refused at once.
    admin
        .submit_done(
            USERS,
            "/settings/management/api-tokens/revoke",
            &[("name", "ci")],
        )
        .await;
    let (status, body) = get(&server, "/api/v1/status", &ci).await;
    assert_eq!(status, 401);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("The API token ci has been revoked"),
        "{body}"
    );
    assert!(row(&admin.get(USERS).await, "token-ci").contains("Revoked"));

    // Expiry: an hour later the short-lived token is refused, saying so.
    server.clock.jump(time::Duration::hours(2));
    let (status, body) = get(&server, "/api/v1/status", &short).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("has expired"),
        "{body}"
    );
    let unknown = get(&server, "/api/v1/status", "hky_nothing").await;
    assert_eq!(unknown.0, 401);
    assert!(
        unknown.1["message"]
            .as_str()
            .unwrap_or("")
            .contains("not known"),
        "{}",
        unknown.1
    );

    admin.login("admin", ADMIN_PASSWORD).await;
    let page = admin.get(USERS).await;
    assert!(
        row(&page, "token-short-lived").contains("Expired"),
        "{}",
        row(&page, "token-short-lived")
    );
    let log = admin.get("/settings/management/audit-log").await.body;
    for action in [
        "api_token_add",
        "api_token_revoke",
        "user_role",
        "user_delete",
    ] {
        assert!(log.contains(action), "{action} audited");
    }
    assert!(!log.contains(&short) && !log.contains(&boss_token));
}

#[tokio::test]
async fn passwords_change_and_reset_and_roles_keep_an_administrator() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    add_user(&admin, "alice", "general_user").await;
    let here = Browser::new(&server);
    here.login("alice", ADMIN_PASSWORD).await;
    let elsewhere = Browser::new(&server);
    elsewhere.login("alice", ADMIN_PASSWORD).await;

    // Every role reaches its own password page; the current one is required.
    let page = here.get("/account/password").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        here.get("/")
            .await
            .body
            .contains("href=\"/account/password\"")
    );
    let wrong = here
        .submit(
            "/account/password",
            "/account/password",
            &[
                ("current", "not my password"),
                ("password", "a new good password"),
                ("confirm", "a new good password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert!(
        by_id(&wrong, "password-error")
            .unwrap_or_default()
            .contains("current password is wrong"),
        "{}",
        wrong.body
    );
    assert_eq!(
        elsewhere.get("/").await.status,
        200,
        "a refused change ends nothing"
    );
    let changed = here
        .submit_done(
            "/account/password",
            "/account/password",
            &[
                ("current", ADMIN_PASSWORD),
                ("password", "a new good password"),
                ("confirm", "a new good password"),
            ],
        )
        .await;
    assert!(
        changed.body.contains("Password changed"),
        "{}",
        changed.body
    );
    // This session stays; the other one ends.
    assert_eq!(here.get("/").await.status, 200);
    assert_eq!(elsewhere.get("/").await.status, 303);
    let old = Browser::new(&server);
    let page = old.get("/login").await;
    let r = old
        .post_form(
            "/login",
            &[
                ("csrf", &page.csrf()),
                ("username", "alice"),
                ("password", ADMIN_PASSWORD),
                ("next", "/"),
            ],
        )
        .await;
    assert_eq!(r.status, 401, "the old password no longer signs in");

    // An Administrator sets another user's password: all their sessions end.
    admin
        .submit_done(
            USERS,
            "/settings/management/users/password",
            &[("username", "alice"), ("password", "set by the admin")],
        )
        .await;
    assert_eq!(here.get("/").await.status, 303);
    here.login("alice", "set by the admin").await;

    // A GeneralUser may not manage users.
    let csrf = here.session_csrf().await;
    let r = here
        .post_form(
            "/settings/management/users/role",
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("role", "administrator"),
            ],
        )
        .await;
    assert_eq!(r.status, 403);

    // Roles: never no Administrator.
    let refused = admin
        .submit(
            USERS,
            "/settings/management/users/role",
            &[("username", "admin"), ("role", "general_user")],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        by_id(&refused, "users-error")
            .unwrap_or_default()
            .contains("last Administrator"),
        "{}",
        refused.body
    );
    admin
        .submit_done(
            USERS,
            "/settings/management/users/role",
            &[("username", "alice"), ("role", "network_admin")],
        )
        .await;
    assert_eq!(
        here.get("/settings").await.status,
        200,
        "the new role applies at once"
    );
    assert!(row(&admin.get(USERS).await, "user-admin").contains("Administrator"));

    // The same through the API.
    let csrf = admin.session_csrf().await;
    let put = |path: &str, body: Value| {
        admin
            .client
            .put(server.url(path))
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    let r = put(
        "/api/v1/users/admin/role",
        json!({ "role": "general_user" }),
    )
    .await
    .expect("put");
    assert_eq!(r.status(), 409);
    let r = put(
        "/api/v1/users/alice/role",
        json!({ "role": "administrator" }),
    )
    .await
    .expect("put");
    assert_eq!(r.status(), 200);
    let r = put(
        "/api/v1/users/admin/role",
        json!({ "role": "network_admin" }),
    )
    .await
    .expect("put");
    assert_eq!(r.status(), 200, "another Administrator remains");
    let r = put(
        "/api/v1/users/nobody/password",
        json!({ "password": "long enough!" }),
    )
    .await
    .expect("put");
    assert_eq!(r.status(), 403, "no longer an Administrator");
    let r = put(
        "/api/v1/me/password",
        json!({ "current_password": "wrong", "new_password": "another good one" }),
    )
    .await
    .expect("put");
    assert_eq!(r.status(), 400);
    let r = put(
        "/api/v1/me/password",
        json!({ "current_password": ADMIN_PASSWORD, "new_password": "another good one" }),
    )
    .await
    .expect("put");
    assert_eq!(r.status(), 204);

    let log = here.get("/settings/management/audit-log").await;
    for action in ["password_change", "user_password_reset", "user_role"] {
        assert!(log.body.contains(action), "{action}: {}", log.body);
    }
    for secret in [
        "a new good password",
        "set by the admin",
        "another good one",
    ] {
        assert!(!log.body.contains(secret));
    }
}
