//! Running hikyaku in production: Prometheus metrics (moving after a
//! delivery, a deferral and a refresh; refused off-loopback without an API
//! token), the Portal chart, the job history as CSV, retention with a
//! shifted clock, and a backup taken under load restored into a fresh data
//! directory.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hikyaku::queue::{JobFilter, JobState, JobStore as _};
use hikyaku::store::Store;
use prometheus_parse::{Scrape, Value};
use testkit::{ADMIN_PASSWORD, Browser, TestServer, eventually};

use crate::sending::{SUBMITTER, Smtp, job_state, message, microsoft_ready, submit};

/// The recipient fakecloud answers with 451 (a deferral).
const LATE: &str = "late@example.com";
/// The recipient fakecloud refuses with 550 (a failure).
const GONE: &str = "gone@example.com";

async fn scrape(server: &TestServer, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(server.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("scrape");
    (r.status().as_u16(), r.text().await.expect("body"))
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// The sum of the samples of `metric` with these labels (a histogram
/// counts its observations).
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(b) => b.iter().map(|c| c.count).fold(0.0, f64::max),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

/// Sends one message to `to` as the test submitter.
async fn send_to(server: &TestServer, to: &str, subject: &str) -> String {
    let (mut s, _) = Smtp::connect(server.smtp_addrs()[0]).await;
    s.cmd("EHLO printer.local").await;
    assert!(
        s.auth_plain(SUBMITTER, ADMIN_PASSWORD)
            .await
            .starts_with("235")
    );
    let r = s
        .send(
            "scanner@printer.local",
            &[to],
            &message("scanner@printer.local", subject, "body"),
        )
        .await;
    s.cmd("QUIT").await;
    r
}

async fn wait_state(admin: &Browser, subject: &str, state: &str) {
    let q: String = url::form_urlencoded::byte_serialize(subject.as_bytes()).collect();
    let path = format!("/jobs?state={state}&q={q}");
    eventually(Duration::from_secs(20), state, || async {
        admin
            .get(&path)
            .await
            .body
            .contains("<tr id=\"job-")
            .then_some(())
    })
    .await;
}

/// The jobs of the store by state, as the API lists them.
async fn states(admin: &Browser) -> Vec<String> {
    let list = admin.get("/api/v1/jobs?limit=1000").await.json();
    list.as_array()
        .expect("a list")
        .iter()
        .map(|j| j["state"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn count(states: &[String], state: &str) -> usize {
    states.iter().filter(|s| *s == state).count()
}

/// One message sent, one deferred (451), one failed (550) and its failure
/// notice sent; returns the jobs' states once nothing is in flight.
async fn three_outcomes(
    fc: &fakecloud::FakeCloud,
    server: &TestServer,
    admin: &Browser,
) -> Vec<String> {
    fc.refuse_recipient(LATE, 451);
    fc.refuse_recipient(GONE, 550);
    assert!(
        submit(server, "=HYPERLINK(\"x\") sent", "body")
            .await
            .starts_with("250")
    );
    assert!(
        send_to(server, LATE, "deferred one")
            .await
            .starts_with("250")
    );
    assert!(send_to(server, GONE, "failed one").await.starts_with("250"));
    wait_state(admin, "HYPERLINK", "sent").await;
    wait_state(admin, "deferred one", "deferred").await;
    wait_state(admin, "failed one", "failed").await;
    eventually(Duration::from_secs(20), "nothing in flight", || async {
        let s = states(admin).await;
        // The three messages and the failure notice.
        (s.len() == 4 && count(&s, "queued") + count(&s, "sending") == 0).then_some(s)
    })
    .await
}

#[tokio::test]
async fn metrics_chart_and_csv_follow_a_delivery_a_deferral_and_a_refresh() {
    let (fc, server, admin) = microsoft_ready().await;
    let (status, before) = scrape(&server, None).await;
    assert_eq!(status, 200, "loopback scrapes without a token: {before}");
    let before = parse(&before);
    let jobs = three_outcomes(&fc, &server, &admin).await;
    let (sent, failed) = (count(&jobs, "sent"), count(&jobs, "failed"));
    assert_eq!((count(&jobs, "deferred"), failed), (1, 1), "{jobs:?}");
    // A refresh from the Token Status page.
    let page = "/settings/send/oauth/microsoft";
    let r = admin
        .submit(page, "/settings/send/oauth/microsoft/refresh-token", &[])
        .await;
    assert!(r.status == 303 || r.status == 200, "{}", r.body);
    let (_, after) = scrape(&server, None).await;
    let after = parse(&after);
    let grew = |metric: &str, labels: &[(&str, &str)], by: f64| {
        let (b, a) = (
            value(&before, metric, labels),
            value(&after, metric, labels),
        );
        assert!(a - b >= by, "{metric}{labels:?}: {b} → {a}, expected +{by}");
    };
    let ms = ("account", "microsoft");
    grew("hikyaku_deliveries_total", &[ms, ("outcome", "sent")], 1.0);
    grew(
        "hikyaku_deliveries_total",
        &[ms, ("outcome", "deferred")],
        1.0,
    );
    grew(
        "hikyaku_deliveries_total",
        &[ms, ("outcome", "failed")],
        1.0,
    );
    grew("hikyaku_upstream_replies_total", &[("class", "2xx")], 1.0);
    grew("hikyaku_upstream_replies_total", &[("class", "4xx")], 1.0);
    grew("hikyaku_upstream_replies_total", &[("class", "5xx")], 1.0);
    grew(
        "hikyaku_token_refreshes_total",
        &[ms, ("outcome", "ok")],
        1.0,
    );
    grew(
        "hikyaku_intake_messages_total",
        &[("outcome", "accepted")],
        3.0,
    );
    grew("hikyaku_intake_connections_total", &[], 3.0);
    grew("hikyaku_delivery_latency_seconds", &[], 1.0);
    grew("hikyaku_store_commit_seconds", &[], 3.0);
    // Facts about this server's store, read at the scrape.
    assert!(value(&after, "hikyaku_jobs", &[("state", "deferred")]) >= 1.0);
    assert!(value(&after, "hikyaku_queue_oldest_seconds", &[]) >= 0.0);
    assert!(value(&after, "hikyaku_token_expiry_seconds", &[ms]) > 60.0);
    assert_eq!(
        value(&after, "hikyaku_token_status", &[ms, ("status", "active")]),
        1.0
    );
    assert!(value(&after, "hikyaku_store_bytes", &[]) > 0.0);
    // A refused login counts as an AUTH failure.
    let (mut s, _) = Smtp::connect(server.smtp_addrs()[0]).await;
    s.cmd("EHLO printer.local").await;
    assert!(
        s.auth_plain(SUBMITTER, "wrong password")
            .await
            .starts_with("535")
    );
    let (_, last) = scrape(&server, None).await;
    let last = parse(&last);
    assert!(
        value(&last, "hikyaku_intake_auth_failures_total", &[])
            > value(&after, "hikyaku_intake_auth_failures_total", &[])
    );

    // The Portal's chart: the last 24 hours and 30 days hold what the
    // store's jobs say (the deferral once).
    let portal = admin.get("/").await;
    assert_eq!(portal.status, 200);
    let body = &portal.body;
    assert!(body.contains("<svg viewBox"), "{body}");
    assert!(body.contains("id=\"portal-store-size\""), "{body}");
    let want = [sent.to_string(), "1".to_string(), failed.to_string()];
    for table in ["chart-daily-table", "chart-hourly-table"] {
        let total = table_row(body, table, -1);
        assert_eq!(total[1..], want, "{table} totals: {total:?}");
    }
    // Bars carry their numbers (tooltips, screen readers); hours may split.
    assert!(body.contains(", Deferred 1, Failed 1</title>"), "{body}");
    let ja = Browser::with_lang(&server, "ja");
    ja.login("admin", ADMIN_PASSWORD).await;
    let portal_ja = ja.get("/").await.body;
    assert!(portal_ja.contains("日ごとのメッセージ数"), "{portal_ja}");
    assert!(
        portal_ja.contains("件、再送待ち 1 件、失敗 1 件"),
        "{portal_ja}"
    );

    // The history as CSV: every row, formulas disarmed, filters applied.
    let csv = admin.get("/jobs.csv").await;
    assert_eq!(csv.status, 200);
    let rows = csv_rows(&csv.body);
    assert_eq!(
        rows.len(),
        1 + jobs.len(),
        "heading and every job: {rows:?}"
    );
    assert_eq!(rows[0][1], "Time");
    let subjects: Vec<&str> = rows[1..].iter().map(|r| r[6].as_str()).collect();
    assert!(
        subjects.contains(&"'=HYPERLINK(\"x\") sent"),
        "{subjects:?}"
    );
    let failed = admin.get("/jobs.csv?state=failed&q=").await;
    let rows = csv_rows(&failed.body);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][6], "failed one");
    assert_eq!(rows[1][2], "Failed");
    // The page links to the export of what it shows.
    let page = admin.get("/jobs?state=failed&q=one").await.body;
    let link = page
        .split("id=\"jobs-csv\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .and_then(|s| s.split('"').next())
        .expect("a link to the CSV export")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert_eq!(link, "/jobs.csv?state=failed&q=one");
    let rows = csv_rows(&admin.get(&link).await.body);
    assert_eq!(rows.len(), 2, "{rows:?}");
    // The API's export: codes, UTC, text/csv, the caller's role checked.
    let token = "hky_ops_csv_token_value";
    api_token(&server, token, hikyaku::roles::Role::GeneralUser).await;
    let r = reqwest::Client::new()
        .get(server.url("/api/v1/jobs.csv?state=deferred"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let kind = r.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_owned();
    assert!(kind.starts_with("text/csv"), "{kind}");
    let rows = csv_rows(&r.text().await.expect("body"));
    assert_eq!(rows[0][2], "state");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[1][2].as_str(), rows[1][5].as_str()),
        ("deferred", LATE)
    );
    let r = reqwest::Client::new()
        .get(server.url("/api/v1/jobs.csv"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 401);
}

/// The cells of the `index`th row (negative: from the end) of a table.
fn table_row(body: &str, id: &str, index: isize) -> Vec<String> {
    let start = body.find(&format!("id=\"{id}\"")).expect("the table");
    let table = &body[start..];
    let table = &table[..table.find("</table>").expect("end of table")];
    let rows: Vec<&str> = table.split("<tr>").skip(1).collect();
    let at = if index < 0 {
        rows.len() as isize + index
    } else {
        index
    };
    let row = rows[at as usize];
    row.split(['<', '>'])
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, t)| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let text = text.trim_start_matches('\u{feff}');
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("a CSV record").iter().map(str::to_owned).collect())
        .collect()
}

async fn api_token(server: &TestServer, token: &str, role: hikyaku::roles::Role) {
    let store = Store::open(server.dir.path()).await.expect("store");
    store
        .create_api_token("ops", role, &hikyaku::secrets::hash_token(token), 0)
        .await
        .expect("token");
    store.close().await;
}

/// An address of this host other than loopback (no packet is sent: a UDP
/// connect only picks the route).
fn host_address() -> IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    s.connect("192.0.2.1:9")
        .expect("this test needs a network interface besides loopback (any address)");
    let ip = s.local_addr().expect("local address").ip();
    assert!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "no address besides loopback: {ip}"
    );
    ip
}

#[tokio::test]
async fn metrics_from_another_address_need_an_api_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = testkit::test_config(dir.path());
    config.web.listen = SocketAddr::new(host_address(), 0);
    config.web.allow_plain_http = true;
    let server = TestServer::start_with(dir, config, Default::default()).await;
    let (status, body) = scrape(&server, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("api-token"), "says what to do: {body}");
    let (status, _) = scrape(&server, Some("not-a-token")).await;
    assert_eq!(status, 401);
    let token = "hky_ops_metrics_token_value";
    api_token(&server, token, hikyaku::roles::Role::GeneralUser).await;
    let (status, body) = scrape(&server, Some(token)).await;
    assert_eq!(status, 200, "{body}");
    let s = parse(&body);
    assert!(
        s.samples.iter().any(|x| x.metric == "hikyaku_jobs"),
        "{body}"
    );
}

#[tokio::test]
async fn retention_purges_finished_jobs_with_a_shifted_clock() {
    let (fc, server, admin) = microsoft_ready().await;
    let jobs = three_outcomes(&fc, &server, &admin).await;
    let store = Store::open(server.dir.path()).await.expect("store");
    let failed = store
        .jobs(
            &JobFilter {
                state: Some(JobState::Failed),
                ..Default::default()
            },
            10,
            0,
        )
        .await
        .expect("jobs");
    let failed_id = failed[0].id.clone();
    assert!(
        store.job_body(&failed_id).await.is_ok(),
        "a failed job keeps its message"
    );
    let keep = hikyaku::store::retention::Retention {
        history_days: 90,
        audit_days: 365,
    };
    // The purge's own clock is shifted (the server's keeps real time, so
    // that its delivery does not give the deferred job up as too old).
    let shifted = std::sync::Arc::new(hikyaku::clock::OffsetClock::default());
    let purge = |clock: hikyaku::clock::SharedClock| {
        let stop = tokio_util::sync::CancellationToken::new();
        let task = hikyaku::app::purge_old_records(
            store.clone(),
            clock,
            keep,
            Duration::ZERO,
            Duration::from_secs(3600),
            stop.clone(),
        );
        (stop, task)
    };
    // 89 days later nothing is old enough.
    shifted.jump(time::Duration::days(89));
    let (stop, task) = purge(shifted.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    task.await.expect("purge task");
    assert_eq!(
        store
            .jobs(&JobFilter::default(), 10, 0)
            .await
            .expect("jobs")
            .len(),
        jobs.len()
    );
    // Past 90 days the sent and the failed job go, the deferred one stays.
    shifted.jump(time::Duration::days(2));
    let (stop, task) = purge(shifted.clone());
    eventually(Duration::from_secs(10), "finished jobs purged", || async {
        (store
            .jobs(&JobFilter::default(), 10, 0)
            .await
            .expect("jobs")
            .len()
            == 1)
            .then_some(())
    })
    .await;
    stop.cancel();
    task.await.expect("purge task");
    let left = store
        .jobs(&JobFilter::default(), 10, 0)
        .await
        .expect("jobs");
    assert_eq!(left[0].state, JobState::Deferred);
    assert!(
        store.job_body(&failed_id).await.is_err(),
        "its message went with it"
    );
    assert!(
        !store.audit_entries(100, 0).await.expect("audit").is_empty(),
        "the Audit Log is kept 365 days"
    );
    assert!(job_state(&admin, "failed one").await.is_none());
    store.close().await;
}

fn hikyaku_bin(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hikyaku"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("HIKYAKU_MASTER_KEY")
        .output()
        .expect("run hikyaku")
}

fn config_file(dir: &std::path::Path, data_dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join(format!("hikyaku-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &path,
        format!("data_dir = {:?}\n", data_dir.display().to_string()),
    )
    .expect("config");
    path
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_to_a_working_server() {
    let (fc, mut server, admin) = microsoft_ready().await;
    fc.refuse_recipient(LATE, 451);
    // Deferred jobs are in the store before the backup starts.
    for i in 0..3 {
        assert!(
            send_to(&server, LATE, &format!("waiting {i}"))
                .await
                .starts_with("250")
        );
    }
    wait_state(&admin, "waiting 2", "deferred").await;
    // Load: clients keep submitting while the backup is taken.
    let addr = server.smtp_addrs()[0];
    let mut load = Vec::new();
    for c in 0..3 {
        load.push(tokio::spawn(async move {
            let (mut s, _) = Smtp::connect(addr).await;
            s.cmd("EHLO printer.local").await;
            assert!(
                s.auth_plain(SUBMITTER, ADMIN_PASSWORD)
                    .await
                    .starts_with("235")
            );
            for i in 0..40 {
                let subject = format!("load {c}-{i}");
                let to = if i % 4 == 0 { LATE } else { "boss@example.com" };
                let r = s
                    .send(
                        "scanner@printer.local",
                        &[to],
                        &message("scanner@printer.local", &subject, "body"),
                    )
                    .await;
                assert!(r.starts_with("250"), "{r}");
            }
            s.cmd("QUIT").await;
        }));
    }
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("hikyaku-backup.sqlite");
    let config = config_file(work.path(), server.dir.path());
    let file_arg = file.display().to_string();
    let out = tokio::task::spawn_blocking({
        let config = config.clone();
        let file_arg = file_arg.clone();
        move || hikyaku_bin(&config, &["backup", &file_arg])
    })
    .await
    .expect("backup");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("master.key"), "reminds of the key: {said}");
    for l in load {
        l.await.expect("load client");
    }
    // Never over an existing file.
    let again = hikyaku_bin(&config, &["backup", &file_arg]);
    assert!(!again.status.success());
    // Never under a running server.
    let busy = hikyaku_bin(&config, &["restore", &file_arg, "--replace"]);
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("running"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    // Without the key the restore says so.
    let keyless = tempfile::tempdir().expect("tempdir");
    let out = hikyaku_bin(
        &config_file(work.path(), keyless.path()),
        &["restore", &file_arg],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("master.key"));
    // Into a fresh data directory with the key kept beside the backup.
    let fresh = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        server.dir.path().join("master.key"),
        fresh.path().join("master.key"),
    )
    .expect("copy the key");
    let out = hikyaku_bin(
        &config_file(work.path(), fresh.path()),
        &["restore", &file_arg],
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("opens the restored tokens"), "{said}");
    server.stop().await;
    // What waited in the backup.
    let restored = Store::open(fresh.path()).await.expect("restored store");
    let mut waiting = Vec::new();
    for state in [JobState::Queued, JobState::Deferred, JobState::Sending] {
        let filter = JobFilter {
            state: Some(state),
            ..Default::default()
        };
        waiting.extend(restored.jobs(&filter, 1000, 0).await.expect("jobs"));
    }
    restored.close().await;
    assert!(
        waiting.len() >= 3,
        "deferred jobs are in the backup: {}",
        waiting.len()
    );
    // The restored server: the same users, tokens and queue.
    fc.refuse_recipient(LATE, 0);
    let config = testkit::test_config(fresh.path());
    let restored = TestServer::start_with(fresh, config, Default::default()).await;
    // The deferred jobs are due in the future: move the clock past them
    // (before signing in: a session idle for hours has ended).
    restored.clock.jump(time::Duration::hours(3));
    let admin2 = Browser::new(&restored);
    admin2.login("admin", ADMIN_PASSWORD).await;
    for job in &waiting {
        let path = format!("/api/v1/jobs/{}", job.id);
        eventually(Duration::from_secs(60), "restored job sent", || async {
            (admin2.get(&path).await.json()["state"] == "sent").then_some(())
        })
        .await;
    }
    let inbox = fc.inbox();
    for job in &waiting {
        let subject = job.subject.clone().unwrap_or_default();
        assert!(
            inbox
                .iter()
                .any(|m| String::from_utf8_lossy(&m.data).contains(&subject)),
            "{subject} delivered"
        );
    }
    // A new message goes out through the restored account too.
    assert!(
        submit(&restored, "after restore", "body")
            .await
            .starts_with("250")
    );
    wait_state(&admin2, "after restore", "sent").await;
}

/// The history's API filters: date range, account, and keyset pages that
/// start below the last job of the page before (`before=ID`).
#[tokio::test]
async fn history_filters_and_keyset_pages_at_the_api() {
    let (fc, server, admin) = microsoft_ready().await;
    three_outcomes(&fc, &server, &admin).await;
    let all = admin.get("/api/v1/jobs?limit=1000").await.json();
    let all = all.as_array().expect("a list").clone();
    assert_eq!(all.len(), 4);
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|j| j["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let want: Vec<String> = all
        .iter()
        .map(|j| j["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    // Keyset pages of two give the same jobs as one page, in order.
    let first = admin.get("/api/v1/jobs?limit=2").await.json();
    assert_eq!(ids(&first), want[..2]);
    let second = admin
        .get(&format!("/api/v1/jobs?limit=2&before={}", want[1]))
        .await
        .json();
    assert_eq!(ids(&second), want[2..]);
    let third = admin
        .get(&format!("/api/v1/jobs?limit=2&before={}", want[3]))
        .await
        .json();
    assert_eq!(ids(&third), Vec::<String>::new());
    // A job that is gone cannot start a page: a clear 400.
    let gone = admin.get("/api/v1/jobs?before=no-such-job").await;
    assert_eq!(gone.status, 400, "{}", gone.body);
    assert!(gone.body.contains("without before"), "{}", gone.body);
    // Date range: created_at within [since, until).
    let times: Vec<i64> = all
        .iter()
        .map(|j| j["created_at"].as_i64().expect("created_at"))
        .collect();
    let (newest, oldest) = (times[0], times[3]);
    let r = admin
        .get(&format!("/api/v1/jobs?since={}", newest + 1))
        .await
        .json();
    assert_eq!(ids(&r), Vec::<String>::new());
    let r = admin
        .get(&format!("/api/v1/jobs?since={oldest}&until={}", newest + 1))
        .await
        .json();
    assert_eq!(ids(&r), want);
    let r = admin
        .get(&format!("/api/v1/jobs?until={oldest}"))
        .await
        .json();
    assert_eq!(ids(&r), Vec::<String>::new());
    // Account: the jobs bound to it, none for another.
    let r = admin.get("/api/v1/jobs?account=999999").await.json();
    assert_eq!(ids(&r), Vec::<String>::new());
    if let Some(account) = all[0]["account_id"].as_i64() {
        let bound: Vec<String> = all
            .iter()
            .filter(|j| j["account_id"].as_i64() == Some(account))
            .map(|j| j["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        let r = admin
            .get(&format!("/api/v1/jobs?account={account}&limit=1000"))
            .await
            .json();
        assert_eq!(ids(&r), bound);
    }
}
