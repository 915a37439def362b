//! Test kit: start hikyaku on free ports with a temporary data directory,
//! sign in through the real pages, and poll for conditions with a deadline.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use hikyaku::clock::{OffsetClock, SharedClock};
use hikyaku::config::Config;

pub struct TestServer {
    pub base: String,
    pub setup_url: Option<String>,
    pub config: Config,
    pub clock: Arc<OffsetClock>,
    pub dir: tempfile::TempDir,
    running: Option<hikyaku::app::Running>,
}

/// A config that listens on free loopback ports and keeps data in `dir`.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    config.web.listen = "127.0.0.1:0".parse().expect("address");
    config.intake.listen = vec!["127.0.0.1:0".parse().expect("address")];
    config
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = test_config(dir.path());
        Self::start_with(dir, config, Arc::new(OffsetClock::default())).await
    }

    pub async fn start_with(
        dir: tempfile::TempDir,
        config: Config,
        clock: Arc<OffsetClock>,
    ) -> Self {
        let shared: SharedClock = clock.clone();
        let running = hikyaku::app::start(config.clone(), shared)
            .await
            .expect("hikyaku starts");
        let base = format!("http://{}", running.web_addr);
        Self {
            base,
            setup_url: running.setup_url.clone(),
            config,
            clock,
            dir,
            running: Some(running),
        }
    }

    /// Stops the server and starts it again over the same data directory.
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        Self::start_with(dir, self.config.clone(), self.clock.clone()).await
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(15), running.done).await;
        }
    }

    /// The SMTP intake listeners (plain first, as configured).
    pub fn smtp_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.running
            .as_ref()
            .map(|r| r.smtp_addrs.clone())
            .unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Completes first-time setup with the printed link: user `admin`.
    pub async fn setup_admin(&self) -> Browser {
        let b = Browser::new(self);
        let url = self.setup_url.clone().expect("a setup link on first start");
        let page = b.get(&url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.csrf();
        let token = url.split("token=").nth(1).expect("token").to_string();
        let done = b
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
        assert_eq!(done.status, 200, "{}", done.body);
        b.login("admin", ADMIN_PASSWORD).await;
        b
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown.cancel();
        }
    }
}

pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// A response with its body read.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// The first `name="csrf"` value in the page.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self
            .body
            .find(marker)
            .map(|i| i + marker.len())
            .expect("a csrf field in the page");
        let end = self.body[start..].find('"').expect("end of csrf") + start;
        self.body[start..end].to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A cookie-keeping HTTP client that does not follow redirects.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub lang: &'static str,
}

impl Browser {
    pub fn new(server: &TestServer) -> Self {
        Self::with_lang(server, "en")
    }

    pub fn with_lang(server: &TestServer, lang: &'static str) -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            client,
            base: server.base.clone(),
            lang,
        }
    }

    fn abs(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn read(r: reqwest::Response) -> Page {
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = r.text().await.unwrap_or_default();
        Page {
            status,
            location,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::read(
            self.client
                .get(self.abs(path))
                .header("accept-language", self.lang)
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Page {
        Self::read(
            self.client
                .post(self.abs(path))
                .header("accept-language", self.lang)
                .form(form)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    /// Posts a form with the CSRF token of the page at `from`.
    pub async fn submit(&self, from: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get(from).await.csrf();
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        self.post_form(path, &form).await
    }

    /// A change that succeeds: the answer is a redirect (303) back to a
    /// page with its notice (`?done=`), which is then read.
    pub async fn submit_done(&self, from: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let r = self.submit(from, path, fields).await;
        assert_eq!(r.status, 303, "{path}: {}", r.body);
        let to = r.location.unwrap_or_default();
        assert!(to.contains("?done="), "{path} redirected to {to}");
        self.get(&to).await
    }

    pub async fn login(&self, user: &str, password: &str) -> Page {
        let page = self.get("/login").await;
        let csrf = page.csrf();
        let r = self
            .post_form(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("username", user),
                    ("password", password),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "login as {user} failed: {}", r.body);
        r
    }

    /// The session's CSRF token (from any signed-in page).
    pub async fn session_csrf(&self) -> String {
        self.get("/").await.csrf()
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a user through the Remote UI as an Administrator.
pub async fn add_user(admin: &Browser, name: &str, role: &str) {
    let r = admin
        .submit(
            "/settings/management/users",
            "/settings/management/users",
            &[
                ("username", name),
                ("password", ADMIN_PASSWORD),
                ("role", role),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
}

/// A small HTTP proxy that only does `CONNECT` (as HTTPS clients use it), on
/// 127.0.0.1: it records every tunnel's target, can demand Basic credentials
/// (407 otherwise), and can be stopped to play a dead proxy.
pub struct ConnectProxy {
    pub addr: std::net::SocketAddr,
    targets: Arc<std::sync::Mutex<Vec<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ConnectProxy {
    /// Starts the proxy; `credentials` = the (user, password) it demands.
    pub async fn start(credentials: Option<(&str, &str)>) -> Self {
        use base64::Engine;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let targets = Arc::new(std::sync::Mutex::new(Vec::new()));
        let expected = credentials
            .map(|(u, p)| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
        let seen = targets.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = seen.clone();
                let expected = expected.clone();
                tokio::spawn(async move {
                    let _ = tunnel(client, seen, expected).await;
                });
            }
        });
        Self {
            addr,
            targets,
            task: Some(task),
        }
    }

    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// How many CONNECT requests arrived (accepted or not).
    pub fn connects(&self) -> usize {
        self.targets.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// The `host:port` of every CONNECT request, in order.
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Stops listening: new connections to the port are refused.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn tunnel(
    mut client: tokio::net::TcpStream,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    expected: Option<String>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "CONNECT" {
        client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    }
    if let Ok(mut s) = seen.lock() {
        s.push(target.to_string());
    }
    if let Some(expected) = expected {
        // The scheme is case-insensitive, the credentials are not.
        let ok = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authorization"))
            .and_then(|(_, v)| v.trim().split_once(' '))
            .is_some_and(|(scheme, creds)| {
                scheme.eq_ignore_ascii_case("basic") && creds.trim() == expected
            });
        if !ok {
            client
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                .await?;
            return Ok(());
        }
    }
    let mut upstream = match tokio::net::TcpStream::connect(target).await {
        Ok(s) => s,
        Err(_) => {
            client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
