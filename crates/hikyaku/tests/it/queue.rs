//! The queue from the terminal against the real `hikyaku serve`: `queue`,
//! `mailq`, `queue show/retry/delete`, `status` through the control socket
//! and the JSON API; a local user submitting to a server that runs as
//! another user; SIGHUP reloading the intake certificate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use hikyaku::queue::JobStore as _;
use hikyaku::store::Store;
use testkit::{free_port, poll_until};

const BIN: &str = env!("CARGO_BIN_EXE_hikyaku");

/// `hikyaku serve` as a child process, optionally as another user.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(config: &Path, user: Option<&str>) -> Self {
        let log = config.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = match user {
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={u}"),
                    &format!("--regid={u}"),
                    "--init-groups",
                    "--",
                    BIN,
                ]);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Server { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the control socket answers (`hikyaku status` as root).
    async fn ready(&mut self, config: &Path) {
        let log = self.log.clone();
        let child = &mut self.child;
        let up = poll_until(Duration::from_secs(60), "the control socket", async || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "hikyaku exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            run(config, None, &["status"], b"").status.success()
        })
        .await;
        if let Err(e) = up {
            panic!("{e}:\n{}", self.log());
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn stop(&mut self) {
        self.signal("TERM");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `hikyaku ARGS` (as `user` when given) with the configuration.
fn run(config: &Path, user: Option<&str>, args: &[&str], stdin: &[u8]) -> Output {
    run_as(BIN, config, user, args, stdin)
}

fn run_as(bin: &str, config: &Path, user: Option<&str>, args: &[&str], stdin: &[u8]) -> Output {
    run_in(bin, config, user, args, stdin, None)
}

/// [`run_as`] with `LANG` set to `lang` (the test's own locale otherwise
/// cleared, so that the output is English).
fn run_in(
    bin: &str,
    config: &Path,
    user: Option<&str>,
    args: &[&str],
    stdin: &[u8],
    lang: Option<&str>,
) -> Output {
    use std::io::Write;
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={u}"),
                &format!("--regid={u}"),
                "--init-groups",
                "--",
                bin,
            ]);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(args)
        .env("HIKYAKU_CONFIG", config)
        .env_remove("HIKYAKU_URL")
        .env_remove("HIKYAKU_TOKEN")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", lang.unwrap_or("C.UTF-8"))
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap()
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("hikyaku.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\n{extra}\n[web]\nlisten = \"127.0.0.1:{}\"\n[intake]\nlisten = [\"127.0.0.1:{}\"]\n",
            dir.join("data").display().to_string(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    path
}

/// Four jobs in the store, one per state a queue keeps or shows:
/// queued and deferred (not due for an hour), sent, failed.
async fn seed(data: &Path) -> Vec<String> {
    let store = Store::open(data).await.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut ids = Vec::new();
    for (i, state) in ["queued", "deferred", "sent", "failed"].iter().enumerate() {
        let job = hikyaku::intake::store_sink::new_job(
            "test",
            "smtp",
            None,
            &format!("{state}@example.com"),
            vec![format!("rcpt{i}@example.com")],
            format!("Subject: {state}\r\n\r\nbody\r\n").into_bytes(),
        );
        store.enqueue(&job, now - 100 + i as i64).await.unwrap();
        ids.push(job.id);
    }
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        data.join(hikyaku::store::DB_FILE).display()
    ))
    .await
    .unwrap();
    for (id, state) in ids.iter().zip(["queued", "deferred", "sent", "failed"]) {
        let reply = match state {
            "failed" => Some(r#"{"code":"job-upstream","args":{"reply":"550 5.7.1 refused"}}"#),
            _ => None,
        };
        sqlx::query("UPDATE jobs SET state = ?2, next_attempt_at = ?3, last_reply = COALESCE(?4, last_reply) WHERE id = ?1")
            .bind(id)
            .bind(state)
            .bind(now + 3600)
            .bind(reply)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    ids
}

#[tokio::test]
async fn queue_and_status_through_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    // Nothing runs yet: a clear error, nothing done.
    let err = stderr(&run(&config, None, &["queue"], b""));
    assert!(err.contains("the hikyaku server is not running"), "{err}");
    // First start creates the store; then the jobs are put in.
    let mut server = Server::start(&config, None);
    server.ready(&config).await;
    server.stop();
    let ids = seed(&dir.path().join("data")).await;
    // An API token belongs to a user.
    stdout(&run(
        &config,
        None,
        &[
            "admin",
            "add-user",
            "operator",
            "--role",
            "administrator",
            "--password-stdin",
        ],
        b"a very good password\n",
    ));
    let token = stdout(&run(
        &config,
        None,
        &[
            "admin",
            "api-token",
            "cli-test",
            "--role",
            "administrator",
            "--user",
            "operator",
        ],
        b"",
    ))
    .trim()
    .to_string();
    let mut server = Server::start(&config, None);
    server.ready(&config).await;

    // The list: every job not sent, oldest first, with state, sender,
    // recipients and the last reply.
    let list = stdout(&run(&config, None, &["queue"], b""));
    let at = |id: &str| {
        list.find(id)
            .unwrap_or_else(|| panic!("{id} missing:\n{list}"))
    };
    assert!(
        at(&ids[0]) < at(&ids[1]) && at(&ids[1]) < at(&ids[3]),
        "{list}"
    );
    assert!(
        !list.contains(&ids[2]),
        "a sent job is no longer queued:\n{list}"
    );
    for (id, state) in [
        (&ids[0], "queued"),
        (&ids[1], "deferred"),
        (&ids[3], "failed"),
    ] {
        let line = list.lines().find(|l| l.starts_with(id.as_str())).unwrap();
        assert!(line.contains(&format!(" {state} ")), "{line}");
        assert!(line.ends_with(&format!("{state}@example.com")), "{line}");
    }
    assert!(list.contains("rcpt3@example.com"), "{list}");
    assert!(list.contains("550 5.7.1 refused"), "{list}");
    assert!(list.contains("in 3 jobs."), "{list}");
    // Filters: state, sender; an unknown state is named.
    let sent = json(&run(
        &config,
        None,
        &["queue", "--state", "sent", "--json"],
        b"",
    ));
    assert_eq!(sent.as_array().unwrap().len(), 1);
    assert_eq!(sent[0]["id"], ids[2].as_str());
    let by_sender = json(&run(
        &config,
        None,
        &["queue", "--sender", "deferred@example.com", "--json"],
        b"",
    ));
    assert_eq!(by_sender.as_array().unwrap().len(), 1, "{by_sender}");
    assert_eq!(by_sender[0]["id"], ids[1].as_str());
    let err = stderr(&run(&config, None, &["queue", "--state", "lost"], b""));
    assert!(err.contains("unknown state \"lost\""), "{err}");

    // mailq is the same list.
    let link = dir.path().join("mailq");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let mailq = stdout(&run_as(link.to_str().unwrap(), &config, None, &[], b""));
    assert_eq!(mailq, list);

    // show, status
    let show = stdout(&run(&config, None, &["queue", "show", &ids[3]], b""));
    assert!(show.contains("State:         failed"), "{show}");
    assert!(show.contains("Recipients:    rcpt3@example.com"), "{show}");
    assert!(show.contains("550 5.7.1 refused"), "{show}");
    let err = stderr(&run(&config, None, &["queue", "show", "nope"], b""));
    assert!(err.contains("no job \"nope\""), "{err}");
    let status = stdout(&run(&config, None, &["status"], b""));
    assert!(
        status.contains("queued 1, sending 0, deferred 1, sent 1, failed 1"),
        "{status}"
    );
    assert!(status.contains("#1 microsoft"), "{status}");
    assert!(
        status.contains("(worldwide, delegated, disabled)"),
        "{status}"
    );
    assert!(status.contains("token:       not_registered"), "{status}");
    assert!(status.contains("connection:  not_checked"), "{status}");

    // In Japanese when the terminal's locale is.
    let ja = |args: &[&str]| stdout(&run_in(BIN, &config, None, args, b"", Some("ja_JP.UTF-8")));
    let status_ja = ja(&["status"]);
    assert!(status_ja.starts_with("アカウント\n"), "{status_ja}");
    assert!(status_ja.contains("全世界(Worldwide)"), "{status_ja}");
    assert!(status_ja.contains("トークン:"), "{status_ja}");
    assert!(status_ja.contains("未登録"), "{status_ja}");
    assert!(status_ja.contains("未確認"), "{status_ja}");
    assert!(
        status_ja.contains("待機中 1, 送信中 0, 再送待ち 1, 送信済み 1, 失敗 1"),
        "{status_ja}"
    );
    let list_ja = ja(&["queue"]);
    assert!(list_ja.starts_with("ジョブID"), "{list_ja}");
    for id in [&ids[0], &ids[1], &ids[3]] {
        assert!(list_ja.contains(id.as_str()), "{list_ja}");
    }
    assert!(list_ja.contains(" 再送待ち "), "{list_ja}");
    assert!(list_ja.contains("3 件のジョブ。"), "{list_ja}");
    let show_ja = ja(&["queue", "show", &ids[3]]);
    assert!(show_ja.contains("失敗"), "{show_ja}");
    assert!(show_ja.contains("550 5.7.1 refused"), "{show_ja}");

    // The same through the JSON API with a token.
    let web = std::fs::read_to_string(&config).unwrap();
    let port = web
        .split("[web]\nlisten = \"127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let url = format!("http://127.0.0.1:{port}");
    let api = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(["--url", &url])
            .env("HIKYAKU_TOKEN", &token)
            .env_remove("HIKYAKU_CONFIG")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .env("LANG", "C.UTF-8")
            .current_dir("/");
        cmd.output().unwrap()
    };
    assert_eq!(stdout(&api(&["queue"])), list);
    // status through the API tells as much as through the socket.
    let status_api = stdout(&api(&["status"]));
    assert_eq!(
        status_api, status,
        "the API's status differs from the socket's"
    );

    // retry: the failed job is queued again and delivery takes it up (no
    // account can send, so it waits as deferred); the audit log names root.
    let retried = stdout(&run(&config, None, &["queue", "retry", &ids[3]], b""));
    assert!(retried.contains("will be tried now"), "{retried}");
    let state = json(&run(
        &config,
        None,
        &["queue", "show", &ids[3], "--json"],
        b"",
    ));
    assert_ne!(state["state"], "failed", "{state}");
    let n = stdout(&run(
        &config,
        None,
        &["queue", "retry", "--all-deferred"],
        b"",
    ));
    assert!(n.ends_with("will be tried now\n"), "{n}");
    // delete, then it is gone; deleting again says so.
    stdout(&run(&config, None, &["queue", "delete", &ids[0]], b""));
    let left = json(&run(&config, None, &["queue", "--json"], b""));
    assert!(
        left.as_array()
            .unwrap()
            .iter()
            .all(|j| j["id"] != ids[0].as_str()),
        "{left}"
    );
    stderr(&run(&config, None, &["queue", "delete", &ids[0]], b""));
    server.stop();
    let store = Store::open(&dir.path().join("data")).await.unwrap();
    let audit = store.audit_entries(100, 0).await.unwrap();
    store.close().await;
    assert!(
        audit.iter().any(|e| e.actor == "local:uid=0(root)"),
        "{audit:?}"
    );
}

/// A user name free on this machine, and removal at the end.
struct TempUser(String);

impl TempUser {
    fn new(prefix: &str) -> Self {
        let name = format!("{prefix}{}", std::process::id() % 100_000);
        let ok = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {name} (the tests run as root)");
        TempUser(name)
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_local_user_submits_to_the_server_of_another_user() {
    let service = TempUser::new("hkysvc");
    let user = TempUser::new("hkyusr");
    let dir = tempfile::tempdir().unwrap();
    // The layout of the package: a 0700 data directory of the service user,
    // the socket in a directory every user may enter.
    let run_dir = dir.path().join("run");
    let data = dir.path().join("data");
    for d in [&run_dir, &data] {
        std::fs::create_dir(d).unwrap();
    }
    let chown = |p: &Path| {
        assert!(
            Command::new("chown")
                .args([&format!("{0}:{0}", service.0), p.to_str().unwrap()])
                .status()
                .unwrap()
                .success()
        );
    };
    chown(&run_dir);
    chown(&data);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = run_dir.join("hikyaku.sock");
    let config = config(
        dir.path(),
        &format!("[control]\nsocket = {:?}\n", socket.display().to_string()),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let message = b"From: cron@example.com\nSubject: nightly\n\nall good\n";

    // Server stopped: the user can neither reach it nor write the queue.
    let err = stderr(&run(
        &config,
        Some(&user.0),
        &["sendmail", "boss@example.com"],
        message,
    ));
    assert!(err.contains("the hikyaku server is not running"), "{err}");
    assert!(err.contains("cannot write the queue"), "{err}");

    let mut server = Server::start(&config, Some(&service.0));
    server.ready(&config).await;
    let out = run(
        &config,
        Some(&user.0),
        &["sendmail", "-oi", "boss@example.com"],
        message,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "sendmail is silent on success");
    let out = stdout(&run(
        &config,
        Some(&user.0),
        &[
            "send",
            "--to",
            "boss@example.com",
            "--from",
            "cron@example.com",
            "--body",
            "x",
        ],
        b"",
    ));
    assert!(out.starts_with("queued as "), "{out}");
    // The user may not look at the queue; root and the service user may.
    let err = stderr(&run(&config, Some(&user.0), &["queue"], b""));
    assert!(
        err.contains("only root and the user hikyaku runs as"),
        "{err}"
    );
    let jobs = json(&run(&config, Some(&service.0), &["queue", "--json"], b""));
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let uid = String::from_utf8(
        Command::new("id")
            .args(["-u", &user.0])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let who = format!("local:uid={}({})", uid.trim(), user.0);
    assert_eq!(jobs[0]["submitter"], format!("sendmail:{who}"));
    assert_eq!(jobs[1]["submitter"], format!("cli:{who}"));
    assert_eq!(jobs[0]["rcpt_to"][0], "boss@example.com");
    assert_eq!(jobs[0]["subject"], "nightly");
    server.stop();
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

fn write_cert(dir: &Path, name: &str) -> String {
    let cert = hikyaku::tls::generate_self_signed(&["localhost".into()]).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), &cert.cert_pem).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), &cert.key_pem).unwrap();
    cert.sha256_fingerprint
}

/// The fingerprint of the certificate a new TLS client is shown.
async fn served_fingerprint(addr: &str) -> String {
    let policy = hikyaku::tls::TlsPolicy {
        verify: false,
        ..Default::default()
    };
    let client = hikyaku::tls::client_config(&policy).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    hikyaku::tls::fingerprint(&leaf)
}

#[tokio::test]
async fn sighup_reloads_the_intake_certificate() {
    hikyaku::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path(), "a");
    let port = free_port();
    let config = config(dir.path(), "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "implicit_tls_listen = [\"127.0.0.1:{port}\"]\ntls_cert = {:?}\ntls_key = {:?}\n",
        dir.path().join("live.pem").display().to_string(),
        dir.path().join("live.key").display().to_string(),
    ));
    std::fs::write(&config, text).unwrap();
    let install = |name: &str| {
        for ext in ["pem", "key"] {
            std::fs::copy(
                dir.path().join(format!("{name}.{ext}")),
                dir.path().join(format!("live.{ext}")),
            )
            .unwrap();
        }
    };
    install("a");
    let mut server = Server::start(&config, None);
    server.ready(&config).await;
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(served_fingerprint(&addr).await, first);

    let second = write_cert(dir.path(), "b");
    install("b");
    server.signal("HUP");
    let seen = poll_until(Duration::from_secs(20), "the new certificate", async || {
        served_fingerprint(&addr).await == second
    })
    .await;
    assert!(seen.is_ok(), "{}", server.log());

    // A broken file: the current certificate stays, the log says why.
    std::fs::write(dir.path().join("live.pem"), "not a certificate").unwrap();
    server.signal("HUP");
    let logged = poll_until(Duration::from_secs(20), "the reload error", async || {
        server.log().contains("was not reloaded")
    })
    .await;
    assert!(logged.is_ok(), "{}", server.log());
    assert!(server.log().contains("intake.tls_cert"), "{}", server.log());
    assert_eq!(served_fingerprint(&addr).await, second);
    server.stop();
}
