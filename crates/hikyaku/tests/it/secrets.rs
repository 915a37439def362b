//! No secret ever reaches the logs, the pages or the API: the whole Microsoft
//! and Google set-up, a refresh and a delivery run with every log line at
//! DEBUG captured, and the captured text is searched for what fakecloud issued.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::oauth_flow::{authorize_google, authorize_microsoft, fakecloud, server_for};
use crate::sending::{add_submitter, point_smtp, submit};

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_never_appear_in_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    // Other tests of this binary may log into it too; that only widens the search.
    let _ = tracing::subscriber::set_global_default(subscriber);

    let fc = fakecloud(fakecloud::CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = authorize_microsoft(&server, &fc).await;
    point_smtp(&admin, "microsoft", fc.exchange_smtp_addr(), "starttls").await;
    add_submitter(&admin, "microsoft").await;
    authorize_google(&server, &fc, &admin).await;
    // A forced refresh and a delivery (XOAUTH2 with the access token).
    let r = admin
        .submit(
            "/settings/send/oauth/microsoft",
            "/settings/send/oauth/microsoft/refresh-token",
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        submit(&server, "log check", "body")
            .await
            .starts_with("250")
    );
    assert_eq!(fc.wait_for_inbox(1, Duration::from_secs(15)).await.len(), 1);

    let logs = String::from_utf8_lossy(&capture.0.lock().expect("logs").clone()).into_owned();
    assert!(
        logs.contains("DEBUG") || logs.contains("INFO"),
        "the capture works"
    );
    // What fakecloud issues: access tokens (EwB…, ya29.a0…), refresh tokens
    // (M.C5…, 1//0…), device codes (DAQABIQEAAAB…), Google codes (4/0A…), the client secret.
    for needle in [
        "EwB",
        "ya29.a0",
        "M.C5",
        "1//0",
        "DAQABIQEAAAB",
        "4/0A",
        "4%2F0A",
        "google-client-secret",
        "correct horse battery",
    ] {
        assert!(!logs.contains(needle), "{needle} found in the logs");
    }
}
