//! Load tool: end-to-end throughput, accept latency and memory of the real
//! `hikyaku` binary against fakecloud, next to a baseline that sends the
//! same messages straight to fakecloud's Exchange listener (STARTTLS +
//! XOAUTH2, one authenticated session per connection).
//!
//! ```sh
//! cargo bench -p hikyaku --bench load -- --messages 2000 --connections 8
//! cargo bench -p hikyaku --bench load --profile dev -- --messages 200 --connections 8   # CI
//! ```
//!
//! Options: `--messages N` (2000), `--connections C` (8), `--size BYTES`
//! (body size, 2000), `--workers W` (hikyaku's delivery.workers, 8),
//! `--upstream-rtt MS` (0): fakecloud holds each SMTP reply this long, as
//! a link to the cloud would; the load tool reaches hikyaku without delay,
//! as a device on hikyaku's LAN does. `--after SECS` (60): how long after
//! the load the last memory figure is taken.
//!
//! Footprint: RSS idle after set-up, SMTP logins and a few Remote UI
//! logins; the peak RSS sampled during the load; RSS `--after` seconds
//! after the last message arrived. For big messages:
//! `cargo bench -p hikyaku --bench load -- --size 10485760 --messages 48 --connections 8`
//!
//! `--compare PATH` also runs another hikyaku binary (the previous release,
//! say) through the same load, right after this one, for an A/B in one
//! invocation.
//!
//! `--transport smtp,graph,gmail_api` measures the transports side by side
//! instead (one run each, same fakecloud, same load): messages/s end to end
//! and hikyaku's CPU per message, with the ratios of each to the first.
//! smtp and graph go through the delegated Microsoft account; gmail_api
//! through a Google service account (domain-wide delegation) added for the
//! run, the submitter bound to it. `--transport graph` alone measures one.
//! `--compare-stores` instead measures the store: hikyaku on SQLite, on
//! PostgreSQL (a throw-away server started for the run, fsync on) and two
//! instances on that PostgreSQL with the load split across both intakes,
//! one after the other through the same load, and prints accept rate,
//! end-to-end rate, CPU per message (hikyaku's and the database server's)
//! and RSS for each, with the ratios. `--store postgres` and
//! `--instances 2` measure one such set-up alone. `--rounds R` runs the
//! set-ups R times, taking turns (the order reversed every other round),
//! and gives each ratio per round and their median. `--shared-threads N`
//! starts each instance of a set-up with several with N runtime threads
//! (`TOKIO_WORKER_THREADS`), as each would have on a host of its own with
//! its share of this machine's cores; one instance keeps one per core.
//!
//! `--binaries NAME=PATH,NAME=PATH` instead runs each of several hikyaku
//! binaries (the same code built with different allocators, say) through
//! the same load one after the other and prints their throughput, CPU per
//! message and footprint as one table. With `--compare-stores` (or
//! `--store`), each set-up runs each binary in turn (which goes first
//! alternating by round), and the ratios are given per binary. Each run
//! starts once the previous one's writes are on disk (`sync`, and
//! `CHECKPOINT` for PostgreSQL) and its database is dropped.
//!
//! A third run sends the baseline's traffic through a process that only
//! forwards bytes (no SMTP, no TLS termination, no disk): the floor of what
//! any relay in the path costs on this machine, side by side with the rest.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use testkit::{Client, Hikyaku, MAILBOX, PASSWORD, SUBMITTER};

struct Args {
    messages: usize,
    connections: usize,
    size: usize,
    workers: u64,
    upstream_rtt_ms: usize,
    /// Seconds after the load before the last memory figure (60).
    after_secs: u64,
    /// Another hikyaku binary (e.g. the previous release) measured in the
    /// same invocation, against the same fakecloud.
    compare: Option<std::path::PathBuf>,
    /// `--transport`: the transports to measure side by side (empty: the
    /// intake-versus-baseline run).
    transports: Vec<String>,
    /// The store set-ups to measure instead of the baseline comparison.
    stores: Vec<Setup>,
    store: Option<Engine>,
    instances: usize,
    /// `--pg-statements`: print the statements and commits per message of
    /// each PostgreSQL set-up (pg_stat_statements).
    pg_statements: bool,
    /// `--rounds R` (1): the store set-ups take turns R times, the order
    /// reversed every other round, and each ratio is given per round and
    /// as their median: on a shared machine one run of each is not enough.
    rounds: usize,
    /// `--binaries NAME=PATH,...`: hikyaku binaries (the same code built
    /// with different allocators, say) measured one after the other.
    binaries: Vec<(String, std::path::PathBuf)>,
    /// `--shared-threads N`: the runtime threads of each instance of a
    /// set-up with several (`TOKIO_WORKER_THREADS`), as if each had its
    /// share of the machine's cores; one instance keeps its default (one
    /// per core).
    shared_threads: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Engine {
    Sqlite,
    Postgres,
}

/// A store and how many instances share it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Setup {
    engine: Engine,
    instances: usize,
}

impl Setup {
    fn name(&self) -> String {
        let engine = match self.engine {
            Engine::Sqlite => "SQLite",
            Engine::Postgres => "PostgreSQL",
        };
        let s = if self.instances == 1 { "" } else { "s" };
        format!("{engine}, {} instance{s}", self.instances)
    }
}

fn args() -> Args {
    let mut a = Args {
        messages: 2000,
        connections: 8,
        size: 2000,
        workers: 8,
        upstream_rtt_ms: 0,
        after_secs: 60,
        compare: None,
        transports: Vec::new(),
        stores: Vec::new(),
        store: None,
        instances: 1,
        pg_statements: false,
        rounds: 1,
        binaries: Vec::new(),
        shared_threads: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match flag.as_str() {
            "--messages" => a.messages = value("--messages").max(1),
            "--connections" => a.connections = value("--connections").max(1),
            "--size" => a.size = value("--size"),
            "--workers" => a.workers = value("--workers").max(1) as u64,
            "--upstream-rtt" => a.upstream_rtt_ms = value("--upstream-rtt"),
            "--instances" => a.instances = value("--instances").clamp(1, 8),
            "--store" => {
                a.store = Some(match it.next().map(String::as_str) {
                    Some("sqlite") => Engine::Sqlite,
                    Some("postgres") => Engine::Postgres,
                    _ => panic!("--store needs sqlite or postgres"),
                })
            }
            "--compare-stores" => {
                a.stores = vec![
                    Setup {
                        engine: Engine::Sqlite,
                        instances: 1,
                    },
                    Setup {
                        engine: Engine::Postgres,
                        instances: 1,
                    },
                    Setup {
                        engine: Engine::Postgres,
                        instances: 2,
                    },
                ]
            }
            "--pg-statements" => a.pg_statements = true,
            "--rounds" => a.rounds = value("--rounds").max(1),
            "--shared-threads" => a.shared_threads = Some(value("--shared-threads").max(1)),
            "--after" => a.after_secs = value("--after") as u64,
            "--compare" => {
                a.compare = Some(
                    it.next()
                        .map(std::path::PathBuf::from)
                        .unwrap_or_else(|| panic!("--compare needs the path of a hikyaku binary")),
                )
            }
            "--transport" => a.transports = transports_arg(it.next()),
            "--binaries" => a.binaries = binaries_arg(it.next()),
            // cargo bench passes --bench; ignore anything else.
            _ => {}
        }
    }
    if a.stores.is_empty() && (a.store.is_some() || a.instances > 1) {
        let engine = a.store.unwrap_or(Engine::Postgres);
        assert!(
            engine == Engine::Postgres || a.instances == 1,
            "several instances need --store postgres"
        );
        a.stores = vec![Setup {
            engine,
            instances: a.instances,
        }];
    }
    a
}

/// Where the load goes.
#[derive(Clone)]
enum Target {
    /// hikyaku's intake, AUTH PLAIN as the submitter.
    Intake(SocketAddr),
    /// fakecloud's Exchange listener, STARTTLS + XOAUTH2.
    Exchange {
        addr: SocketAddr,
        ca_pem: String,
        token: String,
    },
}

impl Target {
    async fn open(&self) -> std::io::Result<Client> {
        match self {
            Target::Intake(addr) => {
                let (mut c, _) = Client::connect(*addr).await?;
                c.login_plain(SUBMITTER, PASSWORD).await?;
                Ok(c)
            }
            Target::Exchange {
                addr,
                ca_pem,
                token,
            } => {
                let (c, _) = Client::connect(*addr).await?;
                c.login_xoauth2(ca_pem, MAILBOX, token).await
            }
        }
    }

    fn from(&self) -> &'static str {
        match self {
            Target::Intake(_) => "scanner@printer.local",
            Target::Exchange { .. } => MAILBOX,
        }
    }
}

struct Run {
    elapsed: Duration,
    latencies: Vec<Duration>,
    refused: usize,
}

/// Sends `n` messages over `c` connections (each opened once, reopened on
/// error) and returns when every message got its final reply.
async fn load(target: &Target, tag: &str, n: usize, c: usize, size: usize) -> Run {
    load_split(std::slice::from_ref(target), tag, n, c, size).await
}

/// [`load`] with the connections spread over `targets` in turn.
async fn load_split(targets: &[Target], tag: &str, n: usize, c: usize, size: usize) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..c)
        .map(|i| {
            let target = targets[i % targets.len()].clone();
            let next = next.clone();
            let tag = tag.to_string();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut refused = 0;
                let mut conn: Option<Client> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let key = format!("{tag}{i}");
                    let m = testkit::message(target.from(), &key, &format!("{key}-a1"), size);
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        if conn.is_none() {
                            match target.open().await {
                                Ok(cl) => conn = Some(cl),
                                Err(e) => {
                                    assert!(tries < 20, "cannot open a session: {e}");
                                    // A client's pause before it tries again.
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    continue;
                                }
                            }
                        }
                        let Some(cl) = conn.as_mut() else { continue };
                        match cl.send(target.from(), "sink@example.com", &m).await {
                            Ok(sent) => {
                                if sent.reply.starts_with("250") {
                                    latencies.push(sent.latency);
                                } else {
                                    eprintln!("refused: {}", sent.reply.trim());
                                    refused += 1;
                                }
                                break;
                            }
                            Err(e) => {
                                assert!(tries < 20, "cannot send: {e}");
                                conn = None;
                            }
                        }
                    }
                }
                if let Some(cl) = conn {
                    cl.quit().await;
                }
                (latencies, refused)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    let mut refused = 0;
    for t in tasks {
        let (l, r) = t.await.expect("load task");
        latencies.extend(l);
        refused += r;
    }
    latencies.sort_unstable();
    Run {
        elapsed: start.elapsed(),
        latencies,
        refused,
    }
}

/// Runs futures concurrently on the runtime and collects their outputs.
async fn futures_join<T: Send + 'static>(
    futures: impl Iterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

/// Percentile (0–100) of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// What one hikyaku binary did under the load.
struct Measured {
    intake: Run,
    accepted: Duration,
    end_to_end: Duration,
    idle: testkit::Memory,
    after_logins: testkit::Memory,
    after: testkit::Memory,
    cpu_before: (Option<Duration>, Option<Duration>),
    cpu_after: (Option<Duration>, Option<Duration>),
    footprint: Footprint,
}

/// Runs the binary at `bin` on a fresh data directory through the load:
/// idle memory, the logins, then `n` messages until fakecloud has them all.
async fn measure(bin: &Path, fc: &fakecloud::FakeCloud, a: &Args) -> Measured {
    let (n, c) = (a.messages, a.connections);
    let data = testkit::prepare_data_dir(fc).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut hk = Hikyaku::new(bin, data.path(), work.path(), a.workers);
    hk.start().await;
    // The memory figures are taken after a settling time: what is measured
    // is a process at rest, which no state of its own announces.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = hk.memory().expect("/proc/PID/status");
    // C logins at once, no message: what AUTH PLAIN (Argon2id) costs.
    let smtp = hk.smtp;
    let logins: Vec<Client> = futures_join(
        (0..c).map(move |_| async move { Target::Intake(smtp).open().await.expect("login") }),
    )
    .await;
    for l in logins {
        l.quit().await;
    }
    // Settling time before a memory figure, as above.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_logins = hk.memory().expect("/proc/PID/status");
    let settled_memory = ui_logins_then_idle(&hk).await;

    // hikyaku: accepted by the intake, then delivered to fakecloud.
    let before = fc.inbox().len();
    let cpu_before = (hk.cpu_time(), testkit::cpu_time(None));
    let sampler = RssSampler::start(hk.pid().expect("running"));
    let start = Instant::now();
    let intake = load(&Target::Intake(hk.smtp), "h", n, c, a.size).await;
    let accepted = start.elapsed();
    let want = before + n - intake.refused;
    let timeout = Duration::from_secs(60 + (n as u64) / 5);
    let arrived = fc.wait_for_inbox(want, timeout).await.len() - before;
    let end_to_end = start.elapsed();
    let cpu_after = (hk.cpu_time(), testkit::cpu_time(None));
    assert_eq!(
        arrived,
        n - intake.refused,
        "not everything arrived in {timeout:?}:\n{}",
        hk.log_tail()
    );
    let peak_kib = sampler.stop().await;
    // Settling time before a memory figure, as above.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = hk.memory().expect("/proc/PID/status");
    let later_memory = memory_after(
        &hk,
        Duration::from_secs(a.after_secs).saturating_sub(Duration::from_millis(500)),
    )
    .await;

    hk.terminate(Duration::from_secs(20));
    Measured {
        intake,
        accepted,
        end_to_end,
        idle,
        after_logins,
        after,
        cpu_before,
        cpu_after,
        footprint: Footprint {
            settled: settled_memory.rss_kib,
            settled_file: settled_memory.file_kib,
            peak_kib,
            later: later_memory.rss_kib,
            later_file: later_memory.file_kib,
        },
    }
}

/// CPU time of the run's PostgreSQL server: the postmaster and its
/// children (one per connection), with that of its ended children.
fn postgres_cpu() -> Duration {
    let Some(server) = testkit::postgres::shared()
        .ok()
        .and_then(|c| c.server_pid())
    else {
        return Duration::ZERO;
    };
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let pid = stat
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // Field 4 of the line is the parent's pid; utime, stime, cutime and
        // cstime are fields 14 to 17.
        let parent = fields.get(1).and_then(|f| f.parse::<u32>().ok());
        if pid != Some(server) && parent != Some(server) {
            continue;
        }
        ticks += (11..=14)
            .filter_map(|i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum::<u64>();
    }
    Duration::from_millis(ticks * 10)
}

/// What one store set-up did under the load.
struct StoreRun {
    setup: Setup,
    accepted: Duration,
    end_to_end: Duration,
    latencies: Vec<Duration>,
    refused: usize,
    hikyaku_cpu: Duration,
    database_cpu: Duration,
    idle_rss_kib: u64,
    peak_rss_kib: u64,
    /// Upstream SMTP sessions opened during the run (each a TLS handshake
    /// and an XOAUTH2 login).
    upstream_sessions: u64,
}

/// A data directory with an Active Microsoft account on a store of its own
/// (for PostgreSQL: a fresh database of the run's cluster): the directory
/// and the `store.url`.
async fn prepare_store(fc: &fakecloud::FakeCloud, engine: Engine) -> (tempfile::TempDir, String) {
    match engine {
        Engine::Sqlite => (testkit::prepare_data_dir(fc).await, String::new()),
        Engine::Postgres => {
            let url = testkit::postgres::database();
            let dir = tempfile::tempdir().expect("tempdir");
            let mut config = testkit::test_config(dir.path());
            config.store.url = url.clone();
            let (mut server, _admin) = testkit::prepare_with(fc, dir, config).await;
            server.stop().await;
            let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tempdir"));
            (dir, url)
        }
    }
}

/// The run's PostgreSQL server, shared by its set-ups.
fn pg_cluster() -> &'static testkit::postgres::Cluster {
    testkit::postgres::shared().expect("PostgreSQL")
}

/// The database of a `postgres://…/NAME?…` URL.
fn database_name(url: &str) -> String {
    url.rsplit('/')
        .next()
        .and_then(|t| t.split('?').next())
        .expect("database name")
        .to_owned()
}

/// Puts the previous run's writes on disk before the next run starts:
/// the kernel's dirty pages (`sync`) and, for PostgreSQL, the shared
/// buffers (`CHECKPOINT`), which would otherwise be written during the
/// next run and slow its commits down.
fn settle(engine: Engine) {
    if engine == Engine::Postgres {
        pg_cluster().sql("CHECKPOINT").expect("CHECKPOINT");
    }
    let synced = std::process::Command::new("sync").status();
    assert!(
        synced.as_ref().is_ok_and(|s| s.success()),
        "sync: {synced:?}"
    );
}

/// Runs `setup` through the load: its instances on one store, the
/// connections spread over their intakes, until fakecloud has every message.
async fn measure_store(bin: &Path, fc: &fakecloud::FakeCloud, a: &Args, setup: Setup) -> StoreRun {
    let (n, c) = (a.messages, a.connections);
    let (first, url) = prepare_store(fc, setup.engine).await;
    // Every instance has a data directory of its own with the same
    // master.key (the deployment the README describes).
    let mut dirs = vec![first];
    for _ in 1..setup.instances {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            dirs[0].path().join("master.key"),
            dir.path().join("master.key"),
        )
        .expect("copy master.key");
        dirs.push(dir);
    }
    let works: Vec<tempfile::TempDir> = dirs
        .iter()
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut instances: Vec<Hikyaku> = Vec::new();
    for (dir, work) in dirs.iter().zip(&works) {
        let mut hk = Hikyaku::new(bin, dir.path(), work.path(), a.workers);
        if let Some(threads) = a.shared_threads.filter(|_| setup.instances > 1) {
            hk.set_env("TOKIO_WORKER_THREADS", &threads.to_string());
        }
        if !url.is_empty() {
            let mut config = std::fs::read_to_string(&hk.config_path).expect("config");
            config.push_str(&format!("\n[store]\nurl = {url:?}\n"));
            std::fs::write(&hk.config_path, config).expect("config");
        }
        instances.push(hk);
    }
    for hk in &mut instances {
        hk.start().await;
    }
    // Memory at rest, after a settling time (see `measure`).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_kib = instances
        .iter()
        .map(|hk| hk.memory().expect("/proc/PID/status").rss_kib)
        .sum();
    let targets: Vec<Target> = instances.iter().map(|hk| Target::Intake(hk.smtp)).collect();
    let cpu = |instances: &[Hikyaku]| -> Duration {
        instances.iter().filter_map(Hikyaku::cpu_time).sum()
    };
    let before = fc.inbox().len();
    let profile = (a.pg_statements && setup.engine == Engine::Postgres)
        .then(|| StatementProfile::start(&url));
    let (cpu0, db0) = (cpu(&instances), postgres_cpu());
    let sessions0 = fc.smtp_connections().opened;
    let start = Instant::now();
    let intake = load_split(&targets, "s", n, c, a.size).await;
    let accepted = start.elapsed();
    let want = before + n - intake.refused;
    let timeout = Duration::from_secs(60 + (n as u64) / 5);
    let arrived = fc.wait_for_inbox(want, timeout).await.len() - before;
    let end_to_end = start.elapsed();
    let (cpu1, db1) = (cpu(&instances), postgres_cpu());
    let upstream_sessions = fc.smtp_connections().opened - sessions0;
    if let Some(p) = profile {
        p.report(&setup.name(), n);
    }
    let logs: Vec<String> = instances.iter().map(Hikyaku::log_tail).collect();
    assert_eq!(
        arrived,
        n - intake.refused,
        "not everything arrived in {timeout:?}:\n{}",
        logs.join("\n---\n")
    );
    let peak_rss_kib = instances
        .iter()
        .map(|hk| hk.memory().expect("/proc/PID/status").hwm_kib)
        .sum();
    for hk in &mut instances {
        hk.terminate(Duration::from_secs(20));
    }
    if setup.engine == Engine::Postgres {
        // Its autovacuum (the bodies, the search's indexes) would
        // otherwise run during the next set-up's load.
        pg_cluster()
            .sql(&format!(
                "DROP DATABASE \"{}\" WITH (FORCE)",
                database_name(&url)
            ))
            .expect("DROP DATABASE");
    }
    StoreRun {
        setup,
        accepted,
        end_to_end,
        latencies: intake.latencies,
        refused: intake.refused,
        hikyaku_cpu: cpu1.saturating_sub(cpu0),
        database_cpu: if setup.engine == Engine::Postgres {
            db1.saturating_sub(db0)
        } else {
            Duration::ZERO
        },
        idle_rss_kib,
        peak_rss_kib,
        upstream_sessions,
    }
}

/// `--compare-stores`, `--store`, `--instances`: each set-up in turn, then
/// the ratios the budgets name.
async fn run_stores(a: &Args) {
    let (n, c) = (a.messages, a.connections);
    println!(
        "store load: {n} messages of ~{} bytes over {c} connections (split across the instances' intakes), delivery.workers = {} per instance{}",
        a.size,
        a.workers,
        a.shared_threads
            .map(|t| format!(
                ", {t} runtime thread(s) per instance where several share the machine"
            ))
            .unwrap_or_default()
    );
    if a.pg_statements {
        StatementProfile::enable();
    }
    let fc = testkit::start_fakecloud().await;
    fc.set_smtp_reply_delay(Duration::from_millis(a.upstream_rtt_ms as u64));
    let bins: Vec<(String, std::path::PathBuf)> = if a.binaries.is_empty() {
        vec![(String::new(), env!("CARGO_BIN_EXE_hikyaku").into())]
    } else {
        a.binaries.clone()
    };
    let mut runs = Vec::new();
    for round in 0..a.rounds {
        if a.rounds > 1 {
            println!("round {} of {}", round + 1, a.rounds);
        }
        // Every other round in the reverse order, so that no set-up always
        // follows the same one (a warm page cache, a busy spell).
        let mut order: Vec<Setup> = a.stores.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        // Binaries take turns within a set-up, so that both see the same
        // state of the machine, the first one in turn by round: the second
        // of two runs in a row measured up to 10 % slower (the SQLite
        // set-up, whose code both binaries shared). Within a round a
        // binary's set-ups all run in the same place, so that its ratios
        // compare like with like.
        let mut turn: Vec<&(String, std::path::PathBuf)> = bins.iter().collect();
        if round % 2 == 1 {
            turn.reverse();
        }
        for setup in order {
            for (label, bin) in turn.iter().copied() {
                settle(setup.engine);
                let r = measure_store(bin, &fc, a, setup).await;
                let per_message = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
                let name = if label.is_empty() {
                    r.setup.name()
                } else {
                    format!("{label}: {}", r.setup.name())
                };
                println!(
                    "{name}: accepted {:.1} msg/s, end to end {:.1} msg/s; accept latency p50 {}, p99 {}; CPU per message hikyaku {:.0} µs + database server {:.0} µs; RSS idle {}, peak {} (all instances); refused {}; upstream sessions opened {}",
                    n as f64 / r.accepted.as_secs_f64(),
                    n as f64 / r.end_to_end.as_secs_f64(),
                    ms(percentile(&r.latencies, 50.0)),
                    ms(percentile(&r.latencies, 99.0)),
                    per_message(r.hikyaku_cpu),
                    per_message(r.database_cpu),
                    mib(r.idle_rss_kib),
                    mib(r.peak_rss_kib),
                    r.refused,
                    r.upstream_sessions
                );
                runs.push((label.clone(), round, r));
            }
        }
    }
    let accept = |r: &StoreRun| n as f64 / r.accepted.as_secs_f64();
    let e2e = |r: &StoreRun| n as f64 / r.end_to_end.as_secs_f64();
    for (label, _) in &bins {
        let find = |round: usize, engine: Engine, instances: usize| {
            runs.iter()
                .find(|(l, r0, r)| {
                    l == label
                        && *r0 == round
                        && r.setup.engine == engine
                        && r.setup.instances == instances
                })
                .map(|(_, _, r)| r)
        };
        let of = if label.is_empty() {
            String::new()
        } else {
            format!("{label}: ")
        };
        // Each round's ratio of two set-ups run within a minute of each
        // other; the median of those is the figure.
        let ratios =
            |base: (Engine, usize), other: (Engine, usize), rate: &dyn Fn(&StoreRun) -> f64| {
                (0..a.rounds)
                    .filter_map(|round| {
                        let x = find(round, base.0, base.1)?;
                        let y = find(round, other.0, other.1)?;
                        Some(100.0 * rate(y) / rate(x))
                    })
                    .collect::<Vec<f64>>()
            };
        let pairs = [
            (
                (Engine::Sqlite, 1),
                (Engine::Postgres, 1),
                "PostgreSQL / SQLite, one instance",
                50,
            ),
            (
                (Engine::Postgres, 1),
                (Engine::Postgres, 2),
                "two instances / one, on PostgreSQL",
                90,
            ),
        ];
        for (base, other, what, budget) in pairs {
            let acc = ratios(base, other, &accept);
            if acc.is_empty() {
                continue;
            }
            let end = ratios(base, other, &e2e);
            println!(
                "{of}{what}: accept rate {} (budget: at least {budget}%), end to end {}",
                median_of(&acc),
                median_of(&end)
            );
        }
    }
}

/// `70%`, or with several rounds `78% (median of 70%, 78%, 92%)`.
fn median_of(v: &[f64]) -> String {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    };
    if v.len() == 1 {
        format!("{median:.0}%")
    } else {
        let each: Vec<String> = v.iter().map(|x| format!("{x:.0}%")).collect();
        format!("{median:.0}% (median of {})", each.join(", "))
    }
}

/// `--pg-statements`: what one PostgreSQL set-up asked of the database
/// per message — statements by kind (pg_stat_statements), transactions
/// committed and WAL flushes — to see where its round trips go.
struct StatementProfile {
    database: String,
    commits: i64,
    wal_syncs: i64,
    wal_bytes: i64,
}

impl StatementProfile {
    /// Loads pg_stat_statements into the run's cluster (a restart, before
    /// any set-up uses it).
    fn enable() {
        let c = pg_cluster();
        c.sql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            .expect("ALTER SYSTEM");
        c.stop().expect("stop PostgreSQL");
        c.restart().expect("restart PostgreSQL");
        c.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .expect("pg_stat_statements (Debian's postgresql package has it)");
    }

    fn counters(database: &str) -> (i64, i64, i64) {
        let c = pg_cluster();
        let commits = c
            .sql(&format!(
                "SELECT pg_stat_force_next_flush(); SELECT xact_commit FROM pg_stat_database WHERE datname = '{database}'"
            ))
            .expect("pg_stat_database");
        let syncs = c
            .sql("SELECT wal_sync || '|' || wal_bytes FROM pg_stat_wal")
            .expect("pg_stat_wal");
        let last = |s: &str, field: usize| {
            s.lines()
                .last()
                .and_then(|l| l.split('|').nth(field))
                .and_then(|f| f.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as i64
        };
        (last(&commits, 0), last(&syncs, 0), last(&syncs, 1))
    }

    fn start(url: &str) -> Self {
        let database = database_name(url);
        pg_cluster()
            .sql("SELECT pg_stat_statements_reset()")
            .expect("pg_stat_statements_reset");
        let (commits, wal_syncs, wal_bytes) = Self::counters(&database);
        StatementProfile {
            database,
            commits,
            wal_syncs,
            wal_bytes,
        }
    }

    fn report(self, name: &str, n: usize) {
        let (commits, wal_syncs, wal_bytes) = Self::counters(&self.database);
        // Per statement kind: calls per message, then per call the time the
        // server spent executing it, the shared buffers it touched and
        // dirtied, and the WAL it wrote (where its CPU goes).
        let rows = pg_cluster()
            .sql(&format!(
                "SELECT s.calls, round((s.total_exec_time * 1000 / s.calls)::numeric, 1) || ' µs, ' \
                 || round((s.shared_blks_hit + s.shared_blks_read)::numeric / s.calls, 1) || ' blks (' \
                 || round(s.shared_blks_dirtied::numeric / s.calls, 2) || ' dirtied), ' \
                 || round(s.wal_bytes / s.calls) || ' WAL bytes' \
                 || '  ' || left(regexp_replace(s.query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements s \
                 JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{}' ORDER BY s.calls DESC LIMIT 30",
                self.database
            ))
            .expect("pg_stat_statements");
        let per = |x: i64| x as f64 / n as f64;
        let mut total = 0i64;
        let mut lines = Vec::new();
        for row in rows.lines() {
            let Some((calls, query)) = row.split_once('|') else {
                continue;
            };
            let calls: i64 = calls.parse().unwrap_or(0);
            total += calls;
            lines.push(format!("  {:6.2}  {query}", per(calls)));
        }
        println!(
            "{name}: per message {:.2} statements, {:.2} commits (transactions), {:.2} WAL flushes, {:.0} WAL bytes:\n{}",
            per(total),
            per(commits - self.commits),
            per(wal_syncs - self.wal_syncs),
            per(wal_bytes - self.wal_bytes),
            lines.join("\n")
        );
    }
}

/// The footprint figures of one run, in KiB.
struct Footprint {
    /// RSS at rest after set-up, the SMTP logins and the Remote UI logins.
    settled: u64,
    /// The file-backed part of `settled`.
    settled_file: u64,
    /// The largest RSS sampled while the load ran and was delivered.
    peak_kib: u64,
    /// RSS `--after` seconds after the load.
    later: u64,
    /// The file-backed part of `later` (the program's code, mostly).
    later_file: u64,
}

/// Remote UI logins the footprint's idle figure includes.
const UI_LOGINS: usize = 3;

/// Signs in to the Remote UI [`UI_LOGINS`] times (each a new session, one
/// Argon2 check each), opens the Portal, waits for the process to settle
/// and returns its RSS.
async fn ui_logins_then_idle(hk: &Hikyaku) -> testkit::Memory {
    for _ in 0..UI_LOGINS {
        let b = testkit::Browser {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: format!("http://{}", hk.web),
            lang: "en",
        };
        b.login("admin", PASSWORD).await;
        assert_eq!(b.get("/").await.status, 200, "the Portal after login");
    }
    // Settling time before a memory figure, as in `measure`.
    tokio::time::sleep(Duration::from_secs(1)).await;
    hk.memory().expect("/proc/PID/status")
}

/// Samples a process's RSS every 20 ms and keeps the largest.
struct RssSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            loop {
                if let Some(m) = testkit::memory(pid) {
                    peak = peak.max(m.rss_kib);
                }
                tokio::select! {
                    _ = &mut stopped => return peak,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        });
        RssSampler { stop, task }
    }

    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.expect("sampler")
    }
}

/// Memory of `hk` after `wait`.
async fn memory_after(hk: &Hikyaku, wait: Duration) -> testkit::Memory {
    tokio::time::sleep(wait).await;
    hk.memory().expect("/proc/PID/status")
}

/// Prints the footprint of one run against the budget.
fn print_footprint(label: &str, f: &Footprint, connections: usize, after_secs: u64) {
    let peak_budget = (64 + connections as u64) * 1024;
    let verdict = |ok: bool| if ok { "within" } else { "OVER" };
    println!(
        "{label} footprint: idle after set-up and logins {} (budget 20 MiB, {}; of it {} maps files); peak during load {} (budget {}, {}); {after_secs} s after the load {} (budget 30 MiB, {}; of it {} maps files, mostly the program's code)",
        mib(f.settled),
        verdict(f.settled <= 20 * 1024),
        mib(f.settled_file),
        mib(f.peak_kib),
        mib(peak_budget),
        verdict(f.peak_kib <= peak_budget),
        mib(f.later),
        verdict(f.later <= 30 * 1024),
        mib(f.later_file),
    );
}

async fn run(a: Args) {
    if !a.binaries.is_empty() && a.stores.is_empty() {
        return run_binaries(&a).await;
    }
    if !a.transports.is_empty() {
        return run_transports(&a).await;
    }
    if !a.stores.is_empty() {
        return run_stores(&a).await;
    }
    let (n, c) = (a.messages, a.connections);
    println!(
        "load: {n} messages of ~{} bytes over {c} connections, hikyaku delivery.workers = {}, upstream round trip {} ms",
        a.size, a.workers, a.upstream_rtt_ms
    );
    let fc = testkit::start_fakecloud().await;
    fc.set_smtp_reply_delay(Duration::from_millis(a.upstream_rtt_ms as u64));
    let hk = measure(Path::new(env!("CARGO_BIN_EXE_hikyaku")), &fc, &a).await;
    let (intake, accepted, end_to_end) = (&hk.intake, hk.accepted, hk.end_to_end);
    let (idle, after_logins, after) = (&hk.idle, &hk.after_logins, &hk.after);
    let (cpu_before, cpu_after) = (hk.cpu_before, hk.cpu_after);
    let other = match &a.compare {
        Some(bin) => Some(measure(bin, &fc, &a).await),
        None => None,
    };

    // Baseline: the same messages straight to Exchange with XOAUTH2.
    let exchange = Target::Exchange {
        addr: fc.exchange_smtp_addr(),
        ca_pem: fc.ca_pem(),
        token: fc.issue_access_token(MAILBOX),
    };
    let base_cpu_before = testkit::cpu_time(None);
    let base = load(&exchange, "b", n, c, a.size).await;
    let base_cpu = testkit::cpu_time(None)
        .zip(base_cpu_before)
        .map(|(a, b)| a.saturating_sub(b));

    // The floor: the baseline's sessions through a byte forwarder.
    let mut forwarder = Forwarder::start(fc.exchange_smtp_addr());
    let forwarded = Target::Exchange {
        addr: forwarder.addr,
        ca_pem: fc.ca_pem(),
        token: fc.issue_access_token(MAILBOX),
    };
    let floor_cpu_before = forwarder.cpu_time();
    let floor = load(&forwarded, "f", n, c, a.size).await;
    let floor_cpu = forwarder
        .cpu_time()
        .zip(floor_cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    forwarder.stop();

    let hk_rate = n as f64 / end_to_end.as_secs_f64();
    let accept_rate = n as f64 / accepted.as_secs_f64();
    let base_rate = n as f64 / base.elapsed.as_secs_f64();
    println!(
        "hikyaku end to end: {hk_rate:.1} messages/s ({n} in {:.2} s; all accepted after {:.2} s = {accept_rate:.1} messages/s)",
        end_to_end.as_secs_f64(),
        accepted.as_secs_f64()
    );
    println!(
        "baseline direct to Exchange (XOAUTH2): {base_rate:.1} messages/s ({n} in {:.2} s)",
        base.elapsed.as_secs_f64()
    );
    println!(
        "ratio hikyaku/baseline: {:.1}% (budget: at least 80%)",
        100.0 * hk_rate / base_rate
    );
    let floor_rate = n as f64 / floor.elapsed.as_secs_f64();
    println!(
        "floor, the baseline through a byte forwarder (no SMTP, TLS or disk in it): {floor_rate:.1} messages/s = {:.1}% of the baseline; hikyaku = {:.1}% of the floor",
        100.0 * floor_rate / base_rate,
        100.0 * hk_rate / floor_rate
    );
    println!(
        "hikyaku accept latency (final dot to 250): p50 {}, p99 {}, max {}",
        ms(percentile(&intake.latencies, 50.0)),
        ms(percentile(&intake.latencies, 99.0)),
        ms(percentile(&intake.latencies, 100.0))
    );
    println!(
        "baseline latency (final dot to 250): p50 {}, p99 {}",
        ms(percentile(&base.latencies, 50.0)),
        ms(percentile(&base.latencies, 99.0))
    );
    // Where the CPU went, per message: with all three sharing the cores,
    // they bound the ratio when the baseline is bound by CPU.
    let per_message = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    if let ((Some(h0), Some(l0)), (Some(h1), Some(l1)), Some(b)) = (cpu_before, cpu_after, base_cpu)
    {
        let (hk_us, load_us, base_us) = (
            per_message(h1.saturating_sub(h0)),
            per_message(l1.saturating_sub(l0)),
            per_message(b),
        );
        println!(
            "CPU per message: hikyaku {hk_us:.0} µs, load tool + fakecloud {load_us:.0} µs; baseline (load tool + fakecloud) {base_us:.0} µs"
        );
        if let Some(f) = floor_cpu {
            println!(
                "CPU per message of the byte forwarder: {:.0} µs",
                per_message(f)
            );
        }
        // Without a round trip to wait for, the baseline is bound by CPU.
        if a.upstream_rtt_ms == 0 {
            println!(
                "the three share every core and the baseline is bound by CPU: CPU alone keeps the ratio under {:.0}%",
                100.0 * base_us / (hk_us + load_us).max(1.0)
            );
        }
    }
    println!(
        "refused: hikyaku {}, baseline {}",
        intake.refused, base.refused
    );
    // In flight at once: a message per connection and per delivery worker;
    // allow four copies of each (read buffer, job, rewrite, TLS), plus
    // SQLite's page cache (2 MiB for each of the 8 pooled connections).
    let in_flight_kib = (c as u64 + a.workers) * (a.size as u64 + 1024) * 4 / 1024 + 8 * 2048;
    println!(
        "hikyaku idle RSS: {} (budget: under 30 MiB); peak RSS (VmHWM): {}",
        mib(idle.rss_kib),
        mib(after.hwm_kib)
    );
    println!(
        "hikyaku RSS after {c} simultaneous logins (Argon2id), before any message: {}",
        mib(after_logins.rss_kib)
    );
    let growth = after.rss_kib.saturating_sub(after_logins.rss_kib);
    println!(
        "hikyaku RSS after the run: {} = that + {}; allowance for messages in flight: {} ({})",
        mib(after.rss_kib),
        mib(growth),
        mib(in_flight_kib),
        if growth <= in_flight_kib {
            "within"
        } else {
            "EXCEEDED"
        }
    );
    print_footprint("hikyaku", &hk.footprint, c, a.after_secs);
    if let (Some(o), Some(bin)) = (&other, &a.compare) {
        print_footprint(&bin.to_string_lossy(), &o.footprint, c, a.after_secs);
        let rate = |m: &Measured| n as f64 / m.end_to_end.as_secs_f64();
        let cpu = |m: &Measured| match (m.cpu_before.0, m.cpu_after.0) {
            (Some(b), Some(e)) => format!("{:.0} µs", per_message(e.saturating_sub(b))),
            _ => "unknown".to_owned(),
        };
        println!("A/B, same fakecloud and load, this binary first:");
        for (name, m) in [("this build", &hk), (&*bin.to_string_lossy(), o)] {
            println!(
                "  {name}: {:.1} messages/s = {:.1}% of the baseline; CPU per message {}; accept p50 {}; idle RSS {}, peak {}; refused {}",
                rate(m),
                100.0 * rate(m) / base_rate,
                cpu(m),
                ms(percentile(&m.intake.latencies, 50.0)),
                mib(m.idle.rss_kib),
                mib(m.after.hwm_kib),
                m.intake.refused
            );
        }
        println!(
            "  this build / the other: {:.1}%",
            100.0 * rate(&hk) / rate(o)
        );
    }
}

/// `--binaries NAME=PATH,...`: the list, each path checked.
fn binaries_arg(v: Option<&String>) -> Vec<(String, std::path::PathBuf)> {
    let list: Vec<(String, std::path::PathBuf)> = v
        .map(|v| {
            v.split(',')
                .map(|b| {
                    let (name, path) = b
                        .split_once('=')
                        .unwrap_or_else(|| panic!("--binaries needs NAME=PATH, not {b:?}"));
                    (
                        name.trim().to_owned(),
                        std::path::PathBuf::from(path.trim()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(!list.is_empty(), "--binaries needs NAME=PATH,NAME=PATH");
    for (_, path) in &list {
        assert!(path.is_file(), "--binaries: no file at {}", path.display());
    }
    list
}

/// `--binaries`: each binary through the same load against the same
/// fakecloud, one after the other, and a table of their throughput, CPU
/// and footprint with the ratios to the first.
async fn run_binaries(a: &Args) {
    let (n, c) = (a.messages, a.connections);
    println!(
        "binaries: {n} messages of ~{} bytes over {c} connections, delivery.workers = {}, {} s after",
        a.size, a.workers, a.after_secs
    );
    let fc = testkit::start_fakecloud().await;
    fc.set_smtp_reply_delay(Duration::from_millis(a.upstream_rtt_ms as u64));
    let mut runs = Vec::new();
    for (name, bin) in &a.binaries {
        let m = measure(bin, &fc, a).await;
        print_footprint(name, &m.footprint, c, a.after_secs);
        runs.push((name, m));
    }
    let rate = |m: &Measured| n as f64 / m.end_to_end.as_secs_f64();
    let cpu_us = |m: &Measured| match (m.cpu_before.0, m.cpu_after.0) {
        (Some(b), Some(e)) => e.saturating_sub(b).as_secs_f64() * 1e6 / n as f64,
        _ => f64::NAN,
    };
    println!(
        "| binary | messages/s | CPU per message | idle at start | after {c} SMTP logins | after set-up and logins | peak during load | {} s after |",
        a.after_secs
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let first_rate = runs.first().map(|(_, m)| rate(m)).unwrap_or(1.0);
    for (name, m) in &runs {
        println!(
            "| {name} | {:.1} ({:.1}%) | {:.0} µs | {} | {} | {} | {} | {} |",
            rate(m),
            100.0 * rate(m) / first_rate,
            cpu_us(m),
            mib(m.idle.rss_kib),
            mib(m.after_logins.rss_kib),
            mib(m.footprint.settled),
            mib(m.footprint.peak_kib),
            mib(m.footprint.later),
        );
    }
}

/// `--transport smtp,graph`: the list, each checked.
fn transports_arg(v: Option<&String>) -> Vec<String> {
    let list: Vec<String> = v
        .map(|v| v.split(',').map(|t| t.trim().to_owned()).collect())
        .unwrap_or_default();
    for t in &list {
        assert!(
            ["smtp", "graph", "gmail_api"].contains(&t.as_str()),
            "--transport takes smtp, graph and gmail_api (comma-separated), not {t:?}"
        );
    }
    assert!(
        !list.is_empty(),
        "--transport needs one or more of smtp, graph, gmail_api, e.g. smtp,graph,gmail_api"
    );
    list
}

/// What one transport did under the load.
struct TransportRun {
    transport: String,
    rate: f64,
    /// hikyaku's CPU per message, in µs.
    cpu_us: Option<f64>,
    accept_p50: Duration,
}

/// A data directory with the prepared Microsoft account on `transport`
/// (for graph: Graph at fakecloud, authorized again for Graph's scope).
async fn transport_data_dir(fc: &fakecloud::FakeCloud, transport: &str) -> tempfile::TempDir {
    let (mut server, admin) = testkit::prepare(fc, tempfile::tempdir().expect("tempdir")).await;
    if transport == "gmail_api" {
        gmail_api_account(fc, &server).await;
    } else if transport != "smtp" {
        let store = hikyaku::store::Store::open(server.dir.path())
            .await
            .expect("store");
        let a = store
            .account_for(hikyaku::provider::Provider::Microsoft)
            .await
            .expect("the Microsoft account");
        store.close().await;
        let page = format!("/settings/send/accounts/{}/settings", a.id);
        let r = admin
            .submit(
                &page,
                &page,
                &[
                    ("name", &a.name),
                    ("provider", "microsoft"),
                    ("cloud", "worldwide"),
                    ("endpoint", a.endpoint.as_deref().unwrap_or("")),
                    ("smtp_host", &a.smtp_host),
                    ("graph_host", &fc.api_host()),
                    ("enabled", "on"),
                    ("transport", transport),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "switch to {transport}: {}", r.body);
        // Another scope: the person authorizes again.
        let oauth = "/settings/send/oauth/microsoft";
        let r = admin
            .submit(oauth, "/settings/send/oauth/microsoft/new-code", &[])
            .await;
        assert_eq!(r.status, 303, "a new code: {}", r.body);
        let body = admin.get(oauth).await.body;
        let code = element_text(&body, "user-code")
            .unwrap_or_else(|| panic!("a user code: {}", &body[body.find("<main").unwrap_or(0)..]));
        fc.approve_user_code(&code, MAILBOX).expect("approve");
        testkit::eventually(Duration::from_secs(15), "token Active", || async {
            let p = admin.get(oauth).await;
            (element_text(&p.body, "token-status").as_deref() == Some("Active")).then_some(())
        })
        .await;
    }
    server.stop().await;
    std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tempdir"))
}

/// The mailbox of the Google service account the gmail_api run sends as.
const GMAIL_MAILBOX: &str = "load@workspace.example";

/// Adds a Google service account on the Gmail API (at fakecloud) as the
/// command line does, and binds the load's submitter to it.
async fn gmail_api_account(fc: &fakecloud::FakeCloud, server: &testkit::TestServer) {
    use hikyaku::store::accounts::{AccountSettings, Transport};
    let sa = "load@hikyaku-load.iam.gserviceaccount.com";
    let key_json = fc.new_service_account(sa);
    fc.delegate(sa, &["https://www.googleapis.com/auth/gmail.send"]);
    fc.add_workspace_user(GMAIL_MAILBOX);
    let files = tempfile::tempdir().expect("tempdir");
    let key_file = files.path().join("key.json");
    std::fs::write(&key_file, key_json).expect("key file");
    let (store, key) = hikyaku::app::open_data(&server.config)
        .await
        .expect("the store");
    let clock = hikyaku::clock::SystemClock;
    let tokens = hikyaku::app::token_service(&server.config, &store, key.clone(), Arc::new(clock))
        .await
        .expect("token service");
    let args = hikyaku::cli_app::AppAccountArgs {
        microsoft_app: false,
        tenant: None,
        client_id: None,
        client_secret_file: None,
        secret_expires: None,
        certificate: None,
        certificate_password_file: None,
        google_service_account: Some(key_file),
        mailbox: GMAIL_MAILBOX.to_owned(),
        name: None,
        cloud: "worldwide".into(),
        endpoint: None,
        transport: Some("gmail_api".into()),
    };
    let a = hikyaku::cli_app::add_app_account_cli(&store, &key, &tokens, &clock, &args)
        .await
        .expect("the Google service account");
    tokens.shutdown();
    // The Gmail API at fakecloud.
    let settings = AccountSettings {
        name: a.name.clone(),
        cloud: a.cloud,
        endpoint: a.endpoint.clone(),
        smtp_host: a.smtp_host.clone(),
        smtp_scope: None,
        graph_host: Some(fc.api_host()),
        send_as: Vec::new(),
        rate_per_minute: None,
        max_connections: None,
        enabled: true,
        transport: Transport::GmailApi,
        graph_large_messages: false,
    };
    store
        .update_account(a.id, &settings, 1)
        .await
        .expect("API host");
    // The load's submitter sends through this account.
    let sub = store
        .submitter(SUBMITTER)
        .await
        .expect("submitters")
        .expect("the load's submitter");
    store.delete_submitter(SUBMITTER).await.expect("rebind");
    store
        .add_submitter(SUBMITTER, &sub.password_hash, Some(a.id), 1)
        .await
        .expect("rebind");
    store.close().await;
}

/// The text of the element with `id` in a page.
fn element_text(body: &str, id: &str) -> Option<String> {
    let at = body.find(&format!("id=\"{id}\""))?;
    let start = body[at..].find('>')? + at + 1;
    let end = body[start..].find('<')? + start;
    Some(body[start..end].trim().to_string())
}

/// Messages fakecloud received over `transport`.
fn received(fc: &fakecloud::FakeCloud, transport: &str) -> usize {
    match transport {
        "smtp" => fc.inbox().len(),
        _ => fc.api_inbox().len(),
    }
}

async fn measure_transport(fc: &fakecloud::FakeCloud, a: &Args, transport: &str) -> TransportRun {
    let n = a.messages;
    let data = transport_data_dir(fc, transport).await;
    let work = tempfile::tempdir().expect("tempdir");
    let bin = Path::new(env!("CARGO_BIN_EXE_hikyaku"));
    let mut hk = Hikyaku::new(bin, data.path(), work.path(), a.workers);
    hk.start().await;
    let before = received(fc, transport);
    let cpu_before = hk.cpu_time();
    let start = Instant::now();
    let intake = load(
        &Target::Intake(hk.smtp),
        transport,
        n,
        a.connections,
        a.size,
    )
    .await;
    let want = before + n - intake.refused;
    let timeout = Duration::from_secs(60 + (n as u64) / 5);
    let arrived = testkit::poll_until(timeout, "every message delivered", async || {
        received(fc, transport) >= want
    })
    .await;
    let elapsed = start.elapsed();
    let cpu_after = hk.cpu_time();
    assert!(
        arrived.is_ok(),
        "not everything arrived over {transport}:\n{}",
        hk.log_tail()
    );
    hk.terminate(Duration::from_secs(20));
    TransportRun {
        transport: transport.to_owned(),
        rate: (n - intake.refused) as f64 / elapsed.as_secs_f64(),
        cpu_us: cpu_before
            .zip(cpu_after)
            .map(|(b, e)| e.saturating_sub(b).as_secs_f64() * 1e6 / n as f64),
        accept_p50: percentile(&intake.latencies, 50.0),
    }
}

/// `--transport`: each transport through the same load, side by side.
async fn run_transports(a: &Args) {
    println!(
        "load by transport: {} messages of ~{} bytes over {} connections, delivery.workers = {}, upstream round trip {} ms",
        a.messages, a.size, a.connections, a.workers, a.upstream_rtt_ms
    );
    let fc = testkit::start_fakecloud().await;
    fc.set_smtp_reply_delay(Duration::from_millis(a.upstream_rtt_ms as u64));
    let mut runs = Vec::new();
    for t in &a.transports {
        runs.push(measure_transport(&fc, a, t).await);
    }
    let first = &runs[0];
    for r in &runs {
        let cpu = r
            .cpu_us
            .map_or("unknown".to_owned(), |c| format!("{c:.0} µs"));
        let ratio = match (r.cpu_us, first.cpu_us) {
            (Some(c), Some(f)) if f > 0.0 => format!("{:.0}%", 100.0 * c / f),
            _ => "unknown".to_owned(),
        };
        println!(
            "  {}: {:.1} messages/s end to end ({:.0}% of {}); hikyaku CPU per message {cpu} ({ratio} of {}); accept p50 {}",
            r.transport,
            r.rate,
            100.0 * r.rate / first.rate,
            first.transport,
            first.transport,
            ms(r.accept_p50)
        );
    }
}

/// The byte forwarder as a child process (this binary with `--forward`), so
/// that its CPU time is its own.
struct Forwarder {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Forwarder {
    fn start(to: SocketAddr) -> Self {
        use std::io::BufRead as _;
        let exe = std::env::current_exe().expect("the load tool's path");
        let mut child = std::process::Command::new(exe)
            .args(["--bench", "--forward", &to.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the forwarder");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the forwarder's stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the forwarder's address");
        let addr = line.trim().parse().expect("the forwarder's address");
        Forwarder { child, addr }
    }

    fn cpu_time(&self) -> Option<Duration> {
        testkit::cpu_time(Some(self.child.id()))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--forward ADDR`: accepts on a free loopback port, prints it, and copies
/// the bytes of every connection to and from ADDR; the least a relay does.
/// One thread, as the cheapest forwarder would be.
fn forward(to: SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the forwarder");
        println!(
            "{}",
            listener.local_addr().expect("the forwarder's address")
        );
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and
    // the suite has no time for a load run (scripts/test runs a small one).
    if !std::env::args().any(|a| a == "--bench") {
        println!("load: not run under cargo test; see benches/load.rs for cargo bench");
        return;
    }
    let argv: Vec<String> = std::env::args().collect();
    if let Some(to) = argv
        .iter()
        .position(|a| a == "--forward")
        .and_then(|i| argv.get(i + 1))
    {
        forward(to.parse().expect("--forward needs an address"));
        return;
    }
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(a));
}
