//! The PostgreSQL engine against a real server: the throw-away cluster of
//! `testkit::postgres` (a test fails, never skips, when it cannot start).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{PgStore, StoreUrl, StoreUrlError};
use crate::queue::arrivals::{Arrivals, YOUNG};
use crate::queue::{JobState, JobStore as _, StoreFailure as _, conformance};

/// A store on a fresh database of the shared test cluster.
async fn fresh() -> (PgStore, ()) {
    let url = testkit::postgres::database();
    (PgStore::connect(&url, "instance-a").await.unwrap(), ())
}

/// Two instances (two lease owners) on one fresh database.
async fn pair() -> (PgStore, PgStore, ()) {
    let url = testkit::postgres::database();
    let a = PgStore::connect(&url, "instance-a").await.unwrap();
    let b = PgStore::connect(&url, "instance-b").await.unwrap();
    (a, b, ())
}

/// The PostgreSQL engine passes the queue's conformance suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_engine_conforms() {
    conformance::all(fresh).await;
}

/// Two instances share one queue: no job is claimed twice, and a lease
/// taken over fences the old owner's late writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_share_one_queue() {
    conformance::instances(pair).await;
}

/// The group commit plans its statements once per connection, at its
/// first batch (and again after each ANALYZE): the plan of the jobs' ends
/// finds the jobs and the bodies to remove by key, never by reading every
/// job in flight, or all of `messages`, with every batch.
#[tokio::test]
async fn the_group_commit_finds_ended_jobs_and_bodies_by_key_whatever_the_queue_held() {
    let (store, ()) = fresh().await;
    // A queue with a short history, as counted by autovacuum's ANALYZE:
    // one job in fifty in flight with its body, the others sent.
    sqlx::raw_sql(
        "INSERT INTO jobs (id, submitter, source, mail_from, rcpt_to, size, state, attempts, lease_owner, next_attempt_at, created_at, updated_at) \
         SELECT 'j' || g, 's', '127.0.0.1', 'a@example.com', '[]', 10, CASE WHEN g % 50 = 0 THEN 'sending' ELSE 'sent' END, 1, \
         CASE WHEN g % 50 = 0 THEN 'other' END, 0, 0, 0 FROM generate_series(1, 200) g; \
         INSERT INTO messages (job_id, body) SELECT 'j' || g, '\\x00'::BYTEA FROM generate_series(50, 200, 50) g; \
         ANALYZE jobs; ANALYZE messages",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let mut c = store.batch.pool().acquire().await.unwrap();
    let prepare = format!(
        "PREPARE finish_all(TEXT[], TEXT[], TEXT[], BIGINT[], BIGINT[], BIGINT[], TEXT) AS {}",
        super::batch::FINISH_ALL
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(prepare))
        .execute(&mut *c)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN EXECUTE finish_all('{a}', '{sent}', '{250}', '{1}', '{NULL}', '{1}', 'owner')",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    let plan = plan.join("\n");
    // Each of the batch's rows looked up by key, in `jobs` and in
    // `messages`: not all the jobs in flight, nor a whole table.
    assert!(plan.contains("Index Scan using jobs_pkey"), "{plan}");
    assert!(plan.contains("Index Cond: (id = r.id)"), "{plan}");
    assert!(plan.contains("Index Scan using messages_pkey"), "{plan}");
    assert!(plan.contains("Index Cond: (job_id = "), "{plan}");
    for whole in ["Seq Scan", "Hash Join", "Merge Join"] {
        assert!(!plan.contains(whole), "{plan}");
    }
}

/// An instance of an older release on a database a newer one migrated (a
/// cluster upgraded in part) refuses to start and says what to do.
#[tokio::test]
async fn an_older_release_refuses_a_database_a_newer_one_migrated() {
    let url = testkit::postgres::database();
    let a = PgStore::connect(&url, "a").await.unwrap();
    // What a later release's migration leaves behind.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'a later release', TRUE, '\\x00'::BYTEA, 0)",
    )
    .execute(a.pool())
    .await
    .unwrap();
    let e = PgStore::connect(&url, "b").await.unwrap_err();
    assert!(
        matches!(e, crate::store::StoreError::NewerSchema(9999)),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("newer release") && text.contains("same release on every instance"),
        "says what happened and what to do: {text}"
    );
}

/// The schema matches SQLite's: the seed accounts, and a second start (as
/// another instance would) finds the migrations applied.
#[tokio::test]
async fn the_schema_seeds_the_two_accounts_and_migrates_once() {
    let url = testkit::postgres::database();
    let a = PgStore::connect(&url, "a").await.unwrap();
    let b = PgStore::connect(&url, "b").await.unwrap();
    let rows: Vec<(i64, String, String, bool, i64, String, String)> = sqlx::query_as(
        "SELECT id, provider, name, verify_cert, smtp_port, cloud, send_as FROM accounts ORDER BY id",
    )
    .fetch_all(b.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                1,
                "microsoft".into(),
                "microsoft".into(),
                true,
                587,
                "worldwide".into(),
                "[]".into()
            ),
            (
                2,
                "google".into(),
                "google".into(),
                true,
                587,
                "worldwide".into(),
                "[]".into()
            ),
        ]
    );
    // Every table of SQLite's schema exists here too.
    for table in [
        "users",
        "api_tokens",
        "sessions",
        "setup_tokens",
        "audit_log",
        "accounts",
        "submitters",
        "allowlist",
        "jobs",
        "messages",
        "ca_certificates",
        "settings",
    ] {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = $1",
        )
        .bind(table)
        .fetch_one(a.pool())
        .await
        .unwrap();
        assert_eq!(n, 1, "table {table}");
    }
    // Commits wait for the disk, whatever the server's default.
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(sync, "on");
}

/// A heartbeat keeps a long delivery's lease from being taken over; once
/// taken over, the old owner's heartbeat says so.
#[tokio::test]
async fn a_heartbeat_extends_only_a_lease_still_held() {
    let (a, b, ()) = pair().await;
    a.enqueue(&conformance::job("long"), 100).await.unwrap();
    a.enqueue(&conformance::job("stalled"), 100).await.unwrap();
    assert_eq!(a.claim_due_jobs(100, 200, 2).await.unwrap().len(), 2);
    assert!(a.extend_lease("long", 500).await.unwrap());
    // At 300 only the job without a heartbeat has an expired lease.
    assert_eq!(b.requeue_expired_leases(300, &[]).await.unwrap(), 1);
    let taken = b.claim_due_jobs(300, 900, 5).await.unwrap();
    assert_eq!(taken[0].id, "stalled");
    assert!(!a.extend_lease("stalled", 1_000).await.unwrap());
    assert!(!a.extend_lease("missing", 1_000).await.unwrap());
    assert!(b.extend_lease("stalled", 1_000).await.unwrap());
}

/// The history's search ignores case as SQLite's LIKE does.
#[tokio::test]
async fn the_history_search_finds_the_same_jobs_as_on_sqlite() {
    let (store, ()) = fresh().await;
    let mut j = conformance::job("s1");
    j.subject = Some("Scan From MFP".into());
    store.enqueue(&j, 100).await.unwrap();
    store.enqueue(&conformance::job("s2"), 101).await.unwrap();
    let filter = crate::queue::JobFilter {
        search: Some("scan from".into()),
        ..Default::default()
    };
    let found: Vec<String> = store
        .jobs(&filter, 10, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(found, ["s1"]);
}

/// While the database is down, writes fail as temporary (the intake answers
/// 451 4.3.0) and nothing stored is lost; once it is back, the same store
/// works again without being reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_temporary_and_the_store_reconnects() {
    let cluster = tokio::task::spawn_blocking(testkit::postgres::Cluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = cluster.create_database().unwrap();
    let store = PgStore::connect(&url, "a").await.unwrap();
    store
        .enqueue(&conformance::job("before"), 100)
        .await
        .unwrap();

    let cluster = Arc::new(cluster);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop())
        .await
        .unwrap()
        .unwrap();
    let err = store
        .enqueue(&conformance::job("while-down"), 101)
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err}");
    let err = store.claim_due_jobs(200, 900, 5).await.unwrap_err();
    assert!(err.is_temporary(), "{err}");

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.restart())
        .await
        .unwrap()
        .unwrap();
    // The pool replaces its dead connections by itself.
    let mut again = Err(crate::store::StoreError::NotFound);
    for _ in 0..50 {
        again = store.enqueue(&conformance::job("after"), 102).await;
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    again.unwrap();
    assert_eq!(
        store.job_body("before").await.unwrap(),
        conformance::job("before").body.to_vec()
    );
    assert!(store.job("while-down").await.unwrap_err().is_not_found());
    let ids: Vec<String> = store
        .claim_due_jobs(200, 900, 5)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, ["before", "after"]);
}

/// Two instances × 10 tasks ask for one account's 3 connection slots: never
/// more than 3 are held at once in the cluster, and all 3 get used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_across_instances() {
    let (a, b, ()) = pair().await;
    let in_use = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..20 {
        let store = if t % 2 == 0 { a.clone() } else { b.clone() };
        let (in_use, peak) = (in_use.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let mut sessions = 0;
            while sessions < 3 {
                let Some(slot) = store
                    .acquire_slot(7, 3, Duration::from_secs(60))
                    .await
                    .unwrap()
                else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                in_use.fetch_sub(1, Ordering::SeqCst);
                store.release_slot(slot).await.unwrap();
                sessions += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    // Another account has slots of its own.
    assert!(
        a.acquire_slot(8, 1, Duration::from_secs(60))
            .await
            .unwrap()
            .is_some()
    );
}

/// A dead instance's slots come back when their lease runs out; a renewal
/// keeps a live one's.
#[tokio::test]
async fn a_dead_instances_slots_come_back_after_their_lease() {
    let (a, b, ()) = pair().await;
    let short = Duration::from_millis(800);
    let kept = a.acquire_slot(1, 2, short).await.unwrap().unwrap();
    let lost = a.acquire_slot(1, 2, short).await.unwrap().unwrap();
    assert_ne!(kept.slot, lost.slot);
    assert!(b.acquire_slot(1, 2, short).await.unwrap().is_none());
    assert!(a.renew_slot(&kept, Duration::from_secs(60)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // A stopped renewing `lost`: B takes it; `kept` is still A's.
    let taken = b.acquire_slot(1, 2, short).await.unwrap().unwrap();
    assert_eq!(taken.slot, lost.slot);
    assert!(b.acquire_slot(1, 2, short).await.unwrap().is_none());
    // A's late renewal and release of the slot it lost change nothing.
    assert!(!a.renew_slot(&lost, short).await.unwrap());
    a.release_slot(lost).await.unwrap();
    assert!(b.acquire_slot(1, 2, short).await.unwrap().is_none());
    a.release_slot(kept).await.unwrap();
    // B, told a moment ago that every slot was held, asks the database
    // again only after a short pause (not on every wake-up of its
    // deliveries).
    tokio::time::sleep(super::cluster::FULL_FOR + Duration::from_millis(50)).await;
    assert!(b.acquire_slot(1, 2, short).await.unwrap().is_some());
}

/// An instance that finds every slot of an account held says it waits:
/// the other instance hears it (an instance never hears its own want), and
/// the want lapses once the waiting instance stops asking.
#[tokio::test]
async fn a_wait_for_a_slot_is_heard_by_the_other_instance() {
    let (a, b, ()) = pair().await;
    let lease = Duration::from_secs(60);
    let held = a.acquire_slot(5, 1, lease).await.unwrap().unwrap();
    assert!(a.slots_wanted().await.unwrap().is_empty());
    assert!(b.acquire_slot(5, 1, lease).await.unwrap().is_none());
    assert_eq!(a.slots_wanted().await.unwrap(), vec![5]);
    assert!(b.slots_wanted().await.unwrap().is_empty());
    a.release_slot(held).await.unwrap();
    tokio::time::sleep(super::cluster::WANT_FOR + Duration::from_millis(200)).await;
    assert!(a.slots_wanted().await.unwrap().is_empty());
    // The next want (of any instance, for any account) removes the lapsed
    // ones: each run of an instance has a name of its own.
    let _all = a.acquire_slot(6, 1, lease).await.unwrap().unwrap();
    assert!(b.acquire_slot(6, 1, lease).await.unwrap().is_none());
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT account_id, owner FROM account_slot_wants ORDER BY account_id")
            .fetch_all(&a.pool)
            .await
            .unwrap();
    assert_eq!(rows, vec![(6, "instance-b".to_owned())]);
}

/// The want and the give-back are announced at once: the holder hears the
/// other instance wait, and the waiter hears the slot come back, each
/// without looking; neither hears its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wants_and_give_backs_are_announced_to_the_other_instance() {
    use super::cluster::SlotNews;
    let (a, b, ()) = pair().await;
    let mut hears_a = a.listen_slots().await.unwrap();
    let mut hears_b = b.listen_slots().await.unwrap();
    let lease = Duration::from_secs(60);
    let held = a.acquire_slot(9, 1, lease).await.unwrap().unwrap();
    assert!(b.acquire_slot(9, 1, lease).await.unwrap().is_none());
    let heard = tokio::time::timeout(Duration::from_secs(5), hears_a.next()).await;
    assert_eq!(heard.unwrap().unwrap(), SlotNews::Wanted(9));
    // B's wait would skip the database for a moment after "all held"; the
    // give-back's announcement clears that and wakes it.
    let woken = b.slot_freed_signal(9);
    let other = b.slot_freed_signal(10);
    a.release_slot(held).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), hears_b.next()).await;
    assert_eq!(heard.unwrap().unwrap(), SlotNews::Freed(9));
    b.slot_freed(9);
    tokio::time::timeout(Duration::from_secs(1), woken)
        .await
        .expect("a wait for a slot is woken");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), other)
            .await
            .is_err(),
        "a wait for another account's slot sleeps on"
    );
    let got = b.acquire_slot(9, 1, lease).await.unwrap().unwrap();
    // An instance hears no announcement of its own give-back: it wakes
    // its own wait itself.
    let own = b.slot_freed_signal(9);
    b.release_slot(got).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), own)
        .await
        .expect("a give-back wakes the same instance's wait");
    let heard = tokio::time::timeout(Duration::from_secs(5), hears_a.next()).await;
    assert_eq!(heard.unwrap().unwrap(), SlotNews::Freed(9));
    // A heard nothing of its own give-back, B nothing of its own want: the
    // next thing each hears is the other's.
    let c = b.acquire_slot(10, 1, lease).await.unwrap().unwrap();
    assert!(a.acquire_slot(10, 1, lease).await.unwrap().is_none());
    b.release_slot(c).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), hears_a.next()).await;
    assert_eq!(heard.unwrap().unwrap(), SlotNews::Freed(10));
    let heard = tokio::time::timeout(Duration::from_secs(5), hears_b.next()).await;
    assert_eq!(heard.unwrap().unwrap(), SlotNews::Wanted(10));
}

/// Messages per minute count for the whole cluster: 2 instances × 10 starts
/// of one account limited to 5 → 5 go, the rest are told to wait about a
/// minute; another account is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_across_instances() {
    let (a, b, ()) = pair().await;
    let mut tasks = Vec::new();
    for t in 0..20 {
        let store = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(
            async move { store.take_send(3, 5).await.unwrap() },
        ));
    }
    let mut went = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => went += 1,
            Err(wait) => assert!(
                wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
                "{wait:?}"
            ),
        }
    }
    assert_eq!(went, 5);
    assert_eq!(b.take_send(4, 5).await.unwrap(), Ok(()));
}

/// A high limit is taken from the shared window a few starts at a time
/// (fewer round trips), and still holds across instances: 2 instances
/// taking starts of one account limited to 640 per minute as fast as they
/// can get exactly 640 between them, then are told to wait; the window holds
/// one row per start, none dated before it was taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_starts_keep_a_high_rate_limit_across_instances() {
    let (a, b, ()) = pair().await;
    let before = now_ms(&a).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut went = 0;
            // Each taker stops at its first refusal.
            while store.take_send(5, 640).await.unwrap().is_ok() {
                went += 1;
            }
            went
        }));
    }
    let mut went = 0;
    for t in tasks {
        went += t.await.unwrap();
    }
    assert_eq!(went, 640, "exactly the limit, whichever instance took them");
    let (starts, rows, earliest): (i64, i64, i64) = sqlx::query_as(
        "SELECT SUM(n)::BIGINT, COUNT(*), MIN(at_ms) FROM account_starts WHERE account_id = 5",
    )
    .fetch_one(a.pool())
    .await
    .unwrap();
    assert_eq!(starts, 640, "the window counts every start taken");
    assert!(earliest >= before, "no start dated before it was taken");
    assert!(
        rows < 640,
        "starts were taken several at a time, a row per reservation ({rows} rows for 640 starts)"
    );
}

async fn now_ms(store: &PgStore) -> i64 {
    sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// A rotating refresh token, as Microsoft's: redeeming it gives a new one
/// and voids it; a second redemption of the old one is `invalid_grant`.
struct TokenServer {
    current: std::sync::Mutex<String>,
    grants: AtomicUsize,
    invalid_grants: AtomicUsize,
}

impl TokenServer {
    async fn redeem(&self, refresh_token: &str) -> Option<String> {
        // The round trip to the token endpoint: long enough for racing
        // callers to overlap.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut current = self.current.lock().unwrap();
        if *current != refresh_token {
            self.invalid_grants.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        let n = self.grants.fetch_add(1, Ordering::SeqCst) + 1;
        *current = format!("rt{n}");
        Some(current.clone())
    }
}

/// One caller's token request: re-read the stored token; refresh only if
/// it is still expired; store the new pair. `locked` goes through
/// [`PgStore::single_refresh`].
async fn token_request(store: PgStore, server: Arc<TokenServer>, locked: bool) {
    let work = async || {
        let (refresh, expires): (Vec<u8>, i64) =
            sqlx::query_as("SELECT refresh_token, access_expires_at FROM accounts WHERE id = 1")
                .fetch_one(store.pool())
                .await
                .unwrap();
        if expires > 1_000 {
            return; // another caller refreshed it meanwhile
        }
        let refresh = String::from_utf8(refresh).unwrap();
        if let Some(new) = server.redeem(&refresh).await {
            sqlx::query(
                "UPDATE accounts SET refresh_token = $1, access_expires_at = 5000 WHERE id = 1",
            )
            .bind(new.into_bytes())
            .execute(store.pool())
            .await
            .unwrap();
        }
    };
    if locked {
        store.single_refresh(1, work).await.unwrap();
    } else {
        work().await;
    }
}

async fn refresh_storm(locked: bool) -> Arc<TokenServer> {
    let (a, b, ()) = pair().await;
    sqlx::query("UPDATE accounts SET refresh_token = $1, access_expires_at = 0 WHERE id = 1")
        .bind(b"rt0".to_vec())
        .execute(a.pool())
        .await
        .unwrap();
    let server = Arc::new(TokenServer {
        current: std::sync::Mutex::new("rt0".into()),
        grants: AtomicUsize::new(0),
        invalid_grants: AtomicUsize::new(0),
    });
    let mut tasks = Vec::new();
    for t in 0..40 {
        let store = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(token_request(store, server.clone(), locked)));
    }
    for t in tasks {
        t.await.unwrap();
    }
    server
}

/// 2 instances × 20 concurrent token requests with a rotating refresh
/// token: exactly one refresh, no invalid_grant. (Without the lock the same
/// storm burns the token: the test would notice the lock missing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_storm_across_instances_refreshes_once() {
    let server = refresh_storm(true).await;
    assert_eq!(server.grants.load(Ordering::SeqCst), 1);
    assert_eq!(server.invalid_grants.load(Ordering::SeqCst), 0);

    let unlocked = refresh_storm(false).await;
    assert!(unlocked.invalid_grants.load(Ordering::SeqCst) > 0);
}

#[test]
fn store_urls_are_parsed_or_refused_with_what_to_write() {
    assert_eq!("".parse(), Ok(StoreUrl::Sqlite(None)));
    assert_eq!(
        "sqlite:///var/lib/hikyaku/q.sqlite".parse(),
        Ok(StoreUrl::Sqlite(Some("/var/lib/hikyaku/q.sqlite".into())))
    );
    assert_eq!(
        "postgres://hikyaku@db:5432/hikyaku".parse(),
        Ok(StoreUrl::Postgres(
            "postgres://hikyaku@db:5432/hikyaku".into()
        ))
    );
    assert!(matches!(
        "postgresql://db/hikyaku".parse::<StoreUrl>(),
        Ok(StoreUrl::Postgres(_))
    ));
    assert_eq!("sqlite://".parse::<StoreUrl>(), Err(StoreUrlError::NoPath));
    // The refusal names the scheme only: the rest may hold a password.
    let err = "mysql://root:secret@db/x".parse::<StoreUrl>().unwrap_err();
    assert_eq!(err, StoreUrlError::Scheme("mysql".into()));
    assert!(!err.to_string().contains("secret"));
    assert!(err.to_string().contains("postgres://"));
    assert!(matches!(
        "postgres://db:notaport/x".parse::<StoreUrl>(),
        Err(StoreUrlError::Postgres(_))
    ));
}

/// On a running instance leases are stamped and compared on the database's
/// clock: an instance whose clock is far ahead neither shortens another's
/// lease nor takes it over early; a heartbeat keeps a lease, the lease of a
/// job without one runs out; a restarted instance takes back the jobs of its
/// earlier process at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_run_on_the_database_clock() {
    let url = testkit::postgres::database();
    let lease = Duration::from_secs(3);
    let a = PgStore::connect(&url, "host:1/10.aa")
        .await
        .unwrap()
        .with_database_clock(lease);
    let b = PgStore::connect(&url, "host:2/20.bb")
        .await
        .unwrap()
        .with_database_clock(lease);
    a.enqueue(&conformance::job("beating"), 100).await.unwrap();
    a.enqueue(&conformance::job("silent"), 100).await.unwrap();
    // A's clock is an hour ahead; the lease it asks for is ignored.
    assert_eq!(a.claim_due_jobs(3_700, 0, 2).await.unwrap().len(), 2);
    // B's clock far ahead takes nothing over: the leases are the database's.
    assert_eq!(
        b.requeue_expired_leases(i64::MAX / 4, &[]).await.unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(a.heartbeat("beating").await.unwrap());
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(b.requeue_expired_leases(0, &[]).await.unwrap(), 1);
    assert_eq!(b.job("silent").await.unwrap().state, JobState::Deferred);
    assert_eq!(b.job("beating").await.unwrap().state, JobState::Sending);
    assert!(!a.heartbeat("silent").await.unwrap());
    // The same instance started again (same host and port, new process).
    let a2 = PgStore::connect(&url, "host:1/11.cc")
        .await
        .unwrap()
        .with_database_clock(lease);
    assert_eq!(a2.requeue_interrupted(0).await.unwrap(), 1);
    assert_eq!(b.job("beating").await.unwrap().state, JobState::Deferred);
    assert!(!a.heartbeat("beating").await.unwrap());
}

/// The chart's counts are kept in parts, one per database session, so that
/// concurrent outcomes do not wait for one another's commits: an hour's
/// figure is the sum of its parts, a write to `job_stats` (as the copy
/// does) adds a part, and the purge of old hours removes every part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_counts_in_parts_add_up_and_are_purged() {
    let store = crate::store::Store::open_postgres(&testkit::postgres::database(), "instance-a")
        .await
        .unwrap();
    let crate::store::Engine::Postgres(pg) = store.engine() else {
        unreachable!()
    };
    let pool = pg.pool().clone();
    let now: i64 = 50 * 3600 + 10;
    let ids: Vec<String> = (0..12).map(|i| format!("part{i:02}")).collect();
    for id in &ids {
        store
            .enqueue_owned(conformance::job(id), now)
            .await
            .unwrap();
    }
    let claimed = store
        .claim_due_jobs_with_bodies(now, now + 600, 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), ids.len());
    // All at once, on as many connections as the pool gives.
    let ok = crate::i18n::Reason::new("upstream").arg("reply", "250 ok");
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let (store, ok) = (store.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            store.mark_sent(&id, None, &ok, now).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let parts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_stats_parts WHERE hour = 50")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(parts >= 1, "{parts}");
    // An hour written through the view, as `hikyaku store copy` does.
    sqlx::query("INSERT INTO job_stats (hour, state, n) VALUES (50, 'sent', 5), (51, 'failed', 2)")
        .execute(&pool)
        .await
        .unwrap();
    let hours = store.hourly_outcomes(50, 51).await.unwrap();
    let got: Vec<(i64, i64, i64)> = hours.iter().map(|(h, o)| (*h, o.sent, o.failed)).collect();
    assert_eq!(got, [(50, 17, 0), (51, 0, 2)]);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_stats")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "one row per hour and state, as on SQLite");
    // The purge of the hours before 51 takes every part of hour 50.
    store.purge_stats(51 * 3600, 100).await.unwrap();
    let left: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT hour FROM job_stats_parts")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, [51]);
    assert_eq!(store.hourly_outcomes(50, 51).await.unwrap().len(), 1);
}

/// The search text follows the jobs: written with the job, gone with it
/// (a deletion and the purge), and searched in place of the jobs' columns.
#[tokio::test]
async fn the_search_table_follows_the_jobs() {
    let store = crate::store::Store::open_postgres(&testkit::postgres::database(), "instance-a")
        .await
        .unwrap();
    let crate::store::Engine::Postgres(pg) = store.engine() else {
        unreachable!()
    };
    let pool = pg.pool().clone();
    for id in ["s1", "s2", "s3"] {
        store
            .enqueue_owned(conformance::job(id), 100)
            .await
            .unwrap();
    }
    let count = async || -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM job_search j JOIN jobs USING (mail_from, rcpt_to) WHERE jobs.id = j.job_id")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 3);
    store.delete_job("s2").await.unwrap();
    assert_eq!(count().await, 2);
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_search s WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = s.job_id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    // The outcome leaves the search's row as it was (no new version).
    let before: String =
        sqlx::query_scalar("SELECT ctid::TEXT FROM job_search WHERE job_id = 's1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    store
        .claim_due_jobs_with_bodies(200, 800, 10)
        .await
        .unwrap();
    let ok = crate::i18n::Reason::new("upstream").arg("reply", "250 ok");
    store.mark_sent("s1", None, &ok, 200).await.unwrap();
    let after: String = sqlx::query_scalar("SELECT ctid::TEXT FROM job_search WHERE job_id = 's1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(before, after);
}

/// Writes made at once share statements and commits (the group commit):
/// every one is stored, a faulty one (an id taken) fails alone, and an
/// outcome in the same batch as others is still fenced by its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_committed_together_and_fail_alone() {
    let (a, b, ()) = pair().await;
    a.enqueue(&conformance::job("taken"), 100).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let a = a.clone();
        let id = if i == 11 {
            "taken".to_owned()
        } else {
            format!("b{i:02}")
        };
        tasks.push(tokio::spawn(async move {
            (id.clone(), a.enqueue(&conformance::job(&id), 100).await)
        }));
    }
    for t in tasks {
        let (id, result) = t.await.unwrap();
        assert_eq!(result.is_err(), id == "taken", "{id}: {result:?}");
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs j JOIN messages m ON m.job_id = j.id")
            .fetch_one(a.pool())
            .await
            .unwrap();
    assert_eq!(stored, 24, "23 new jobs and the first, each with its body");

    // All claimed by a; b takes one over after its lease ran out.
    assert_eq!(a.claim_due_jobs(100, 200, 50).await.unwrap().len(), 24);
    for j in (0..24).filter(|i| *i != 11).map(|i| format!("b{i:02}")) {
        if j != "b05" {
            assert!(a.extend_lease(&j, 500).await.unwrap());
        }
    }
    assert!(a.extend_lease("taken", 500).await.unwrap());
    assert_eq!(b.requeue_expired_leases(300, &[]).await.unwrap(), 1);
    assert_eq!(b.claim_due_jobs(300, 900, 5).await.unwrap()[0].id, "b05");
    let ok = crate::i18n::Reason::new("upstream").arg("reply", "250 ok");
    let mut tasks = Vec::new();
    for i in (0..24).filter(|i| *i != 11) {
        let (a, ok) = (a.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("b{i:02}");
            if i % 3 == 0 {
                a.mark_failed(&id, None, &ok, 310).await.unwrap();
            } else {
                a.mark_sent(&id, None, &ok, 310).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let states: Vec<(String, String)> =
        sqlx::query_as("SELECT id, state FROM jobs WHERE id LIKE 'b%' ORDER BY id")
            .fetch_all(a.pool())
            .await
            .unwrap();
    for (id, state) in states {
        let i: u32 = id[1..].parse().unwrap();
        let want = match i {
            5 => "sending", // b's now: a's late outcome is not recorded
            _ if i.is_multiple_of(3) => "failed",
            _ => "sent",
        };
        assert_eq!(state, want, "{id}");
    }
    // Sent jobs' bodies are gone; the failed ones' and b's are kept.
    let bodies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE job_id LIKE 'b%'")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(bodies, 8 + 1, "{bodies}");
}

/// The transaction ids of the jobs' rows: equal ids were written by one
/// statement of the group commit.
async fn written_by(store: &PgStore, ids: &[&str]) -> Vec<String> {
    let mut xids = Vec::new();
    for id in ids {
        let xid: String = sqlx::query_scalar("SELECT xmin::TEXT FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(store.pool())
            .await
            .unwrap();
        xids.push(xid);
    }
    xids
}

/// A new job waits a moment for the messages of transactions opened just
/// before, and they are written by one statement; transactions that never hand their message
/// over hold a new job back only while they are young.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_jobs_wait_a_moment_for_messages_about_to_arrive() {
    // A long wait, so that the test does not race the clock: the wait
    // ends when the messages come.
    let long = Duration::from_secs(30);
    let arrivals = Arc::new(Arrivals::new(long, long));
    let url = testkit::postgres::database();
    let store = PgStore::connect_counting(&url, "instance-a", Arc::clone(&arrivals))
        .await
        .unwrap();
    let enqueue = |id: &'static str| {
        let store = store.clone();
        tokio::spawn(async move { store.enqueue(&conformance::job(id), 100).await })
    };

    // Two other clients' transactions are open when the first message comes.
    let coming = [arrivals.open(), arrivals.open()];
    let first = enqueue("first");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !first.is_finished(),
        "the first message waits for the others"
    );
    let [one, two] = coming;
    drop(one);
    let second = enqueue("second");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!first.is_finished(), "one more is coming");
    drop(two);
    let third = enqueue("third");
    for t in [first, second, third] {
        t.await.unwrap().unwrap();
    }
    let xids = written_by(&store, &["first", "second", "third"]).await;
    assert!(
        xids.iter().all(|x| *x == xids[0]),
        "one statement wrote all: {xids:?}"
    );

    // Only the transactions open when the wait began are waited for: one
    // opened meanwhile does not hold the batch back.
    let coming = arrivals.open();
    let first = enqueue("cohort");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = arrivals.open();
    drop(coming);
    let second = enqueue("cohort-2");
    for t in [first, second] {
        t.await.unwrap().unwrap();
    }
    let xids = written_by(&store, &["cohort", "cohort-2"]).await;
    assert_eq!(xids[0], xids[1]);
    drop(late);

    // Transactions that stay open (slow clients) are waited for only while
    // they are young: the job is written alone, long before the wait's
    // limit.
    let arrivals = Arc::new(Arrivals::new(long, YOUNG));
    let store = PgStore::connect_counting(&url, "instance-a", Arc::clone(&arrivals))
        .await
        .unwrap();
    let stalled = [arrivals.open(), arrivals.open()];
    let started = std::time::Instant::now();
    store
        .enqueue(&conformance::job("alone"), 100)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= YOUNG / 2,
        "waited {waited:?} for young transactions"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    store
        .enqueue(&conformance::job("later"), 100)
        .await
        .unwrap();
    let xids = written_by(&store, &["alone", "later"]).await;
    assert_ne!(
        xids[0], xids[1],
        "the held job did not wait for the next one"
    );
    drop(stalled);

    // Nothing open: no wait at all, the next job is its own statement.
    assert_eq!(arrivals.expected(), None);
    store.enqueue(&conformance::job("free"), 100).await.unwrap();
    let xids = written_by(&store, &["later", "free"]).await;
    assert_ne!(xids[0], xids[1]);
}

/// A slot given back lets the one delivery it woke ask for it; the others,
/// told a moment ago that every slot was held, do not all go to the
/// database for that one slot.
#[tokio::test]
async fn a_slot_given_back_is_asked_for_by_the_woken_delivery_only() {
    let (a, b, ()) = pair().await;
    let lease = Duration::from_secs(60);
    let held = a.acquire_slot(11, 1, lease).await.unwrap().unwrap();
    assert!(b.acquire_slot(11, 1, lease).await.unwrap().is_none());
    a.release_slot(held).await.unwrap();
    // B hears the give-back: one of its waits is woken.
    let woken = b.slot_freed_signal(11);
    b.slot_freed(11);
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .unwrap();
    // Another delivery of B still takes "all held" from a moment ago ...
    assert!(b.acquire_slot(11, 1, lease).await.unwrap().is_none());
    // ... while the woken one asks and gets the slot.
    let taken = b.acquire_freed_slot(11, 1, lease).await.unwrap().unwrap();
    assert_eq!(taken.account_id, 11);
    // Woken again with nothing free, it finds every slot held.
    assert!(a.acquire_freed_slot(11, 1, lease).await.unwrap().is_none());
}
