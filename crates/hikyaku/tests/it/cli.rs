//! The `hikyaku` binary: configuration errors, headless user and token
//! creation, and local submission with `send` and `sendmail`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use hikyaku::queue::{JobFilter, JobStore as _};
use hikyaku::store::Store;

fn hikyaku(dir: &std::path::Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hikyaku"))
        .current_dir(dir)
        .args(args)
        .env_remove("HIKYAKU_CONFIG")
        .env_remove("HIKYAKU_MASTER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hikyaku runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("hikyaku exits")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn workdir(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hikyaku.toml"), config).expect("config");
    dir
}

#[test]
fn bad_configuration_files_are_refused_with_file_key_and_reason() {
    for (config, expect) in [
        ("[web]\nlisen = \"127.0.0.1:1\"\n", "lisen"),
        ("[web]\nlisten = \"somewhere\"\n", "listen"),
        (
            "[intake]\nmax_message_size = 0\n",
            "intake.max_message_size",
        ),
        ("[web]\ntls_cert = \"a.pem\"\n", "web.tls_key"),
        (
            "[google]\ntoken_url = \"http://insecure\"\n",
            "google.token_url",
        ),
        ("this is not toml", "hikyaku.toml"),
        ("[log]\nlevel = \"debgu\"\n", "log.level"),
        (
            "[intake]\nhostname = \"mail.example.com\\r\\n250 x\"\n",
            "intake.hostname",
        ),
        ("[intake]\nhostname = \"my host\"\n", "intake.hostname"),
        (
            "[delivery]\nfailure_notice_to = \"not an address\"\n",
            "delivery.failure_notice_to",
        ),
        (
            "[intake]\nsession_timeout_secs = 0\n",
            "intake.session_timeout_secs",
        ),
        (
            "[intake]\nmax_auth_failures = 0\n",
            "intake.max_auth_failures",
        ),
    ] {
        let dir = workdir(config);
        for cmd in [&["config", "check"][..], &["serve"][..]] {
            let out = hikyaku(dir.path(), cmd, b"");
            assert!(!out.status.success(), "{config:?} accepted by {cmd:?}");
            let msg = text(&out);
            assert!(
                msg.contains("hikyaku.toml") && msg.contains(expect),
                "{config:?}: {msg}"
            );
        }
    }
    let dir = workdir("");
    let out = hikyaku(
        dir.path(),
        &["config", "check", "--config", "missing.toml"],
        b"",
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("missing.toml"));
    let defaults = hikyaku(dir.path(), &["config", "defaults"], b"");
    assert!(defaults.status.success());
    let defaults = String::from_utf8_lossy(&defaults.stdout).into_owned();
    assert!(defaults.contains("listen = \"127.0.0.1:8080\""));
    // The README's configuration reference is exactly what the binary prints.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README");
    assert!(
        readme.contains(&defaults),
        "README.md's configuration reference is stale: paste the output of `hikyaku config defaults`"
    );
}

#[test]
fn headless_admin_and_api_token() {
    let dir = workdir("data_dir = \"d\"\n");
    let out = hikyaku(
        dir.path(),
        &[
            "admin",
            "add-user",
            "root",
            "--role",
            "administrator",
            "--password-stdin",
        ],
        b"a very good password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let dup = hikyaku(
        dir.path(),
        &[
            "admin",
            "add-user",
            "root",
            "--role",
            "administrator",
            "--password-stdin",
        ],
        b"a very good password\n",
    );
    assert!(!dup.status.success() && text(&dup).contains("already exists"));
    let bad = hikyaku(
        dir.path(),
        &[
            "admin",
            "add-user",
            "x",
            "--role",
            "superuser",
            "--password-stdin",
        ],
        b"a very good password\n",
    );
    assert!(!bad.status.success() && text(&bad).contains("unknown role"));
    let short = hikyaku(
        dir.path(),
        &[
            "admin",
            "add-user",
            "y",
            "--role",
            "general-user",
            "--password-stdin",
        ],
        b"short\n",
    );
    assert!(!short.status.success() && text(&short).contains("at least 10"));
    let token = hikyaku(
        dir.path(),
        &["admin", "api-token", "monitor", "--role", "general-user"],
        b"",
    );
    assert!(token.status.success());
    let value = String::from_utf8_lossy(&token.stdout).trim().to_string();
    assert!(value.starts_with("hky_") && value.len() > 40, "{value}");
    // Without --user the token belongs to the only Administrator.
    assert!(text(&token).contains("of user root"), "{}", text(&token));
    let net = hikyaku(
        dir.path(),
        &[
            "admin",
            "add-user",
            "net",
            "--role",
            "network-admin",
            "--password-stdin",
        ],
        b"a very good password\n",
    );
    assert!(net.status.success(), "{}", text(&net));
    let above = hikyaku(
        dir.path(),
        &[
            "admin",
            "api-token",
            "up",
            "--user",
            "net",
            "--role",
            "administrator",
        ],
        b"",
    );
    assert!(
        !above.status.success() && text(&above).contains("may not exceed its user's role"),
        "{}",
        text(&above)
    );
    let expiring = hikyaku(
        dir.path(),
        &[
            "admin",
            "api-token",
            "create",
            "nightly",
            "--user",
            "net",
            "--expires-in",
            "90d",
        ],
        b"",
    );
    assert!(expiring.status.success(), "{}", text(&expiring));
    assert!(
        text(&expiring).contains("network_admin, expires"),
        "{}",
        text(&expiring)
    );
    let bad_expiry = hikyaku(
        dir.path(),
        &["admin", "api-token", "x", "--expires-in", "soon"],
        b"",
    );
    assert!(!bad_expiry.status.success() && text(&bad_expiry).contains("90d"));
    let revoked = hikyaku(
        dir.path(),
        &["admin", "api-token", "revoke", "monitor"],
        b"",
    );
    assert!(revoked.status.success(), "{}", text(&revoked));
    let list = hikyaku(dir.path(), &["admin", "api-token", "list"], b"");
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    let line = |name: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("monitor").contains("revoked") && line("monitor").contains("root"),
        "{listed}"
    );
    assert!(
        line("nightly").contains("active") && line("nightly").contains("net"),
        "{listed}"
    );
    assert!(!listed.contains(&value), "never the token itself");
    // Roles and passwords: never no Administrator.
    let last = hikyaku(
        dir.path(),
        &["admin", "user", "role", "root", "general-user"],
        b"",
    );
    assert!(
        !last.status.success() && text(&last).contains("last Administrator"),
        "{}",
        text(&last)
    );
    let demote = hikyaku(
        dir.path(),
        &["admin", "user", "role", "net", "general-user"],
        b"",
    );
    assert!(demote.status.success(), "{}", text(&demote));
    let list = hikyaku(dir.path(), &["admin", "api-token", "list"], b"");
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("nightly") && l.contains("general_user")),
        "the demoted user's token is narrowed: {listed}"
    );
    let passwd = hikyaku(
        dir.path(),
        &["admin", "user", "passwd", "net", "--password-stdin"],
        b"another good password\n",
    );
    assert!(passwd.status.success(), "{}", text(&passwd));
    let nobody = hikyaku(
        dir.path(),
        &["admin", "user", "passwd", "ghost", "--password-stdin"],
        b"another good password\n",
    );
    assert!(!nobody.status.success() && text(&nobody).contains("no user named ghost"));
    // Only the user hikyaku runs as can read the data directory and the store.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .expect("exists")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("d"), 0o700);
        assert_eq!(mode("d/hikyaku.sqlite"), 0o600);
        assert_eq!(mode("d/master.key"), 0o600);
    }
    // Stored hashed: the token itself is not in the database.
    let db = std::fs::read(dir.path().join("d/hikyaku.sqlite")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("d/hikyaku.sqlite-wal")).unwrap_or_default();
    assert!(!db.windows(value.len()).any(|w| w == value.as_bytes()));
    assert!(!wal.windows(value.len()).any(|w| w == value.as_bytes()));
}

async fn jobs(dir: &std::path::Path) -> Vec<hikyaku::queue::Job> {
    let store = Store::open(&dir.join("d")).await.expect("store");
    let jobs = store
        .jobs(&JobFilter::default(), 100, 0)
        .await
        .expect("jobs");
    store.close().await;
    jobs
}

#[tokio::test]
async fn send_and_sendmail_queue_messages() {
    let dir = workdir("data_dir = \"d\"\n[intake]\nmax_message_size = 4096\n");
    let file = dir.path().join("scan.pdf");
    std::fs::write(&file, b"%PDF-1.4 scan").expect("attachment");
    // No queue yet (the server has never started here): refused, and no new
    // queue is made that no server would read.
    for args in [
        &["sendmail", "-f", "a@example.com", "b@example.com"][..],
        &["send", "--to", "b@example.com", "--from", "a@example.com"][..],
    ] {
        let out = hikyaku(dir.path(), args, b"Subject: x\n\nbody\n");
        assert!(
            !out.status.success() && text(&out).contains("no hikyaku queue in"),
            "{}",
            text(&out)
        );
    }
    assert!(!dir.path().join("d").exists());
    // The server's first start creates it.
    Store::open(&dir.path().join("d"))
        .await
        .expect("store")
        .close()
        .await;
    let out = hikyaku(
        dir.path(),
        &[
            "send",
            "--to",
            "boss@example.com",
            "--from",
            "Scanner <scanner@example.com>",
            "--subject",
            "Scan",
            "--body",
            "see attached",
            "--attach",
            file.to_str().expect("path"),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = hikyaku(dir.path(), &["sendmail", "-t", "-oi", "-f", "cron@example.com"], b"Subject: nightly\nTo: ops@example.com\nBcc: audit@example.com\n\nall good\n.\nstill body\n");
    assert!(out.status.success(), "{}", text(&out));
    // Silent on success: cron would mail anything printed.
    assert_eq!(text(&out), "");
    let list = jobs(dir.path()).await;
    assert_eq!(list.len(), 2);
    let cron = list
        .iter()
        .find(|j| j.subject.as_deref() == Some("nightly"))
        .expect("sendmail job");
    assert_eq!(cron.mail_from, "cron@example.com");
    let mut rcpt = cron.rcpt_to.clone();
    rcpt.sort();
    assert_eq!(rcpt, vec!["audit@example.com", "ops@example.com"]);
    let store = Store::open(&dir.path().join("d")).await.expect("store");
    let body = String::from_utf8(store.job_body(&cron.id).await.expect("body")).expect("utf8");
    assert!(!body.contains("audit@example.com"), "Bcc removed: {body}");
    assert!(
        body.contains("From: cron@example.com\r\n") && body.contains("still body\r\n"),
        "{body}"
    );
    assert!(
        body.contains("\r\nDate: ") || body.starts_with("Date: "),
        "{body}"
    );
    assert!(
        body.contains("Message-ID: <") && body.contains("@example.com>"),
        "{body}"
    );
    let scan = list
        .iter()
        .find(|j| j.subject.as_deref() == Some("Scan"))
        .expect("send job");
    let scan_body = store.job_body(&scan.id).await.expect("body");
    let parsed = mail_parser::MessageParser::default()
        .parse(&scan_body)
        .expect("mime");
    assert_eq!(
        parsed.attachments().next().expect("attachment").contents(),
        b"%PDF-1.4 scan"
    );
    store.close().await;

    // Refusals: clear message, non-zero exit, nothing queued.
    let none = hikyaku(
        dir.path(),
        &["sendmail", "-f", "a@example.com"],
        b"Subject: x\n\nbody\n",
    );
    assert!(
        !none.status.success() && text(&none).contains("no recipients"),
        "{}",
        text(&none)
    );
    let big = hikyaku(
        dir.path(),
        &["sendmail", "-f", "a@example.com", "x@example.com"],
        &vec![b'a'; 8000],
    );
    assert!(
        !big.status.success() && text(&big).contains("larger than the limit"),
        "{}",
        text(&big)
    );
    let nul = hikyaku(
        dir.path(),
        &["sendmail", "-f", "a@example.com", "x@example.com"],
        b"Subject: x\n\nbin\x00ary\n",
    );
    assert!(
        !nul.status.success() && text(&nul).contains("NUL byte"),
        "{}",
        text(&nul)
    );
    let opt = hikyaku(dir.path(), &["sendmail", "-bs"], b"");
    assert!(!opt.status.success() && text(&opt).contains("not supported"));
    let addr = hikyaku(
        dir.path(),
        &["send", "--to", "not an address", "--from", "a@example.com"],
        b"",
    );
    assert!(
        !addr.status.success() && text(&addr).contains("not an address"),
        "{}",
        text(&addr)
    );
    let nofrom = hikyaku(dir.path(), &["send", "--to", "a@example.com"], b"");
    assert!(!nofrom.status.success() && text(&nofrom).contains("no sender address"));
    // No recipients is said first, before a missing sender.
    let neither = hikyaku(dir.path(), &["sendmail"], b"Subject: x\n\nbody\n");
    assert!(
        !neither.status.success() && text(&neither).contains("no recipients"),
        "{}",
        text(&neither)
    );
    // -t with a To entry that is not an address: refused, naming it.
    let bad_to = hikyaku(
        dir.path(),
        &["sendmail", "-t", "-f", "a@example.com"],
        b"To: boss, ops@example.com\nSubject: x\n\nbody\n",
    );
    assert!(
        !bad_to.status.success() && text(&bad_to).contains("\"boss\""),
        "{}",
        text(&bad_to)
    );
    // A huge attachment is sized, not read: refused at once.
    let huge = dir.path().join("huge.bin");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(1 << 30))
        .expect("sparse file");
    let started = std::time::Instant::now();
    let big_attach = hikyaku(
        dir.path(),
        &[
            "send",
            "--to",
            "b@example.com",
            "--from",
            "a@example.com",
            "--attach",
            huge.to_str().expect("path"),
        ],
        b"",
    );
    assert!(
        !big_attach.status.success() && text(&big_attach).contains("larger than the limit"),
        "{}",
        text(&big_attach)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(jobs(dir.path()).await.len(), 2);

    // Without -t, Bcc is still removed, as sendmail does.
    let out = hikyaku(
        dir.path(),
        &["sendmail", "-f", "a@example.com", "b@example.com"],
        b"Subject: hidden\nBcc: secret@example.com\n\nbody\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let hidden = jobs(dir.path())
        .await
        .into_iter()
        .find(|j| j.subject.as_deref() == Some("hidden"))
        .expect("job");
    let store = Store::open(&dir.path().join("d")).await.expect("store");
    let body = String::from_utf8(store.job_body(&hidden.id).await.expect("body")).expect("utf8");
    assert!(!body.contains("secret@example.com"), "{body}");
    assert_eq!(hidden.rcpt_to, vec!["b@example.com"]);
    store.close().await;
}

/// `sendmail` as a symlink, run by cron from another directory: with the
/// server's configuration it queues there; without it, it refuses rather
/// than start a queue of its own.
#[cfg(unix)]
#[tokio::test]
async fn sendmail_symlink_from_another_directory() {
    let dir = workdir("data_dir = \"d\"\n");
    Store::open(&dir.path().join("d"))
        .await
        .expect("store")
        .close()
        .await;
    let link = dir.path().join("sendmail");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_hikyaku"), &link).expect("symlink");
    let home = tempfile::tempdir().expect("home");
    let run = |config: Option<std::path::PathBuf>| {
        let mut cmd = Command::new(&link);
        cmd.current_dir(home.path())
            .args(["-f", "cron@example.com", "ops@example.com"])
            .env_remove("HIKYAKU_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(c) = config {
            cmd.env("HIKYAKU_CONFIG", c);
        }
        let mut child = cmd.spawn().expect("sendmail runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"Subject: from cron\n\nok\n")
            .expect("write");
        child.wait_with_output().expect("exit")
    };
    let lost = run(None);
    // Unless this machine has a system-wide configuration, nothing is queued.
    if !std::path::Path::new("/etc/hikyaku/hikyaku.toml").exists() {
        assert!(
            !lost.status.success() && text(&lost).contains("no hikyaku queue in"),
            "{}",
            text(&lost)
        );
        assert!(!home.path().join("d").exists());
    }
    // HIKYAKU_CONFIG's data_dir is relative to the working directory, so
    // the server's configuration names its queue absolutely.
    let config = home.path().join("hikyaku.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n",
            dir.path().join("d").display().to_string()
        ),
    )
    .expect("config");
    let queued = run(Some(config));
    assert!(queued.status.success(), "{}", text(&queued));
    assert_eq!(text(&queued), "");
    let list = jobs(dir.path()).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].subject.as_deref(), Some("from cron"));
}

/// Runs `hikyaku serve` until its log shows `needle` (or 60 s pass), then
/// stops it; returns what it wrote.
fn serve_until(dir: &std::path::Path, needle: &str) -> String {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hikyaku"))
        .current_dir(dir)
        .arg("serve")
        .env_remove("HIKYAKU_CONFIG")
        .env_remove("HIKYAKU_MASTER_KEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hikyaku runs");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut log = String::new();
    while !log.contains(needle) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    log
}

#[test]
fn serve_logs_plain_text_with_the_setup_link_and_warns_of_a_shared_data_dir() {
    let dir = workdir(
        "data_dir = \"d\"\n[web]\nlisten = \"127.0.0.1:0\"\n[intake]\nlisten = []\n[log]\nlevel = \"hikyaku=info\"\n",
    );
    let data = dir.path().join("d");
    std::fs::create_dir(&data).expect("data dir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let log = serve_until(dir.path(), "/setup?token=");
    assert!(log.contains("/setup?token="), "no setup link: {log}");
    // Standard error is a pipe here, not a terminal: no colour codes.
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a non-terminal log: {log:?}"
    );
    #[cfg(unix)]
    assert!(
        log.contains("other local users can read") && log.contains("chmod 700"),
        "{log}"
    );
}

#[test]
fn bad_tls_files_are_named_by_key_and_file_and_serve_starts_nothing() {
    let dir = workdir("");
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").expect("junk");
    let missing = dir.path().join("missing.pem").display().to_string();
    let junk = dir.path().join("junk.pem").display().to_string();
    for (config, key, file, reason) in [
        (
            format!("[intake]\ntls_cert = {missing:?}\ntls_key = {missing:?}\n"),
            "intake.tls_cert",
            "missing.pem",
            "os error 2",
        ),
        (
            format!("[web]\ntls_cert = {junk:?}\ntls_key = {junk:?}\n"),
            "web.tls_cert",
            "junk.pem",
            "no certificate found",
        ),
    ] {
        std::fs::write(dir.path().join("hikyaku.toml"), &config).expect("config");
        for cmd in [&["config", "check"][..], &["serve"][..]] {
            let out = hikyaku(dir.path(), cmd, b"");
            let msg = text(&out);
            assert!(!out.status.success(), "{cmd:?} accepted {config}: {msg}");
            assert!(
                msg.contains(key) && msg.contains(file) && msg.matches(reason).count() == 1,
                "{cmd:?}: {msg}"
            );
            assert!(!msg.contains("paste"), "{msg}");
            assert!(!msg.contains("configuration is valid"), "{msg}");
        }
    }
}

#[test]
fn a_busy_port_fails_the_start_with_one_message_naming_the_key() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr");
    let dir = workdir(&format!(
        "data_dir = \"d\"\n[web]\nlisten = \"127.0.0.1:0\"\n[intake]\nlisten = [\"127.0.0.1:0\", \"{addr}\"]\n"
    ));
    let out = hikyaku(dir.path(), &["serve"], b"");
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    let errors: Vec<&str> = msg.lines().filter(|l| l.starts_with("hikyaku: ")).collect();
    assert_eq!(errors.len(), 1, "{msg}");
    assert!(
        errors[0].contains(&format!("cannot listen on {addr} (intake.listen)"))
            && errors[0].matches("os error").count() == 1,
        "{msg}"
    );
    // Nothing started: no listener announced, no setup link handed out.
    assert!(
        !msg.contains("listening") && !msg.contains("setup?token"),
        "{msg}"
    );
}

/// In-process: when the Remote UI's port is taken, the SMTP listener bound
/// before it is not left accepting connections.
#[tokio::test]
async fn a_failed_start_leaves_no_listener_running() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let smtp = std::net::SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = testkit::test_config(dir.path());
    config.web.listen = busy.local_addr().expect("addr");
    config.intake.listen = vec![smtp];
    let clock: hikyaku::clock::SharedClock = std::sync::Arc::new(hikyaku::clock::SystemClock);
    let err = match hikyaku::app::start(config, clock).await {
        Ok(_) => panic!("started on a busy port"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("(web.listen)"), "{err}");
    testkit::eventually(
        std::time::Duration::from_secs(2),
        "the SMTP listener of a failed start to stop accepting connections",
        async || tokio::net::TcpStream::connect(smtp).await.is_err(),
    )
    .await;
}
