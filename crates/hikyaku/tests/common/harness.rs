//! Shared by the crash test (`tests/it/crash.rs`) and the load tool
//! (`benches/load.rs`): fakecloud, a data directory whose Microsoft account is
//! Active (prepared in-process through the Remote UI, like the seed's steps),
//! the real `hikyaku` binary as a child process that can be killed and
//! restarted over that directory, and a small SMTP client that returns I/O
//! errors instead of panicking (the server may die under it).
//!
//! Both include this file with `#[path]`; both must also have
//! `crate::support` (tests/it/support.rs).

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fakecloud::{FakeCloud, Options};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::{ADMIN_PASSWORD, Browser, TestServer, eventually, test_config};

/// The mailbox the Microsoft account signs in as.
pub const MAILBOX: &str = "printer@contoso.example";
/// The SMTP submitter the clients log in as (AUTH PLAIN).
pub const SUBMITTER: &str = "loadgen";
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

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Memory of a process from /proc/PID/status, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident set size now (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM).
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// CPU time (user + system, every thread) a process used so far; `None`
/// for this process. In clock ticks of 10 ms (Linux's `USER_HZ`).
pub fn cpu_time(pid: Option<u32>) -> Option<std::time::Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// The real `hikyaku serve` over a prepared data directory, as a child
/// process on fixed free ports (so that clients find it again after a
/// restart). Its log goes to `hikyaku.log` in the work directory.
pub struct Hikyaku {
    pub smtp: SocketAddr,
    pub web: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
    /// How many times the process was started.
    pub starts: u32,
}

impl Hikyaku {
    /// Writes the configuration: `workers` delivery workers, no practical
    /// rate limit, logging at `warn`.
    pub fn new(data_dir: &Path, work_dir: &Path, workers: u64) -> Self {
        let smtp: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let config_path = work_dir.join("hikyaku.toml");
        let config = format!(
            "data_dir = {data:?}\n\n[web]\nlisten = \"{web}\"\n\n[log]\nlevel = \"warn\"\n\n\
             [intake]\nlisten = [\"{smtp}\"]\nmax_connections_per_client = 100\n\n\
             [delivery]\nworkers = {workers}\nrate_per_minute = 1000000\nconnections_per_account = {workers}\n",
            data = data_dir.display().to_string(),
        );
        std::fs::write(&config_path, config).expect("write the configuration");
        Self {
            smtp,
            web,
            config_path,
            log_path: work_dir.join("hikyaku.log"),
            child: None,
            starts: 0,
        }
    }

    /// Starts the binary and waits until the intake greets (at most 60 s).
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_hikyaku"))
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn hikyaku serve");
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("hikyaku exited at start ({status}):\n{}", self.log_tail());
            }
            if let Ok(Ok((_, greeting))) =
                tokio::time::timeout(Duration::from_secs(2), Client::connect(self.smtp)).await
                && greeting.starts_with("220")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "hikyaku did not start listening:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn memory(&self) -> Option<Memory> {
        memory(self.pid()?)
    }

    pub fn cpu_time(&self) -> Option<std::time::Duration> {
        cpu_time(Some(self.pid()?))
    }

    /// SIGKILL: no shutdown code runs, like a power cut for the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `grace`).
    pub fn terminate(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The last 40 lines of the log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Hikyaku {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Any byte stream: plain TCP or TLS after STARTTLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn broken(what: String) -> io::Error {
    io::Error::other(what)
}

/// An SMTP client without pipelining; every failure is an `io::Error`.
pub struct Client {
    conn: BufReader<Box<dyn Io>>,
    pub timeout: Duration,
}

/// The outcome of one message: the final reply and the time from the end of
/// data (`.`) to that reply.
#[derive(Debug, Clone)]
pub struct Sent {
    pub reply: String,
    pub latency: Duration,
}

impl Client {
    /// Connects and reads the greeting.
    pub async fn connect(addr: SocketAddr) -> io::Result<(Client, String)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Client {
            conn: BufReader::new(Box::new(stream)),
            timeout: Duration::from_secs(30),
        };
        let greeting = c.reply().await?;
        Ok((c, greeting))
    }

    /// One (possibly multi-line) reply; EOF and timeouts are errors.
    pub async fn reply(&mut self) -> io::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(self.timeout, self.conn.read_line(&mut line))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply in time"))??;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {all:?}"),
                ));
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let w = self.conn.get_mut();
        w.write_all(bytes).await?;
        w.flush().await
    }

    pub async fn cmd(&mut self, line: &str) -> io::Result<String> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    async fn expect(&mut self, line: &str, code: &str) -> io::Result<String> {
        let r = self.cmd(line).await?;
        if r.starts_with(code) {
            Ok(r)
        } else {
            Err(broken(format!("{line:.40} answered {r}")))
        }
    }

    /// EHLO and AUTH PLAIN.
    pub async fn login_plain(&mut self, user: &str, password: &str) -> io::Result<()> {
        self.expect("EHLO loadgen.local", "250").await?;
        let token = STANDARD.encode(format!("\0{user}\0{password}"));
        self.expect(&format!("AUTH PLAIN {token}"), "235").await?;
        Ok(())
    }

    /// EHLO, STARTTLS (trusting `ca_pem` for `localhost`), EHLO and AUTH
    /// XOAUTH2 with `access_token`: what a mail client does at Exchange.
    pub async fn login_xoauth2(
        self,
        ca_pem: &str,
        user: &str,
        access_token: &str,
    ) -> io::Result<Client> {
        let mut c = self;
        c.expect("EHLO loadgen.local", "250").await?;
        c.expect("STARTTLS", "220").await?;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject as _;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(|e| broken(format!("CA: {e}")))?)
                .map_err(|e| broken(format!("CA: {e}")))?;
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost")
            .map_err(|e| broken(e.to_string()))?;
        let plain = c.conn.into_inner();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, plain)
            .await?;
        let mut c = Client {
            conn: BufReader::new(Box::new(tls)),
            timeout: c.timeout,
        };
        c.expect("EHLO loadgen.local", "250").await?;
        let sasl = STANDARD.encode(format!("user={user}\x01auth=Bearer {access_token}\x01\x01"));
        c.expect(&format!("AUTH XOAUTH2 {sasl}"), "235").await?;
        Ok(c)
    }

    /// MAIL, RCPT, DATA and `message` (which ends with CRLF; dot-stuffed
    /// here). A refusal before the data is returned as the reply.
    pub async fn send(&mut self, from: &str, to: &str, message: &str) -> io::Result<Sent> {
        let start = Instant::now();
        let refused = |reply: String| Sent {
            reply,
            latency: start.elapsed(),
        };
        for (line, code) in [
            (format!("MAIL FROM:<{from}>"), "250"),
            (format!("RCPT TO:<{to}>"), "250"),
            ("DATA".to_string(), "354"),
        ] {
            let r = self.cmd(&line).await?;
            if !r.starts_with(code) {
                return Ok(refused(r));
            }
        }
        let stuffed = message.replace("\r\n.", "\r\n..");
        self.write(stuffed.as_bytes()).await?;
        let start = Instant::now();
        self.write(b".\r\n").await?;
        let reply = self.reply().await?;
        Ok(Sent {
            reply,
            latency: start.elapsed(),
        })
    }

    pub async fn quit(mut self) {
        let _ = self.cmd("QUIT").await;
    }
}

/// A test message: `key` names the message (Subject, Message-ID), `attempt`
/// names this transmission of it (`X-Attempt`), the body has about
/// `body_len` bytes of 76-character lines.
pub fn message(from: &str, key: &str, attempt: &str, body_len: usize) -> String {
    let mut m = format!(
        "From: Load <{from}>\r\nTo: sink@example.com\r\nSubject: load {key}\r\n\
         Message-ID: <{key}@load.hikyaku.test>\r\nX-Attempt: {attempt}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    );
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-.:;0123456789";
    let mut written = 0;
    while written < body_len {
        m.push_str(line);
        m.push_str("\r\n");
        written += line.len() + 2;
    }
    if body_len == 0 {
        m.push_str("\r\n");
    }
    m
}

/// The value of the first `name:` header of a received message.
pub fn header(data: &[u8], name: &str) -> Option<String> {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..end]);
    head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Percentile (0–100) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
