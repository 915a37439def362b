//! A throw-away PostgreSQL for the tests of the PostgreSQL store: Debian's
//! `initdb` and `pg_ctl` (`/usr/lib/postgresql/*/bin`) make a cluster in a
//! temporary directory, on a free 127.0.0.1 port, with `fsync` on (the
//! durability the store promises is tested, not assumed away).
//!
//! One cluster serves the whole test process ([`database`] makes a fresh
//! database in it per test, which takes a fraction of a second); a test that
//! stops and restarts the server starts a cluster of its own
//! ([`Cluster::start`]).
//!
//! The cluster outlives no test process: a small shell (the "sentinel")
//! started with it reads its standard input, a pipe from the test process,
//! and when that closes — the process ended, however — it stops the server
//! and removes the directory.
//!
//! PostgreSQL refuses to run as root, and tests often run as root: the
//! cluster then belongs to the `postgres` user Debian's package creates.
//!
//! Missing binaries or a server that does not start fail the test with what
//! to do; a PostgreSQL test is never skipped.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// What to run when PostgreSQL is missing or does not start.
const HOW_TO_FIX: &str = "the PostgreSQL tests need Debian's `postgresql` package \
    (initdb, pg_ctl and psql in /usr/lib/postgresql/<version>/bin): run ./scripts/test, \
    which installs it, or `apt-get install postgresql`; set HIKYAKU_PG_BIN to use binaries \
    elsewhere";

/// The superuser of the test clusters (trusted on 127.0.0.1 only).
const SUPERUSER: &str = "postgres";

/// The sentinel: starts the server, says "ready" (or "failed" with the
/// server's log), then waits for its standard input to close and stops the
/// server and removes the directory. An immediate stop: the data is thrown
/// away, so the shutdown checkpoint (seconds with fsync on) is not needed.
const SENTINEL: &str = r#"
dir="$1"; bin="$2"
if "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start >/dev/null 2>&1; then
  echo ready
else
  echo failed
  cat "$dir/log" 2>/dev/null
fi
cat >/dev/null
"$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
rm -rf "$dir"
"#;

/// A running PostgreSQL server in a temporary directory, stopped and removed
/// when the test process ends.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// The sentinel's standard input: closing it ends the cluster.
    sentinel: Mutex<Option<(Child, ChildStdin)>>,
    next_db: AtomicU32,
}

/// A fresh, empty database on the test process's cluster: its
/// `postgres://` URL. Fails the test, saying what to do, if PostgreSQL is
/// missing or cannot start.
pub fn database() -> String {
    match shared() {
        Ok(cluster) => cluster
            .create_database()
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}")),
        Err(e) => panic!("{e}"),
    }
}

/// The cluster shared by the tests of this process, started at first use.
pub fn shared() -> Result<&'static Cluster, String> {
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    SHARED
        .get_or_init(Cluster::start)
        .as_ref()
        .map_err(Clone::clone)
}

impl Cluster {
    /// Makes and starts a cluster of its own (for a test that stops and
    /// restarts the server).
    pub fn start() -> Result<Cluster, String> {
        let bin = bin_dir()?;
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("hikyaku-pg-")
            .tempdir()
            .map_err(|e| format!("cannot make a directory for PostgreSQL: {e}"))?
            .keep();
        if as_postgres {
            run(Command::new("chown").arg(format!("{SUPERUSER}:")).arg(&dir))?;
        }
        let data = dir.join("data");
        run(command(as_postgres, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale=C"]))
        .map_err(|e| format!("{e}; {HOW_TO_FIX}"))?;
        let port = free_port();
        // Appended settings win over initdb's. fsync and synchronous_commit
        // are PostgreSQL's defaults, set here so that no packaged default
        // can turn them off under the durability tests.
        // HIKYAKU_PG_SETTINGS (`name = value` lines, `;`-separated): for
        // the load tool's runs that compare server settings.
        let more = std::env::var("HIKYAKU_PG_SETTINGS")
            .unwrap_or_default()
            .replace(';', "\n");
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = on\nsynchronous_commit = on\nmax_connections = 300\nshared_buffers = 32MB\n{more}\n",
            dir.display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .map_err(|e| format!("cannot configure the test cluster: {e}"))?;
        let mut child = command(as_postgres, Path::new("sh"))
            .args(["-c", SENTINEL, "sh"])
            .arg(&dir)
            .arg(&bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start PostgreSQL's sentinel shell: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the sentinel shell has no pipes".into());
        };
        let mut lines = BufReader::new(stdout).lines();
        match lines.next() {
            Some(Ok(line)) if line == "ready" => {}
            _ => {
                let log: Vec<String> = lines.map_while(Result::ok).collect();
                drop(stdin);
                let _ = child.wait();
                return Err(format!(
                    "PostgreSQL did not start on 127.0.0.1:{port}: {}; {HOW_TO_FIX}",
                    log.join("\n")
                ));
            }
        }
        Ok(Cluster {
            dir,
            bin,
            port,
            sentinel: Mutex::new(Some((child, stdin))),
            next_db: AtomicU32::new(0),
        })
    }

    /// The server's process id (the postmaster's; its children serve the
    /// connections), for measuring the CPU it uses.
    pub fn server_pid(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(self.dir.join("data").join("postmaster.pid")).ok()?;
        pid.lines().next()?.trim().parse().ok()
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// Creates a new empty database; its URL.
    pub fn create_database(&self) -> Result<String, String> {
        let name = format!("t_{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        self.sql(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs SQL as the superuser on the `postgres` database (psql).
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", "postgres", "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql -c {sql:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Stops the server as a crash would (immediate shutdown: connections
    /// are cut, no checkpoint; the restart recovers from the WAL), keeping
    /// its data.
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"])
    }

    /// Starts the server again after [`Cluster::stop`], on the same port.
    pub fn restart(&self) -> Result<(), String> {
        let log = self.dir.join("log");
        self.pg_ctl(&["-l", &log.display().to_string(), "-w", "-t", "60", "start"])
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        run(command(running_as_root(), &self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(args))
    }
}

impl Drop for Cluster {
    /// Ends the cluster now rather than at the end of the process.
    fn drop(&mut self) {
        let taken = self.sentinel.lock().map(|mut s| s.take());
        if let Ok(Some((mut child, stdin))) = taken {
            drop(stdin);
            // The sentinel's stop waits at most 60 s for the server; past
            // that, stop it here rather than hang the test process.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            eprintln!(
                "PostgreSQL test cluster on port {} did not stop within 90 s; stopping it at once",
                self.port
            );
            let _ = child.kill();
            let _ = child.wait();
            let _ = self.stop();
        }
    }
}

/// Where initdb, pg_ctl and psql are: HIKYAKU_PG_BIN, else the newest
/// /usr/lib/postgresql/<version>/bin.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("HIKYAKU_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").exists() {
            Ok(dir)
        } else {
            Err(format!(
                "HIKYAKU_PG_BIN={} has no initdb; {HOW_TO_FIX}",
                dir.display()
            ))
        };
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| format!("PostgreSQL is not installed; {HOW_TO_FIX}"))?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no initdb under /usr/lib/postgresql; {HOW_TO_FIX}"))
}

/// Whether this process runs as root (PostgreSQL must then run as another user).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// `program`, run as the `postgres` user when `as_postgres`.
fn command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", SUPERUSER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs `c` to its end; its output is the error if it fails.
fn run(c: &mut Command) -> Result<(), String> {
    let out = c
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", c.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed ({}): {}{}",
            c.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn free_port() -> u16 {
    crate::free_port()
}
