//! Two real `hikyaku serve` processes on one PostgreSQL database behave as
//! one cluster (protocols.md §12–§13): an account's connection cap and
//! messages per minute hold across both; one token refresh serves both,
//! however many deliveries need it at once; an instance SIGKILLed mid-run
//! loses nothing acknowledged, and its jobs are taken over by the other
//! within about one lease; a database restart under load answers `451`s
//! meanwhile and loses nothing, without restarting hikyaku.
//!
//! Each test starts its own throw-away PostgreSQL (testkit::postgres) and
//! fakecloud; the data directory (master key) is prepared once through the
//! Remote UI and shared by both processes, as the README's deployment does.
//! Figures are printed (`--nocapture`); the README quotes them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fakecloud::FakeCloud;
use testkit::postgres::Cluster;
use testkit::{
    Client, Hikyaku, MAILBOX, PASSWORD, SUBMITTER, Watchdog, eventually, header, message,
    poll_until, prepare_with, test_config,
};

const FROM: &str = "scanner@printer.local";
const TO: &str = "boss@example.com";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Two instances over one database, fakecloud, and their directories.
struct Site {
    pg: Cluster,
    db: sqlx::PgPool,
    fc: FakeCloud,
    nodes: Vec<Hikyaku>,
    _data: tempfile::TempDir,
    _work: Vec<tempfile::TempDir>,
}

/// Prepares the account through the Remote UI on PostgreSQL, runs `tune`
/// (SQL) on the database, then starts two `hikyaku serve` processes with
/// `workers` each, a job lease of `lease_secs` and `log` as log level.
async fn site(workers: u64, lease_secs: u64, tune: &str, log: &str) -> Site {
    let pg = Cluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = pg.create_database().unwrap();
    let fc = testkit::start_fakecloud().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.store.url = url.clone();
    let (mut server, _admin) = prepare_with(&fc, dir, config).await;
    server.stop().await;
    let data = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    if !tune.is_empty() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(tune.to_owned()))
            .execute(&db)
            .await
            .unwrap();
    }
    let mut nodes = Vec::new();
    let mut work = Vec::new();
    for _ in 0..2 {
        // Each instance has its own data directory with the same master
        // key (and the rest of the prepared files), as on two hosts.
        let w = tempfile::tempdir().unwrap();
        let own = w.path().join("data");
        copy_files(data.path(), &own);
        let hk = Hikyaku::new(
            Path::new(env!("CARGO_BIN_EXE_hikyaku")),
            &own,
            w.path(),
            workers,
        );
        let written = std::fs::read_to_string(&hk.config_path).unwrap();
        let config = written.replace("level = \"warn\"", &format!("level = \"{log}\""))
            + &format!("\n[store]\nurl = \"{url}\"\nlease_secs = {lease_secs}\n");
        std::fs::write(&hk.config_path, config).unwrap();
        nodes.push(hk);
        work.push(w);
    }
    for hk in &mut nodes {
        hk.start().await;
    }
    Site {
        pg,
        db,
        fc,
        nodes,
        _data: data,
        _work: work,
    }
}

/// Copies the regular files of `from` (not sockets or locks' sockets) into
/// a new directory `to`, keeping their permissions.
fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        } else if kind.is_dir() {
            copy_files(&entry.path(), &to.join(entry.file_name()));
        }
    }
}

async fn session(addr: SocketAddr) -> std::io::Result<Client> {
    let (mut c, greeting) = tokio::time::timeout(Duration::from_secs(10), Client::connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))??;
    if !greeting.starts_with("220") {
        return Err(std::io::Error::other(greeting));
    }
    c.login_plain(SUBMITTER, PASSWORD).await?;
    Ok(c)
}

/// `n` messages through `addr` on one connection; every one must be accepted.
async fn send_all(addr: SocketAddr, prefix: String, n: usize) {
    let mut c = session(addr).await.expect("session");
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        let r = c
            .send(FROM, TO, &message(FROM, &key, &key, 300))
            .await
            .expect("send");
        assert!(r.reply.starts_with("250"), "{key}: {}", r.reply);
    }
    c.quit().await;
}

/// Which transmissions were acknowledged, and what is left to send.
struct Book {
    pending: VecDeque<usize>,
    attempts: Vec<u32>,
    /// Acknowledged transmission (`X-Attempt`) → message number.
    acked: HashMap<String, usize>,
    transmissions: u64,
    /// `451` replies (the store unreachable) seen by the clients.
    refused_451: u64,
}

impl Book {
    fn new(n: usize) -> Arc<Mutex<Book>> {
        Arc::new(Mutex::new(Book {
            pending: (0..n).collect(),
            attempts: vec![0; n],
            acked: HashMap::new(),
            transmissions: 0,
            refused_451: 0,
        }))
    }
}

fn lock(book: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    book.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A client like a real one behind a load balancer: sends through its
/// intake, on anything but `250` sends the message again later, and when
/// its intake does not answer, goes to the other.
async fn client(addrs: [SocketAddr; 2], book: Arc<Mutex<Book>>, n: usize) {
    let mut at = 0;
    'connect: loop {
        if lock(&book).acked.len() >= n {
            return;
        }
        let Ok(mut c) = session(addrs[at]).await else {
            at = 1 - at;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        loop {
            let next = {
                let mut b = lock(&book);
                if b.acked.len() >= n {
                    return;
                }
                b.pending.pop_front().map(|key| {
                    b.attempts[key] += 1;
                    b.transmissions += 1;
                    (key, format!("m{key}-a{}", b.attempts[key]))
                })
            };
            let Some((key, attempt)) = next else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let m = message(FROM, &format!("m{key}"), &attempt, 300);
            match c.send(FROM, TO, &m).await {
                Ok(sent) if sent.reply.starts_with("250") => {
                    lock(&book).acked.insert(attempt, key);
                }
                other => {
                    {
                        let mut b = lock(&book);
                        b.pending.push_back(key);
                        if other.as_ref().is_ok_and(|s| s.reply.starts_with("451")) {
                            b.refused_451 += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue 'connect;
                }
            }
        }
    }
}

fn attempts_in(fc: &FakeCloud) -> Vec<String> {
    fc.inbox()
        .iter()
        .filter_map(|m| header(&m.data, "X-Attempt"))
        .collect()
}

/// What arrived at fakecloud for the acknowledged transmissions `want`:
/// (lost, same transmission delivered more than once, a message delivered
/// again through a resend after a lost `250`).
fn tally(fc: &FakeCloud, want: &HashSet<String>) -> (Vec<String>, usize, usize) {
    let delivered = attempts_in(fc);
    let mut per_attempt: HashMap<&str, usize> = HashMap::new();
    for a in &delivered {
        *per_attempt.entry(a.as_str()).or_default() += 1;
    }
    let lost = want
        .iter()
        .filter(|a| !per_attempt.contains_key(a.as_str()))
        .cloned()
        .collect();
    let duplicates = per_attempt.values().map(|c| c - 1).sum();
    let mut per_key: HashMap<&str, HashSet<&str>> = HashMap::new();
    for a in &delivered {
        let key = a.rsplit_once("-a").map_or(a.as_str(), |(k, _)| k);
        per_key.entry(key).or_default().insert(a.as_str());
    }
    let resent = per_key.values().map(|s| s.len() - 1).sum();
    (lost, duplicates, resent)
}

/// Waits until every acknowledged transmission arrived and nothing more
/// trickles in for 1.5 s.
async fn settle(fc: &FakeCloud, want: &HashSet<String>, timeout: Duration) {
    let mut last_len = 0;
    let mut stable_since = Instant::now();
    let _ = poll_until(
        timeout,
        "every acknowledged message, then quiet",
        async || {
            let len = fc.inbox().len();
            if len != last_len {
                last_len = len;
                stable_since = Instant::now();
                return false;
            }
            stable_since.elapsed() > Duration::from_millis(1500)
                && want.is_subset(&attempts_in(fc).into_iter().collect())
        },
    )
    .await;
}

/// The jobs leased to the instance whose Remote UI listens on `port` (any
/// of its processes: the lease owner is `HOST:PORT/PROCESS`).
async fn leased_to(db: &sqlx::PgPool, port: u16) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT id FROM jobs WHERE state = 'sending' AND split_part(lease_owner, '/', 1) LIKE '%:' || $1",
    )
    .bind(port.to_string())
    .fetch_all(db)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_accounts_connection_cap_and_rate_hold_across_instances() {
    const CAP: u64 = 3;
    const RATE: usize = 30;
    const EXTRA: usize = 10;
    // Each instance alone would allow 6 connections (its workers) and all
    // of the messages at once.
    let site = site(
        6,
        60,
        &format!(
            "UPDATE accounts SET max_connections = {CAP}, rate_per_minute = {RATE} WHERE name = 'microsoft'"
        ),
        "warn",
    )
    .await;
    let fc = &site.fc;
    // Sessions last a while, so that they overlap.
    fc.set_smtp_reply_delay(Duration::from_millis(40));
    let started = Instant::now();
    let per_connection = (RATE + EXTRA) / 4;
    let mut senders = Vec::new();
    for (i, hk) in site.nodes.iter().enumerate() {
        for c in 0..2 {
            senders.push(tokio::spawn(send_all(
                hk.smtp,
                format!("n{i}c{c}"),
                per_connection,
            )));
        }
    }
    for s in senders {
        s.await.unwrap();
    }
    let inbox = fc.wait_for_inbox(RATE, Duration::from_secs(50)).await;
    assert_eq!(inbox.len(), RATE, "the first minute's messages");
    let first_batch = started.elapsed();
    // Well inside the minute: the rest wait for the cluster-wide window,
    // though each instance alone has room.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let held = fc.inbox().len();
    let (max_sessions, _) = fc.mailbox_sessions(MAILBOX);
    println!(
        "cluster limits: {RATE} delivered in {first_batch:?}, {held} after 8 s more; at most {max_sessions} sessions of the mailbox at once (cap {CAP})"
    );
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "the check ran within the first minute"
    );
    assert_eq!(
        held, RATE,
        "the per-minute rate holds across both instances"
    );
    let all = fc
        .wait_for_inbox(RATE + EXTRA, Duration::from_secs(90))
        .await;
    assert_eq!(all.len(), RATE + EXTRA, "the rest after the window");
    let (max_sessions, _) = fc.mailbox_sessions(MAILBOX);
    println!(
        "cluster limits: all {} delivered after {:?}; at most {max_sessions} sessions at once",
        RATE + EXTRA,
        started.elapsed()
    );
    assert!(
        max_sessions <= CAP,
        "{max_sessions} sessions of one mailbox at once across both instances (cap {CAP})"
    );
    assert!(
        max_sessions >= 2,
        "the sessions did overlap: {max_sessions}"
    );
    drop(site);
}

/// An instance whose deliveries wait for a slot of an account while the
/// other instance holds them all in idle sessions gets one at once: it
/// announces that it waits, the other closes its idle sessions of the
/// account on hearing it, and the give-back's announcement wakes the wait.
/// Before the announcements this took the other's next look and the
/// wait's next try (0.7–0.9 s); before the looks, the idle limit (2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_sessions_give_their_slots_to_an_instance_that_waits() {
    const CAP: usize = 2;
    let site = site(
        CAP as u64,
        60,
        &format!("UPDATE accounts SET max_connections = {CAP} WHERE name = 'microsoft'"),
        "warn",
    )
    .await;
    let fc = &site.fc;
    // The first instance's deliveries overlap, so that it opens a session
    // in each of the account's slots.
    fc.set_smtp_reply_delay(Duration::from_millis(60));
    let first = site.nodes[0].smtp;
    let senders: Vec<_> = (0..CAP)
        .map(|c| tokio::spawn(send_all(first, format!("a{c}"), 1)))
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let delivered = fc.wait_for_inbox(CAP, Duration::from_secs(30)).await;
    assert_eq!(delivered.len(), CAP);
    fc.set_smtp_reply_delay(Duration::ZERO);
    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM account_slots")
        .fetch_one(&site.db)
        .await
        .unwrap();
    assert_eq!(
        held, CAP as i64,
        "the first instance holds every slot in its idle sessions"
    );
    // Timed from the second instance's acceptance, so that the client's
    // login (a password hash) is not counted.
    let mut client = session(site.nodes[1].smtp).await.expect("session");
    let sent = client
        .send(FROM, TO, &message(FROM, "b", "b", 300))
        .await
        .expect("send");
    assert!(sent.reply.starts_with("250"), "{}", sent.reply);
    let accepted = Instant::now();
    let all = fc.wait_for_inbox(CAP + 1, Duration::from_secs(30)).await;
    let took = accepted.elapsed();
    client.quit().await;
    println!(
        "cluster slots: the waiting instance delivered {took:?} after it accepted the message"
    );
    assert_eq!(all.len(), CAP + 1);
    assert!(
        took < Duration::from_millis(400),
        "the second instance waited {took:?} for a slot the first held idle (its idle limit is 2 s, its next look up to 0.5 s away)"
    );
    let (max_sessions, _) = fc.mailbox_sessions(MAILBOX);
    assert!(
        max_sessions <= CAP as u64,
        "{max_sessions} sessions at once (cap {CAP})"
    );
    drop(site);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_storm_across_instances_refreshes_once() {
    const PER_INSTANCE: usize = 20;
    let site = site(
        PER_INSTANCE as u64,
        60,
        "",
        "warn,hikyaku::tokens=info,hikyaku::delivery=info",
    )
    .await;
    let fc = &site.fc;
    // Every access token the instances hold is refused from now on: each
    // delivery needs a new one, and Microsoft's refresh token rotates (a
    // redeemed one is refused with invalid_grant).
    let refreshes = fc.refresh_count();
    fc.expire_access_tokens();
    // 20 messages per instance over a few connections (a password check
    // per SMTP login is slow in a debug build); each instance's 20 workers
    // start on them as they arrive.
    let mut senders = Vec::new();
    for (i, hk) in site.nodes.iter().enumerate() {
        for c in 0..4 {
            senders.push(tokio::spawn(send_all(
                hk.smtp,
                format!("n{i}c{c}"),
                PER_INSTANCE / 4,
            )));
        }
    }
    for s in senders {
        s.await.unwrap();
    }
    let inbox = fc
        .wait_for_inbox(2 * PER_INSTANCE, Duration::from_secs(60))
        .await;
    let logs: Vec<String> = site
        .nodes
        .iter()
        .map(|hk| std::fs::read_to_string(&hk.log_path).unwrap_or_default())
        .collect();
    let refreshed: Vec<usize> = logs
        .iter()
        .map(|l| l.matches("access token refreshed").count())
        .collect();
    let sent: Vec<usize> = logs.iter().map(|l| l.matches(": sent").count()).collect();
    println!(
        "refresh storm: {} delivered, {} refreshes at the provider (per instance {refreshed:?}), {} refused, sent per instance {sent:?}",
        inbox.len(),
        fc.refresh_count() - refreshes,
        fc.refresh_refused()
    );
    assert_eq!(inbox.len(), 2 * PER_INSTANCE, "every message delivered");
    assert_eq!(fc.refresh_refused(), 0, "no refresh token redeemed twice");
    assert_eq!(
        fc.refresh_count() - refreshes,
        1,
        "exactly one refresh for both instances"
    );
    assert!(
        sent.iter().all(|n| *n > 0),
        "both instances delivered: {sent:?}"
    );
    drop(site);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_instances_jobs_are_taken_over_and_nothing_acknowledged_is_lost() {
    const WORKERS: u64 = 8;
    const LEASE: u64 = 6;
    let n: usize = env_or("HIKYAKU_CLUSTER_MESSAGES", 5000);
    let connections: usize = env_or("HIKYAKU_CLUSTER_CONNECTIONS", 3);
    let started = Instant::now();
    let watchdog = Watchdog::start(
        "a_killed_instances_jobs_are_taken_over",
        Duration::from_secs(20 * 60),
    );
    watchdog.step("set-up");
    let mut site = site(WORKERS, LEASE, "", "warn").await;
    for hk in &site.nodes {
        watchdog.watch_log(hk.log_path.clone());
    }
    println!("cluster kill test: set-up {:?}", started.elapsed());
    let addrs = [site.nodes[0].smtp, site.nodes[1].smtp];
    let book = Book::new(n);
    let sending = Instant::now();
    let mut clients = Vec::new();
    for i in 0..2 * connections {
        let own = [addrs[i % 2], addrs[1 - i % 2]];
        clients.push(tokio::spawn(client(own, book.clone(), n)));
    }
    let port = site.nodes[0].web.port();
    let mut kills = 0;
    // Jobs in flight on the killed instance at each kill: the at-least-once
    // window.
    let mut window = 0;
    let mut takeovers = Vec::new();
    for (k, at) in [n / 3, 2 * n / 3].into_iter().enumerate() {
        let what = format!("{at} acknowledged messages");
        watchdog.step(format!("kill {}: waiting for {what}", k + 1));
        if let Err(e) = poll_until(Duration::from_secs(180), &what, async || {
            lock(&book).acked.len() >= at
        })
        .await
        {
            panic!("no progress: {e}\n{}", site.nodes[0].log_tail());
        }
        // Mid-run: while the instance has deliveries in flight.
        let _ = poll_until(Duration::from_secs(30), "jobs in flight", async || {
            !leased_to(&site.db, port).await.is_empty()
        })
        .await;
        watchdog.step(format!("kill {}", k + 1));
        site.nodes[0].kill();
        let killed_at = Instant::now();
        kills += 1;
        let orphans = leased_to(&site.db, port).await;
        println!(
            "cluster kill test: kill {kills} with {} jobs in flight on the killed instance",
            orphans.len()
        );
        window += orphans.len();
        if k == 0 {
            // Left dead: the other instance takes its jobs over once their
            // lease (no more heartbeats) runs out.
            let took = poll_until(
                Duration::from_secs(LEASE * 4),
                "the dead instance's jobs taken over",
                async || leased_to(&site.db, port).await.is_empty(),
            )
            .await;
            let after = killed_at.elapsed();
            if let Err(e) = took {
                panic!("{e}\n{}", site.nodes[1].log_tail());
            }
            println!(
                "cluster kill test: {} jobs in flight on the killed instance, taken over after {after:?} (lease {LEASE} s)",
                orphans.len()
            );
            takeovers.push(after);
            assert!(
                after <= Duration::from_secs(LEASE + LEASE / 4 + 5),
                "taken over within about one lease: {after:?}"
            );
        } else {
            // Started again at once: the new process takes back its
            // predecessor's jobs itself.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        watchdog.step(format!("restart after kill {}", k + 1));
        site.nodes[0].start().await;
    }
    watchdog.step("clients finishing");
    for c in clients {
        tokio::time::timeout(Duration::from_secs(240), c)
            .await
            .expect("clients finish")
            .expect("client task");
    }
    let intake_time = sending.elapsed();
    let (acked, transmissions) = {
        let b = lock(&book);
        (b.acked.clone(), b.transmissions)
    };
    let want: HashSet<String> = acked.keys().cloned().collect();
    watchdog.step("every acknowledged message delivered");
    settle(&site.fc, &want, Duration::from_secs(240)).await;
    let delivery_time = sending.elapsed();
    let (lost, duplicates, resent) = tally(&site.fc, &want);
    println!(
        "cluster kill test: {n} messages through 2 instances, {kills} SIGKILLs, {transmissions} transmissions, \
         {duplicates} duplicates (window: {window} jobs in flight at the kills), {resent} delivered again after a resend, \
         {} lost; intake {intake_time:?}, all delivered after {delivery_time:?}, total {:?}",
        lost.len(),
        started.elapsed()
    );
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}\n{}",
        site.nodes[1].log_tail()
    );
    assert!(
        duplicates <= window,
        "{duplicates} duplicates, more than the {window} jobs in flight on the killed instance"
    );
    assert!(
        resent <= kills * 2 * connections,
        "{resent} messages delivered again after resends"
    );
    watchdog.step("stopping the instances and PostgreSQL");
    for hk in &mut site.nodes {
        hk.terminate(Duration::from_secs(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_under_load_answers_451_and_loses_nothing() {
    let n: usize = env_or("HIKYAKU_CLUSTER_DB_MESSAGES", 600);
    let watchdog = Watchdog::start(
        "a_database_restart_under_load",
        Duration::from_secs(15 * 60),
    );
    watchdog.step("set-up");
    let site = site(4, 60, "", "warn").await;
    for hk in &site.nodes {
        watchdog.watch_log(hk.log_path.clone());
    }
    watchdog.step("load, database stopped and restarted");
    let addrs = [site.nodes[0].smtp, site.nodes[1].smtp];
    let book = Book::new(n);
    let mut clients = Vec::new();
    for i in 0..4 {
        let own = [addrs[i % 2], addrs[1 - i % 2]];
        clients.push(tokio::spawn(client(own, book.clone(), n)));
    }
    eventually(Duration::from_secs(120), "a third acknowledged", || async {
        (lock(&book).acked.len() >= n / 3).then_some(())
    })
    .await;
    site.pg.stop().unwrap();
    let down = Instant::now();
    let acked_at_stop = lock(&book).acked.len();
    // Down until the clients were told 451 (a commit waits a few seconds
    // for the database before it gives up), for at most 30 s.
    let _ = poll_until(Duration::from_secs(30), "451 while down", async || {
        lock(&book).refused_451 > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = lock(&book).acked.len() - acked_at_stop;
    let refused = lock(&book).refused_451;
    site.pg.restart().unwrap();
    let outage = down.elapsed();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(180), c)
            .await
            .expect("clients finish after the database returned")
            .expect("client task");
    }
    let want: HashSet<String> = lock(&book).acked.keys().cloned().collect();
    settle(&site.fc, &want, Duration::from_secs(120)).await;
    let (lost, duplicates, _) = tally(&site.fc, &want);
    let refused_total = lock(&book).refused_451;
    println!(
        "database restart: {n} messages, outage {outage:?}, {refused} answered 451 while down ({refused_total} in all), \
         {during} accepted while down, {duplicates} duplicates, {} lost",
        lost.len()
    );
    assert!(
        refused > 0,
        "the intakes answered 451 while the database was away"
    );
    assert!(
        during <= 4,
        "nothing is acknowledged without the database ({during} were; at most those committed just before)"
    );
    if !lost.is_empty() {
        // What became of them, for the failure message.
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT concat_ws(' ', id, state, attempts, lease_owner, 'lease_until', lease_until, 'db now', FLOOR(EXTRACT(EPOCH FROM now()))::BIGINT, 'created', created_at, 'updated', updated_at) FROM jobs WHERE state <> 'sent'",
        )
        .fetch_all(&site.db)
        .await
        .unwrap_or_default();
        let sessions: Vec<String> = sqlx::query_scalar(
            "SELECT concat_ws(' | ', state, wait_event_type, wait_event, LEFT(query, 160)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&site.db)
        .await
        .unwrap_or_default();
        panic!(
            "acknowledged but never delivered: {lost:?}\njobs not sent: {rows:?}\nsessions: {sessions:#?}\n{}\n{}",
            site.nodes[0].log_tail(),
            site.nodes[1].log_tail()
        );
    }
    // Both instances recovered by themselves: they still take mail.
    for hk in &site.nodes {
        send_all(hk.smtp, format!("after-{}", hk.smtp.port()), 1).await;
    }
    site.fc
        .wait_for_inbox(want.len() + duplicates + 2, Duration::from_secs(30))
        .await;
    let n_after = attempts_in(&site.fc).len();
    assert!(
        n_after >= want.len() + 2,
        "the messages after the outage were delivered"
    );
}
