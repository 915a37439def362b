//! The real `hikyaku serve` as a child process, and what /proc says about
//! a process's memory and CPU time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::smtp::Client;
use crate::wait::poll_until;

/// A port on 127.0.0.1 that was free a moment ago, for a listener a child
/// process starts later. Taken below the kernel's range for the local
/// ports of outgoing connections (`net.ipv4.ip_local_port_range`): a port
/// the kernel handed out for `127.0.0.1:0` comes from that range, and a
/// client's connection (to PostgreSQL, fakecloud, a browser) could take it
/// before the child bound it ("Address already in use" at start). Handed
/// out in turn from a start that depends on the process, so that the
/// tests running at once do not pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static HIGH: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    const LOW: u32 = 10_000;
    let high = *HIGH.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(32_768)
            .min(u32::from(u16::MAX))
    });
    if high < LOW + 1_000 {
        // No room below the range: what the kernel gives.
        return std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
    }
    let span = high - LOW;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(LOW + (start + n) % span) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {LOW} and {high}");
}

/// Memory of a process from /proc/PID/status, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident set size now (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM).
    pub hwm_kib: u64,
    /// The part of `rss_kib` that maps files (RssFile): mostly the program's
    /// own code, shared and dropped by the kernel when memory runs short.
    pub file_kib: u64,
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
        file_kib: field("RssFile:").unwrap_or(0),
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
    /// The binary: `env!("CARGO_BIN_EXE_hikyaku")` of the test or bench.
    pub binary: PathBuf,
    pub smtp: SocketAddr,
    pub web: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
    /// How many times the process was started.
    pub starts: u32,
    /// Environment variables the process is started with.
    env: Vec<(String, String)>,
}

impl Hikyaku {
    /// Writes the configuration: `workers` delivery workers, no practical
    /// rate limit, logging at `warn`. `binary` is the `hikyaku` executable
    /// (Cargo tells only the tests and benches of its own package where it is).
    pub fn new(binary: &Path, data_dir: &Path, work_dir: &Path, workers: u64) -> Self {
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
            binary: binary.to_path_buf(),
            smtp,
            web,
            config_path,
            log_path: work_dir.join("hikyaku.log"),
            child: None,
            starts: 0,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for the next starts.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the binary and waits until the intake greets (at most 60 s).
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(&self.binary)
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn hikyaku serve");
        self.child = Some(child);
        self.starts += 1;
        let smtp = self.smtp;
        let child = &mut self.child;
        let log_path = &self.log_path;
        let greeted = poll_until(
            Duration::from_secs(60),
            "hikyaku's SMTP greeting",
            async || {
                if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    panic!("hikyaku exited at start ({status}):\n{}", tail(log_path));
                }
                matches!(
                    tokio::time::timeout(Duration::from_secs(2), Client::connect(smtp)).await,
                    Ok(Ok((_, greeting))) if greeting.starts_with("220")
                )
            },
        )
        .await;
        if let Err(e) = greeted {
            panic!("{e}:\n{}", self.log_tail());
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
        tail(&self.log_path)
    }
}

/// The last 40 lines of a log file.
pub(crate) fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Drop for Hikyaku {
    fn drop(&mut self) {
        self.kill();
    }
}
