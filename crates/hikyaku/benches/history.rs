//! History scale: how hikyaku behaves with a long history in its store, side
//! by side with an empty store, in one invocation.
//!
//! ```sh
//! cargo bench -p hikyaku --bench history
//! cargo bench -p hikyaku --bench history -- --finished 1000000 --waiting 10000 --messages 12000
//! ```
//!
//! Two data directories are prepared the same way (the Remote UI's steps,
//! against fakecloud). Into one, the generator writes `--finished` finished
//! jobs (sent, some failed with their bodies kept; 200 devices, 5,000
//! recipients, replies, spread over 90 days, `job_stats` counted as the
//! trigger would) and `--waiting` jobs still in the queue (queued and
//! deferred, due in a day so that they wait during the run), in big
//! transactions. Then the real `hikyaku serve` runs on each store, side by
//! side:
//!
//! - start-up time: process start to the intake's greeting;
//! - intake accept rate: `--messages` SMTP submissions over
//!   `--connections` connections, in `--rounds` rounds that take turns
//!   between the two servers (the order swapped each round, each round
//!   after the other server's deliveries are done), so that a slow spell
//!   of the machine falls on both alike; the time until each round's last
//!   `250`, and the server's CPU per message until it is quiet again.
//!   Before them, `--warmup` rounds (1) on each server, reported apart: a
//!   server that has just started on a long history is slower in its first
//!   seconds (its caches still cold), which the steady rate should not hide
//!   nor be mixed with;
//! - Send Job History latency, p50/p99 over `--requests` requests, at the
//!   JSON API (`/api/v1/jobs`) and the page (`/jobs`), for the default view
//!   and each filter.
//!
//! Options: `--finished N` (1,000,000), `--waiting N` (10,000),
//! `--messages N` (12,000), `--rounds R` (4), `--warmup W` (1), `--connections C` (8),
//! `--requests R` (50), `--keep DIR` (a copy of the long history's store after the
//! run, for a look with the `sqlite3` shell).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use testkit::{Browser, Client, Hikyaku, PASSWORD, SUBMITTER};

struct Args {
    finished: usize,
    waiting: usize,
    messages: usize,
    connections: usize,
    requests: usize,
    rounds: usize,
    /// Rounds of `messages / rounds` each before the measured ones.
    warmup: usize,
    /// Where to keep a copy of the long history's store after the run.
    keep: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        finished: 1_000_000,
        waiting: 10_000,
        messages: 12_000,
        connections: 8,
        requests: 50,
        rounds: 4,
        warmup: 1,
        keep: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match flag.as_str() {
            "--finished" => a.finished = value("--finished"),
            "--waiting" => a.waiting = value("--waiting"),
            "--messages" => a.messages = value("--messages").max(1),
            "--connections" => a.connections = value("--connections").max(1),
            "--requests" => a.requests = value("--requests").max(1),
            "--rounds" => a.rounds = value("--rounds").max(1),
            "--warmup" => a.warmup = value("--warmup"),
            "--keep" => a.keep = it.next().map(Into::into),
            // cargo bench passes --bench; ignore anything else.
            _ => {}
        }
    }
    a
}

/// A small deterministic generator (xorshift), so that two runs build the
/// same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A UUIDv7 for a job created at `ms` (the store's ids sort by creation).
fn uuid_v7(ms: u64, rng: &mut Rng) -> String {
    let ts =
        uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
    let mut id = *uuid::Uuid::new_v7(ts).as_bytes();
    // The random part from our generator: ids unique and reproducible.
    id[8..].copy_from_slice(&rng.next().to_be_bytes());
    id[8] = (id[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(id).to_string()
}

const DEVICES: u64 = 200;
const RECIPIENTS: u64 = 5000;
const DAY: i64 = 86_400;

/// What the generator wrote, for the filters to aim at.
struct History {
    accounts: Vec<i64>,
    now: i64,
}

/// Writes the history into the prepared store in `data` (no server running).
async fn generate(data: &Path, finished: usize, waiting: usize) -> History {
    let path = data.join("hikyaku.sqlite");
    let options = SqliteConnectOptions::from_str("sqlite:")
        .unwrap()
        .filename(&path)
        .journal_mode(SqliteJournalMode::Wal)
        // A generator, not intake: nothing is lost if it is interrupted.
        .synchronous(SqliteSynchronous::Off);
    let mut db = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let accounts: Vec<i64> = sqlx::query_scalar("SELECT id FROM accounts ORDER BY id")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert!(!accounts.is_empty(), "the prepared store has an account");
    let now = hikyaku::clock::Clock::unix(&hikyaku::clock::SystemClock);
    let start = now - 90 * DAY;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut stats: HashMap<(i64, &'static str), i64> = HashMap::new();
    let body = vec![b'x'; 1500];
    let began = Instant::now();
    let total = finished + waiting;
    let mut done = 0;
    while done < total {
        let chunk = (total - done).min(50_000);
        let mut tx = db.begin().await.unwrap();
        for k in done..done + chunk {
            let is_waiting = k >= finished;
            // Finished jobs spread evenly over 90 days, oldest first; the
            // waiting ones arrived in the last hour.
            let created = if is_waiting {
                now - 3600 + (k - finished) as i64 * 3600 / waiting.max(1) as i64
            } else {
                start + (k as i64) * (90 * DAY - 3600) / finished.max(1) as i64
            };
            let ms = created as u64 * 1000 + rng.below(1000);
            let id = uuid_v7(ms, &mut rng);
            let device = rng.below(DEVICES);
            let site = device % 12;
            let mail_from = format!("mfp-{device:03}@branch{site}.contoso.example");
            let n_rcpt = 1 + rng.below(3);
            let rcpt: Vec<String> = (0..n_rcpt)
                .map(|_| format!("user{:04}@contoso.example", rng.below(RECIPIENTS)))
                .collect();
            let rcpt_json = serde_json::to_string(&rcpt).unwrap();
            let subject = format!("Scanned from MFP-{device:03} ({})", created / DAY);
            let account = accounts[rng.below(accounts.len() as u64) as usize];
            let size = 20_000 + rng.below(2_000_000) as i64;
            let roll = rng.below(1000);
            let (state, attempts, reply, updated, next): (&'static str, i64, String, i64, i64) =
                if is_waiting {
                    if roll < 500 {
                        ("queued", 0, String::new(), created, now + DAY)
                    } else {
                        (
                            "deferred",
                            2,
                            r#"{"code":"upstream","args":{"reply":"451 4.7.500 Server busy. Please try again later."}}"#.to_owned(),
                            created + 600,
                            now + DAY,
                        )
                    }
                } else if roll < 960 {
                    (
                        "sent",
                        1,
                        format!(
                            r#"{{"code":"upstream","args":{{"reply":"250 2.0.0 OK <{}@contoso.example> [Hostname=TY0PR01MB{:04}]"}}}}"#,
                            &id[..8],
                            rng.below(10_000)
                        ),
                        created + 2 + rng.below(30) as i64,
                        created,
                    )
                } else {
                    let reply = if roll < 990 {
                        r#"{"code":"upstream","args":{"reply":"550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"}}"#
                    } else {
                        r#"{"code":"upstream","args":{"reply":"554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException"}}"#
                    };
                    ("failed", 1, reply.to_owned(), created + 3, created)
                };
            if state != "queued" {
                *stats.entry((updated / 3600, state)).or_default() += 1;
            }
            sqlx::query(
                "INSERT INTO jobs (id, account_id, submitter, source, mail_from, rcpt_to, header_from, subject, size, state, attempts, next_attempt_at, last_reply, via_account_id, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )
            .bind(&id)
            .bind(account)
            .bind(SUBMITTER)
            .bind(format!("10.{}.{}.{}", site, device / 250, device % 250 + 1))
            .bind(&mail_from)
            .bind(&rcpt_json)
            .bind(&mail_from)
            .bind(&subject)
            .bind(size)
            .bind(state)
            .bind(attempts)
            .bind(next)
            .bind(Some(reply).filter(|r| !r.is_empty()))
            .bind((state == "sent" || state == "failed").then_some(account))
            .bind(created)
            .bind(updated)
            .execute(&mut *tx)
            .await
            .unwrap();
            // Bodies of sent messages are dropped; the others keep theirs.
            if state != "sent" {
                sqlx::query("INSERT INTO messages (job_id, body) VALUES (?1, ?2)")
                    .bind(&id)
                    .bind(&body[..])
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
        }
        // Into the search index with their own transaction, as the server's
        // writer would have taken them (a store that grew by intake has its
        // index in smaller pieces: see the README's figures).
        sqlx::raw_sql(
            "INSERT INTO jobs_search(rowid, mail_from, rcpt_to, subject, header_from) \
               SELECT rowid, mail_from, rcpt_to, subject, header_from FROM jobs \
               WHERE rowid > (SELECT indexed_to FROM search_mark); \
             UPDATE search_mark SET indexed_to = (SELECT max(rowid) FROM jobs)",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        done += chunk;
    }
    let mut tx = db.begin().await.unwrap();
    for ((hour, state), n) in stats {
        sqlx::query(
            "INSERT INTO job_stats (hour, state, n) VALUES (?1, ?2, ?3) \
             ON CONFLICT (hour, state) DO UPDATE SET n = n + excluded.n",
        )
        .bind(hour)
        .bind(state)
        .bind(n)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("ANALYZE").execute(&mut db).await.unwrap();
    db.close().await.unwrap();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "generated {finished} finished + {waiting} waiting jobs in {:.1} s; store {:.0} MiB",
        began.elapsed().as_secs_f64(),
        size as f64 / (1024.0 * 1024.0)
    );
    History { accounts, now }
}

/// Sends `n` messages over `c` connections and returns the time until the
/// last one was accepted, and how many were refused.
async fn intake(smtp: SocketAddr, tag: &str, n: usize, c: usize) -> (Duration, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..c)
        .map(|_| {
            let next = next.clone();
            let tag = tag.to_string();
            tokio::spawn(async move {
                let from = "scanner@printer.local";
                let (mut cl, _) = Client::connect(smtp).await.expect("connect");
                cl.login_plain(SUBMITTER, PASSWORD).await.expect("login");
                let mut refused = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let key = format!("{tag}{i}");
                    let m = testkit::message(from, &key, &format!("{key}-a1"), 2000);
                    let sent = cl.send(from, "sink@example.com", &m).await.expect("send");
                    if !sent.reply.starts_with("250") {
                        refused += 1;
                    }
                }
                cl.quit().await;
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for t in tasks {
        refused += t.await.expect("intake task");
    }
    (start.elapsed(), refused)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// p50 and p99 of `r` GETs of `path` (each must answer 200).
async fn latency(b: &Browser, path: &str, r: usize) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(r);
    for _ in 0..r {
        let start = Instant::now();
        let page = b.get(path).await;
        times.push(start.elapsed());
        assert_eq!(page.status, 200, "{path}: {}", page.body);
    }
    times.sort_unstable();
    (percentile(&times, 50.0), percentile(&times, 99.0))
}

/// What one store measured.
#[derive(Default)]
struct Measured {
    startup: Duration,
    /// Time until the last `250` of each intake round.
    took: Vec<Duration>,
    /// The server's CPU time from each round's start until it was quiet
    /// again (its deliveries included).
    cpu: Vec<Duration>,
    refused: usize,
    /// The size of the store's write-ahead log after the intake rounds.
    wal: u64,
    /// (name, path, p50, p99) per view.
    views: Vec<(String, String, Duration, Duration)>,
}

impl Measured {
    fn accept_rate(&self, per_round: usize) -> f64 {
        let took: f64 = self.took.iter().map(Duration::as_secs_f64).sum();
        (per_round * self.took.len()) as f64 / took
    }

    fn cpu_per_message(&self, per_round: usize) -> Duration {
        let cpu: Duration = self.cpu.iter().sum();
        cpu / u32::try_from(per_round * self.cpu.len())
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

/// The views of the history to time: the default and each filter, at the
/// API and the page.
fn views(h: &History) -> Vec<(String, String)> {
    let account = h.accounts.last().copied().unwrap_or(1);
    let (since, until) = (h.now - 31 * DAY, h.now - 30 * DAY);
    // The same day as the page's filter takes it (the display time zone
    // is UTC in the prepared store).
    let day = time::OffsetDateTime::from_unix_timestamp(since)
        .map(|t| t.date().to_string())
        .unwrap_or_default();
    let mut v = Vec::new();
    for (name, q) in [
        ("default", String::new()),
        ("state=sent", "state=sent".to_owned()),
        ("state=failed", "state=failed".to_owned()),
        ("state=deferred", "state=deferred".to_owned()),
        ("state=queued", "state=queued".to_owned()),
        ("account", format!("account={account}")),
        ("search sender", "q=mfp-042%40branch6".to_owned()),
        ("search recipient", "q=user0042%40contoso".to_owned()),
        ("search, no match", "q=nobody%40nowhere".to_owned()),
        // Every job matches: the trigram index names them all.
        ("search, in every job", "q=contoso".to_owned()),
        (
            "date range (one day)",
            format!("since={since}&until={until}"),
        ),
    ] {
        let sep = if q.is_empty() { "" } else { "&" };
        v.push((
            format!("API {name}"),
            format!("/api/v1/jobs?limit=100{sep}{q}"),
        ));
        // The page takes days where the API takes seconds.
        let page_q = if name.starts_with("date") {
            format!("since={day}&until={day}")
        } else {
            q
        };
        v.push((format!("page {name}"), format!("/jobs?{page_q}")));
    }
    v.push((
        "API deep: offset 100000".to_owned(),
        "/api/v1/jobs?limit=100&offset=100000".to_owned(),
    ));
    v.push((
        "page deep: page 1000".to_owned(),
        "/jobs?page=1000".to_owned(),
    ));
    v
}

/// Waits until the server has spent under 5 ms of CPU in 300 ms (its
/// deliveries of the last round done), at most a minute; returns the CPU it
/// spent since `from`.
async fn quiet(hk: &Hikyaku, from: Duration) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = hk.cpu_time().unwrap_or_default();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = hk.cpu_time().unwrap_or_default();
        if now.saturating_sub(last) < Duration::from_millis(5) {
            return now.saturating_sub(from);
        }
        last = now;
    }
    last.saturating_sub(from)
}

async fn start(bin: &Path, data: &Path, work: &Path) -> (Hikyaku, Duration) {
    let mut hk = Hikyaku::new(bin, data, work, 8);
    let began = Instant::now();
    hk.start().await;
    let startup = began.elapsed();
    quiet(&hk, Duration::ZERO).await;
    (hk, startup)
}

/// One intake round into `hk`: time until the last `250`, and the CPU the
/// server spent until it was quiet again.
async fn round(hk: &Hikyaku, tag: &str, a: &Args, m: &mut Measured) {
    let cpu = hk.cpu_time().unwrap_or_default();
    let (took, refused) = intake(hk.smtp, tag, a.messages / a.rounds, a.connections).await;
    m.took.push(took);
    m.cpu.push(quiet(hk, cpu).await);
    m.refused += refused;
}

async fn views_of(hk: &Hikyaku, h: &History, a: &Args, m: &mut Measured) {
    let b = Browser {
        client: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: format!("http://{}", hk.web),
        lang: "en",
    };
    b.login("admin", testkit::ADMIN_PASSWORD).await;
    for (name, path) in views(h) {
        // One request first, so that caches are as warm as in use.
        let _ = b.get(&path).await;
        let (p50, p99) = latency(&b, &path, a.requests).await;
        m.views.push((name, path, p50, p99));
    }
}

async fn run(a: Args) {
    let fc = testkit::start_fakecloud().await;
    let empty = testkit::prepare_data_dir(&fc).await;
    let full = testkit::prepare_data_dir(&fc).await;
    let h = generate(full.path(), a.finished, a.waiting).await;
    let bin = Path::new(env!("CARGO_BIN_EXE_hikyaku"));
    let (ew, fw) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut e, mut f) = (Measured::default(), Measured::default());
    // Both servers run side by side; the intake rounds take turns (the
    // order swapped each round), each after the other server is quiet, so
    // that a slow spell of the machine falls on both alike.
    let (mut ehk, es) = start(bin, empty.path(), ew.path()).await;
    let (mut fhk, fs) = start(bin, full.path(), fw.path()).await;
    (e.startup, f.startup) = (es, fs);
    let (mut ecold, mut fcold) = (Measured::default(), Measured::default());
    for r in 0..a.warmup {
        let (ftag, etag) = (format!("fw{r}-"), format!("ew{r}-"));
        round(&ehk, &etag, &a, &mut ecold).await;
        round(&fhk, &ftag, &a, &mut fcold).await;
    }
    for r in 0..a.rounds {
        let (ftag, etag) = (format!("f{r}-"), format!("e{r}-"));
        if r % 2 == 0 {
            round(&ehk, &etag, &a, &mut e).await;
            round(&fhk, &ftag, &a, &mut f).await;
        } else {
            round(&fhk, &ftag, &a, &mut f).await;
            round(&ehk, &etag, &a, &mut e).await;
        }
    }
    let wal = |dir: &Path| {
        std::fs::metadata(dir.join("hikyaku.sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    (e.wal, f.wal) = (wal(empty.path()), wal(full.path()));
    views_of(&ehk, &h, &a, &mut e).await;
    views_of(&fhk, &h, &a, &mut f).await;
    ehk.terminate(Duration::from_secs(20));
    fhk.terminate(Duration::from_secs(20));
    if let Some(keep) = &a.keep {
        std::fs::create_dir_all(keep).unwrap();
        std::fs::copy(
            full.path().join("hikyaku.sqlite"),
            keep.join("hikyaku.sqlite"),
        )
        .unwrap();
    }
    let per_round = a.messages / a.rounds;
    println!(
        "history: {} finished + {} waiting jobs vs an empty store; {} rounds of {} messages over {} connections after {} warm-up round(s); {} requests per view",
        a.finished, a.waiting, a.rounds, per_round, a.connections, a.warmup, a.requests
    );
    println!(
        "start-up to serving: empty {}, full {} (budget: 2 s)",
        ms(e.startup),
        ms(f.startup)
    );
    let (er, fr) = (e.accept_rate(per_round), f.accept_rate(per_round));
    println!(
        "intake accept rate: empty {er:.1} messages/s, full {fr:.1} messages/s = {:.2}x (budget: 0.9x); refused {} / {}",
        fr / er,
        e.refused,
        f.refused
    );
    let by_round = |e: &[Duration], f: &[Duration]| {
        e.iter()
            .zip(f)
            .map(|(e, f)| format!("{:.2}", e.as_secs_f64() / f.as_secs_f64()))
            .collect::<Vec<String>>()
            .join(", ")
    };
    println!(
        "  full / empty rate, round by round: {}",
        by_round(&e.took, &f.took)
    );
    // CPU: full / empty, so the inverse of the rates' order.
    println!(
        "  full / empty CPU per message, round by round: {}",
        by_round(&f.cpu, &e.cpu)
    );
    if a.warmup > 0 {
        println!(
            "  warm-up rounds (first after start, not counted above): full / empty rate {}, CPU per message {}",
            by_round(&ecold.took, &fcold.took),
            by_round(&fcold.cpu, &ecold.cpu)
        );
    }
    let (ec, fc) = (e.cpu_per_message(per_round), f.cpu_per_message(per_round));
    println!(
        "server CPU per message (intake and delivery): empty {:.0} µs, full {:.0} µs = {:.2}x",
        ec.as_secs_f64() * 1e6,
        fc.as_secs_f64() * 1e6,
        fc.as_secs_f64() / ec.as_secs_f64()
    );
    println!(
        "write-ahead log after the intake: empty {:.1} MiB, full {:.1} MiB",
        e.wal as f64 / (1024.0 * 1024.0),
        f.wal as f64 / (1024.0 * 1024.0)
    );
    println!(
        "{:<34} {:>21} {:>21}",
        "view", "empty p50 / p99", "full p50 / p99"
    );
    let mut worst = Duration::ZERO;
    for ((name, _, ep50, ep99), (_, _, fp50, fp99)) in e.views.iter().zip(&f.views) {
        worst = worst.max(*fp99);
        println!(
            "{name:<34} {:>21} {:>21}",
            format!("{} / {}", ms(*ep50), ms(*ep99)),
            format!("{} / {}", ms(*fp50), ms(*fp99)),
        );
    }
    println!(
        "worst p99 with the full store: {} (budget: 100 ms)",
        ms(worst)
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and
    // the suite has no time for a million jobs.
    if !std::env::args().any(|a| a == "--bench") {
        println!("history: not run under cargo test; see benches/history.rs for cargo bench");
        return;
    }
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(a));
}
