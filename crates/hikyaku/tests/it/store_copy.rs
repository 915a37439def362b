//! `hikyaku store copy`: a SQLite installation with an authorized account,
//! history and queued jobs moves to PostgreSQL; hikyaku started on the
//! PostgreSQL URL delivers the queued jobs with the copied token (no new
//! sign-in), shows the history, and a second copy into the now non-empty
//! database is refused.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use testkit::{ADMIN_PASSWORD, Browser, Client, PASSWORD, SUBMITTER, TestServer, message};

fn hikyaku(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hikyaku"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("HIKYAKU_CONFIG")
        .env_remove("HIKYAKU_MASTER_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("hikyaku runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The source and target counts of `table` in the copy's table.
fn counts(out: &str, table: &str) -> Option<(i64, i64)> {
    out.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next()? == table).then_some(())?;
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_installation_moves_from_sqlite_to_postgresql_and_keeps_sending() {
    let fc = testkit::start_fakecloud().await;
    let (mut server, _admin) = testkit::prepare(&fc, tempfile::tempdir().unwrap()).await;
    let data = server.dir.path().to_path_buf();
    let config = data.join("hikyaku.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();

    // History: one message delivered before the move.
    let addr = server.smtp_addrs()[0];
    let (mut c, _) = Client::connect(addr).await.unwrap();
    c.login_plain(SUBMITTER, PASSWORD).await.unwrap();
    let from = "scanner@printer.local";
    let sent = c
        .send(
            from,
            "boss@example.com",
            &message(from, "sent-before-the-move", "x", 200),
        )
        .await
        .unwrap();
    assert!(sent.reply.starts_with("250"), "{}", sent.reply);
    c.quit().await;
    fc.wait_for_inbox(1, Duration::from_secs(30)).await;

    let url = testkit::postgres::database();
    // Not while the server runs over the SQLite store.
    let busy = hikyaku(&config, &["store", "copy", "--to", &url]);
    assert!(
        !busy.status.success() && text(&busy).contains("a hikyaku server is using"),
        "{}",
        text(&busy)
    );

    server.stop().await;
    // Queued while no server runs: written to the SQLite queue.
    for n in 1..=3 {
        let subject = format!("queued-{n}");
        let out = hikyaku(
            &config,
            &[
                "send",
                "--to",
                "boss@example.com",
                "--subject",
                &subject,
                "--body",
                "scan",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }

    let copied = hikyaku(&config, &["store", "copy", "--to", &url]);
    let out = text(&copied);
    assert!(copied.status.success(), "{out}");
    assert_eq!(counts(&out, "jobs"), Some((4, 4)), "{out}");
    // A sent message's body is not kept; the three waiting ones are.
    assert_eq!(counts(&out, "messages"), Some((3, 3)), "{out}");
    assert_eq!(counts(&out, "accounts"), Some((2, 2)), "{out}");
    assert_eq!(counts(&out, "submitters"), Some((1, 1)), "{out}");
    assert_eq!(counts(&out, "ca_certificates"), Some((1, 1)), "{out}");
    assert!(
        out.contains("every table has the same number of rows"),
        "{out}"
    );
    assert!(!out.contains("MISMATCH"), "{out}");

    // The access token the copy carries has run out: delivery works only if
    // the copied refresh token opens with the same master.key and is
    // accepted, with no new sign-in.
    fc.expire_access_tokens();
    let refreshes = fc.refresh_count();
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let mut pg_config = server.config.clone();
    pg_config.store.url = url.clone();
    let mut pg = TestServer::start_with(dir, pg_config, Arc::new(Default::default())).await;
    assert!(pg.setup_url.is_none(), "the copied users need no setup");
    let inbox = fc.wait_for_inbox(4, Duration::from_secs(60)).await;
    let mut subjects: Vec<String> = inbox
        .iter()
        .filter_map(|m| {
            let body = String::from_utf8_lossy(&m.data).into_owned();
            body.lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "load sent-before-the-move",
            "queued-1",
            "queued-2",
            "queued-3"
        ],
        "each queued job delivered once from PostgreSQL"
    );
    assert!(
        fc.refresh_count() > refreshes,
        "the copied refresh token was used"
    );
    // The administrator signs in with the copied password and sees the
    // history and an Active token.
    let admin = Browser::new(&pg);
    admin.login("admin", ADMIN_PASSWORD).await;
    let jobs = admin.get("/jobs").await;
    assert!(jobs.body.contains("sent-before-the-move"), "{}", jobs.body);
    let account = admin.get("/settings/send/oauth/microsoft").await;
    assert!(account.body.contains("Active"), "{}", account.body);
    pg.stop().await;

    // The database now holds data: a second copy is refused, nothing changed.
    let again = hikyaku(&config, &["store", "copy", "--to", &url]);
    assert!(
        !again.status.success() && text(&again).contains("already holds hikyaku data"),
        "{}",
        text(&again)
    );
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'sent'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(sent, 4);
    db.close().await;
}
