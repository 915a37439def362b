//! fakecloud, and a data directory whose Microsoft account is Active,
//! prepared in-process through the Remote UI like the printer manual's steps.

use std::sync::Arc;
use std::time::Duration;

use fakecloud::{FakeCloud, Options};

use crate::browser::Browser;
use crate::server::{ADMIN_PASSWORD, TestServer, test_config};
use crate::wait::eventually;

/// The mailbox the Microsoft account signs in as.
pub const MAILBOX: &str = "printer@contoso.example";
/// The SMTP submitter the clients log in as (AUTH PLAIN).
pub const SUBMITTER: &str = "loadgen";
/// The submitter's password.
pub const PASSWORD: &str = ADMIN_PASSWORD;

/// fakecloud on free ports, with a short device-code poll interval.
pub async fn start_fakecloud() -> FakeCloud {
    FakeCloud::start(Options {
        device_poll_interval_secs: 1,
        ..Options::default()
    })
    .await
    .expect("fakecloud starts")
}

/// The text of the element with `id` in an HTML page.
fn by_id(body: &str, id: &str) -> Option<String> {
    let at = body.find(&format!("id=\"{id}\""))?;
    let start = body[at..].find('>')? + at + 1;
    let end = body[start..].find('<')? + start;
    Some(body[start..end].trim().to_string())
}

/// Starts hikyaku in-process over `dir` and sets it up through the Remote UI:
/// first Administrator, fakecloud's CA trusted (stored in the data directory,
/// so a later process trusts it too), Microsoft authorized (token Active),
/// upstream SMTP = fakecloud's Exchange listener with STARTTLS, and the
/// submitter [`SUBMITTER`].
pub async fn prepare(fc: &FakeCloud, dir: tempfile::TempDir) -> (TestServer, Browser) {
    let config = test_config(dir.path());
    prepare_with(fc, dir, config).await
}

/// [`prepare`] with a configuration of the caller's (e.g. a `store.url`).
pub async fn prepare_with(
    fc: &FakeCloud,
    dir: tempfile::TempDir,
    config: hikyaku::config::Config,
) -> (TestServer, Browser) {
    let server = TestServer::start_with(
        dir,
        config,
        Arc::new(hikyaku::clock::OffsetClock::default()),
    )
    .await;
    let admin = server.setup_admin().await;
    let ca = "/settings/management/ca-certificates";
    let r = admin.submit(ca, ca, &[("pem", &fc.ca_pem())]).await;
    assert_eq!(r.status, 303, "trust the CA: {}", r.body);
    let edit = "/settings/send/oauth/microsoft/edit";
    let r = admin
        .submit(
            edit,
            edit,
            &[
                ("enabled", "on"),
                ("verify_cert", "on"),
                ("endpoint", &fc.entra_endpoint("organizations")),
                ("client_id", &fc.options().ms_client_id),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "Microsoft settings: {}", r.body);
    let page = "/settings/send/oauth/microsoft";
    let r = admin
        .submit(page, "/settings/send/oauth/microsoft/refresh", &[])
        .await;
    assert_eq!(r.status, 303, "refresh: {}", r.body);
    let status = admin.get(page).await;
    let code = by_id(&status.body, "user-code").expect("a user code is shown");
    fc.approve_user_code(&code, MAILBOX).expect("approve");
    eventually(Duration::from_secs(15), "token Active", || async {
        let p = admin.get(page).await;
        (by_id(&p.body, "token-status").as_deref() == Some("Active")).then_some(())
    })
    .await;
    let email = "/settings/send/email";
    let port = fc.exchange_smtp_addr().port().to_string();
    let r = admin
        .submit(
            email,
            email,
            &[
                ("provider", "microsoft"),
                ("smtp_host", "localhost"),
                ("smtp_port", &port),
                ("smtp_security", "starttls"),
                ("sender", ""),
                ("is_default", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "E-mail Settings: {}", r.body);
    let r = admin
        .submit(
            email,
            "/settings/send/submitters",
            &[
                ("name", SUBMITTER),
                ("password", PASSWORD),
                ("provider", "microsoft"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "submitter: {}", r.body);
    (server, admin)
}

/// [`prepare`] in a new temporary directory, then stops the in-process
/// server and returns the directory for the binary.
pub async fn prepare_data_dir(fc: &FakeCloud) -> tempfile::TempDir {
    let (mut server, _admin) = prepare(fc, tempfile::tempdir().expect("tempdir")).await;
    server.stop().await;
    std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tempdir"))
}
