//! hikyaku in-process on free loopback ports with a temporary data
//! directory, and first-time setup through the real pages.

use std::sync::Arc;
use std::time::Duration;

use hikyaku::clock::{OffsetClock, SharedClock};
use hikyaku::config::Config;

use crate::browser::Browser;

/// hikyaku started in-process (`hikyaku::app::start`) over its own data
/// directory, with a clock the test can move.
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
