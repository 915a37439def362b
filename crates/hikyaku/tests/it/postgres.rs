//! hikyaku on PostgreSQL (`store.url = "postgres://…"`): set up through the
//! Remote UI, a message submitted over SMTP is delivered through fakecloud;
//! with the database stopped the intake answers `451 4.3.0` and
//! `/api/v1/health` answers 503; started again, hikyaku recovers by itself.

use std::net::SocketAddr;
use std::time::Duration;

use testkit::postgres::Cluster;
use testkit::{Client, PASSWORD, SUBMITTER, eventually, message, prepare_with, test_config};

/// One SMTP transaction: the reply to the end of data (or the refusal
/// before it), or the transport error's text.
async fn submit(addr: SocketAddr, key: &str) -> String {
    let attempt = async {
        let (mut c, greeting) = Client::connect(addr).await?;
        if !greeting.starts_with("220") {
            return Ok(greeting);
        }
        c.login_plain(SUBMITTER, PASSWORD).await?;
        let from = "scanner@printer.local";
        let sent = c
            .send(from, "boss@example.com", &message(from, key, key, 200))
            .await?;
        c.quit().await;
        Ok::<_, std::io::Error>(sent.reply)
    };
    match tokio::time::timeout(Duration::from_secs(30), attempt).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => format!("transport error: {e}"),
        Err(_) => "timed out".into(),
    }
}

async fn health(base: &str) -> u16 {
    match reqwest::get(format!("{base}/api/v1/health")).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivers_on_postgresql_and_recovers_when_the_database_returns() {
    let cluster = Cluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.create_database().unwrap();
    let fc = testkit::start_fakecloud().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.store.url = url.clone();
    let (server, _admin) = prepare_with(&fc, dir, config).await;
    // The SQLite file was never made: everything lives in PostgreSQL.
    assert!(
        !server.dir.path().join("hikyaku.sqlite").exists(),
        "no SQLite file on PostgreSQL"
    );
    let addr = server.smtp_addrs()[0];
    assert_eq!(health(&server.base).await, 200);

    let r = submit(addr, "before").await;
    assert!(r.starts_with("250"), "accepted on PostgreSQL: {r}");
    assert_eq!(fc.wait_for_inbox(1, Duration::from_secs(30)).await.len(), 1);
    // The job is PostgreSQL's row.
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the job sent in PostgreSQL",
        || async {
            let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'sent'")
                .fetch_one(&db)
                .await
                .ok()?;
            (sent == 1).then_some(())
        },
    )
    .await;
    db.close().await;

    // A session that logged in before the database went away.
    let (mut open, _) = Client::connect(addr).await.unwrap();
    open.login_plain(SUBMITTER, PASSWORD).await.unwrap();
    cluster.stop().unwrap();
    // Nothing can be stored: a temporary refusal, the client keeps the
    // message and tries again later.
    let from = "scanner@printer.local";
    let r = open
        .send(
            from,
            "boss@example.com",
            &message(from, "while-down", "while-down", 200),
        )
        .await
        .unwrap()
        .reply;
    assert!(
        r.starts_with("451 4.3.0"),
        "the database away: 451 4.3.0, got {r}"
    );
    open.quit().await;
    // AUTH reads the submitters: a temporary failure too.
    let r = submit(addr, "while-down-auth").await;
    assert!(
        r.contains("454 4.7.0"),
        "the database away: 454 4.7.0 at AUTH, got {r}"
    );
    eventually(Duration::from_secs(15), "health 503", || async {
        (health(&server.base).await == 503).then_some(())
    })
    .await;

    cluster.restart().unwrap();
    eventually(Duration::from_secs(30), "health 200 again", || async {
        (health(&server.base).await == 200).then_some(())
    })
    .await;
    let r = submit(addr, "after").await;
    assert!(
        r.starts_with("250"),
        "accepted again without a restart: {r}"
    );
    let inbox = fc.wait_for_inbox(2, Duration::from_secs(30)).await;
    assert_eq!(inbox.len(), 2, "the message after recovery is delivered");
}
