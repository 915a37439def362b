//! A real browser (headless Chromium over WebDriver) walks the Remote UI as
//! the seed's administrator does, in Japanese and in English, and saves
//! screenshots as test artifacts (`$HIKYAKU_ARTIFACTS`, default
//! `target/artifacts`).

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use testkit::{ADMIN_PASSWORD, TestServer, poll_until};

/// A chromedriver process and a WebDriver session on it.
pub struct Chrome {
    pub client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Chrome {
    /// Starts chromedriver and a headless Chromium. Outside CI, a machine
    /// without them skips browser tests (`scripts/test` installs them).
    pub async fn start(lang: &str) -> Option<Chrome> {
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(driver_bin) = driver_bin else {
            assert!(
                std::env::var("CI").is_err(),
                "chromedriver is missing in CI: scripts/test installs chromium-driver"
            );
            eprintln!("skipping browser test: chromedriver not installed (run scripts/test)");
            return None;
        };
        let port = testkit::free_port();
        let driver = tokio::process::Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                    "--ignore-certificate-errors",
                    format!("--lang={lang}"), format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": { "intl.accept_languages": lang },
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen.
        let client = poll_until(Duration::from_secs(30), "a WebDriver session", async || {
            ClientBuilder::rustls()
                .expect("tls")
                .capabilities(caps.clone())
                .connect(&url)
                .await
        })
        .await
        .unwrap_or_else(|e| panic!("cannot start a WebDriver session: {e}"));
        Some(Chrome {
            client,
            driver,
            _profile: profile,
        })
    }

    pub async fn shot(&self, name: &str) {
        let dir = std::env::var("HIKYAKU_ARTIFACTS")
            .unwrap_or_else(|_| format!("{}/../../target/artifacts", env!("CARGO_MANIFEST_DIR")));
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(format!("{dir}/{name}.png"), png);
        }
    }

    /// Clicks `css`. A button or link loads a page: then this returns once
    /// the old page is gone, so what is read next is the new page (WebDriver's
    /// click does not wait for the navigation it starts).
    pub async fn click(&self, css: &str) {
        let el = self
            .client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        let tag = el.tag_name().await.unwrap_or_default().to_ascii_lowercase();
        let kind = el.attr("type").await.ok().flatten().unwrap_or_default();
        let navigates = tag == "a" || tag == "button" || (tag == "input" && kind == "submit");
        let old_page = self.client.find(Locator::Css("html")).await.ok();
        el.click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
        if let (true, Some(old)) = (navigates, old_page) {
            // A stale <html> element means the new page replaced the old one.
            // No page after 15 s is not an error here: what is read next
            // tells what went wrong.
            let _ = poll_until(Duration::from_secs(15), "the next page", async || {
                old.tag_name().await.is_err()
            })
            .await;
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let el = self
            .client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        el.clear().await.ok();
        el.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap_or_default()
    }

    pub async fn source(&self) -> String {
        self.client.source().await.unwrap_or_default()
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

/// Signs in through the login page.
pub async fn sign_in(c: &Chrome, base: &str, user: &str) {
    c.client
        .goto(&format!("{base}/login"))
        .await
        .expect("login page");
    c.fill("#username", user).await;
    c.fill("#password", ADMIN_PASSWORD).await;
    c.click("#login").await;
    c.client
        .wait()
        .for_element(Locator::Css("#nav-portal"))
        .await
        .expect("signed in");
}

async fn walk(lang: &str, labels: &[&str]) {
    let server = TestServer::start().await;
    drop(server.setup_admin().await);
    let Some(c) = Chrome::start(lang).await else {
        return;
    };
    sign_in(&c, &server.base, "admin").await;
    let portal = c.source().await;
    assert!(
        portal.contains(labels[0]),
        "portal title {} in {lang}",
        labels[0]
    );
    c.shot(&format!("{lang}-01-portal")).await;
    c.click("#portal-settings").await;
    c.client
        .wait()
        .for_element(Locator::Css("#menu-oauth-microsoft"))
        .await
        .expect("settings menu");
    let menu = c.source().await;
    for label in &labels[1..4] {
        assert!(
            menu.contains(label),
            "{label} on the settings menu ({lang})"
        );
    }
    c.shot(&format!("{lang}-02-settings")).await;
    c.click("#menu-oauth-microsoft").await;
    c.client
        .wait()
        .for_element(Locator::Css("#connection-status"))
        .await
        .expect("microsoft page");
    let ms = c.source().await;
    for label in &labels[4..7] {
        assert!(ms.contains(label), "{label} on the Microsoft page ({lang})");
    }
    c.shot(&format!("{lang}-03-oauth-microsoft")).await;
    c.click("#edit").await;
    c.client
        .wait()
        .for_element(Locator::Css("#endpoint"))
        .await
        .expect("edit page");
    assert!(
        c.source().await.contains(labels[7]),
        "{} on Edit Basic Settings ({lang})",
        labels[7]
    );
    c.shot(&format!("{lang}-04-oauth-microsoft-edit")).await;
    c.click("#cancel").await;
    c.client
        .goto(&format!("{}/settings", server.base))
        .await
        .expect("settings");
    c.click("#menu-oauth-google").await;
    c.client
        .wait()
        .for_element(Locator::Css("#token-status"))
        .await
        .expect("google page");
    assert!(
        c.source().await.contains(labels[8]),
        "{} on the Google page ({lang})",
        labels[8]
    );
    c.shot(&format!("{lang}-05-oauth-google")).await;
    // The other areas of the menu, for the screenshots of the README.
    for (path, name) in [
        ("/settings/send/email", "07-email-settings"),
        ("/jobs", "08-job-history"),
        ("/settings/management/datetime", "09-datetime"),
        ("/settings/management/ca-certificates", "10-ca-certificates"),
        ("/settings/management/users", "11-users"),
        ("/settings/management/audit-log", "12-audit-log"),
    ] {
        c.client
            .goto(&format!("{}{path}", server.base))
            .await
            .expect("page");
        c.client
            .wait()
            .for_element(Locator::Css("h1"))
            .await
            .expect("page heading");
        c.shot(&format!("{lang}-{name}")).await;
    }
    c.click("#logout").await;
    c.client
        .wait()
        .for_element(Locator::Css("#username"))
        .await
        .expect("back at the login page");
    c.shot(&format!("{lang}-06-logged-out")).await;
    // The session is gone: the Portal sends us back to the login page.
    c.client.goto(&server.base).await.expect("portal");
    c.client
        .wait()
        .for_element(Locator::Css("#username"))
        .await
        .expect("login required after logout");
    c.close().await;
}

#[tokio::test]
async fn browser_walks_the_seed_screens_in_japanese() {
    walk(
        "ja",
        &[
            "リモートUIのポータル画面",
            "送信",
            "OAuth 2.0(Microsoft)の設定",
            "OAuth 2.0(Google)の設定",
            "基本設定",
            "サーバーの接続状況",
            "トークンの稼働状況",
            "Microsoft Entra ID認可サーバーのエンドポイント",
            "認可用情報",
        ],
    )
    .await;
}

#[tokio::test]
async fn browser_walks_the_seed_screens_in_english() {
    walk(
        "en",
        &[
            "Remote UI Portal",
            "Send",
            "OAuth 2.0 (Microsoft) Settings",
            "OAuth 2.0 (Google) Settings",
            "Basic Settings",
            "Server Connection Status",
            "Token Status",
            "Microsoft Entra ID Authorization Server Endpoint",
            "Authorization Information",
        ],
    )
    .await;
}

/// The seed's Microsoft steps 1–14 in a real browser, in Japanese: the user
/// code is entered on fakecloud's sign-in page like a person would.
#[tokio::test]
async fn browser_microsoft_seed_flow_in_japanese() {
    use crate::oauth_flow::{MAILBOX, fakecloud, server_for, trust};
    let fc = fakecloud(fakecloud::CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    let Some(c) = Chrome::start("ja").await else {
        return;
    };
    // Steps 1–3.
    sign_in(&c, &server.base, "admin").await;
    c.click("#portal-settings").await;
    c.click("#menu-oauth-microsoft").await;
    // Steps 4–8.
    c.click("#edit").await;
    c.client
        .wait()
        .for_element(Locator::Css("#endpoint"))
        .await
        .expect("edit page");
    assert!(c.source().await.contains("基本設定の編集"));
    c.click("#enabled").await;
    c.fill("#endpoint", &fc.entra_endpoint("organizations"))
        .await;
    c.fill("#client_id", "ms-client-id").await;
    c.shot("ja-10-microsoft-edit-filled").await;
    c.click("#ok").await;
    // Steps 9–10: Refresh, 成功.
    c.click("#refresh").await;
    let status = c.text("#connection-status").await;
    assert_eq!(status, "成功", "サーバーの接続状況");
    let code = c.text("#user-code").await;
    let page = c.source().await;
    for label in [
        "メッセージ",
        "ユーザーコード",
        "ユーザーコードの有効期限",
        "認可処理中",
    ] {
        assert!(page.contains(label), "{label}");
    }
    c.shot("ja-11-microsoft-user-code").await;
    // Step 11: the link, the code, the mailbox's sign-in.
    let link = c.text("#verification-uri").await;
    c.client.goto(&link).await.expect("sign-in page");
    c.fill("#otc", &code).await;
    c.fill("#mailbox", MAILBOX).await;
    c.shot("ja-12-microsoft-sign-in").await;
    c.click("#approve").await;
    // Steps 12–13: back, Refresh until 稼働中.
    c.client
        .goto(&format!("{}/settings/send/oauth/microsoft", server.base))
        .await
        .expect("back");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        c.click("#refresh").await;
        if c.text("#token-status").await == "稼働中" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "トークンの稼働状況 never became 稼働中"
        );
        // Refresh is pressed at a person's pace, as the seed's step does.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(c.text("#mailbox").await, MAILBOX);
    c.shot("ja-13-microsoft-active").await;
    // Step 14.
    c.click("#logout").await;
    c.client
        .wait()
        .for_element(Locator::Css("#username"))
        .await
        .expect("logged out");
    c.close().await;
}

/// The seed's Google Step 2 in a real browser, in Japanese; the pasted value
/// is the redirect URL fakecloud's consent returns.
#[tokio::test]
async fn browser_google_seed_flow_in_japanese() {
    use crate::oauth_flow::{GMAIL, fakecloud, server_for, trust};
    let fc = fakecloud(fakecloud::CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    let Some(c) = Chrome::start("ja").await else {
        return;
    };
    sign_in(&c, &server.base, "admin").await;
    c.click("#portal-settings").await;
    c.click("#menu-oauth-google").await;
    c.click("#edit").await;
    c.client
        .wait()
        .for_element(Locator::Css("#client_id"))
        .await
        .expect("edit page");
    let page = c.source().await;
    for label in [
        "OAuth 2.0(Google)を使用する",
        "クライアントID",
        "クライアントシークレット",
    ] {
        assert!(page.contains(label), "{label}");
    }
    c.click("#enabled").await;
    c.fill("#client_id", "google-client-id.apps.googleusercontent.com")
        .await;
    c.fill("#client_secret", "google-client-secret").await;
    c.click("#ok").await;
    c.click("#refresh").await;
    assert_eq!(c.text("#connection-status").await, "成功");
    c.click("#register").await;
    c.client
        .wait()
        .for_element(Locator::Css("#authorization-code"))
        .await
        .expect("register page");
    let page = c.source().await;
    for label in ["認可用情報の登録", "Google認可サーバー用URL", "認可コード"] {
        assert!(page.contains(label), "{label}");
    }
    c.shot("ja-20-google-register").await;
    let url = c.text("#google-auth-url").await;
    let redirect = fc.google_consent(&url, GMAIL).expect("consent");
    c.fill("#authorization-code", &redirect).await;
    c.click("#ok").await;
    c.click("#refresh").await;
    assert_eq!(c.text("#token-status").await, "稼働中");
    assert_eq!(c.text("#mailbox").await, GMAIL);
    c.shot("ja-21-google-active").await;
    c.click("#logout").await;
    c.client
        .wait()
        .for_element(Locator::Css("#username"))
        .await
        .expect("logged out");
    c.close().await;
}
