//! A deadline for a whole test. Every wait in a test has its own limit, but
//! a blocking call with none (a child that never exits, a drop that waits)
//! would hang the test binary until CI's own limit, with no word of where.
//! The watchdog turns that into a failure that says which step of which
//! test stopped and shows the logs of its processes.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::process::tail;

/// Ends the test process if the test holding it runs past its limit.
pub struct Watchdog {
    state: Arc<Mutex<State>>,
    /// Dropped with the watchdog: the closed channel tells its thread the
    /// test ended.
    _done: mpsc::Sender<()>,
}

#[derive(Default)]
struct State {
    step: String,
    logs: Vec<PathBuf>,
}

impl Watchdog {
    /// Starts the clock for `test`, which must finish within `limit`.
    pub fn start(test: &str, limit: Duration) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let (done, finished) = mpsc::channel::<()>();
        let watched = state.clone();
        let test = test.to_owned();
        let started = Instant::now();
        std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
                let state = watched.lock().unwrap_or_else(|p| p.into_inner());
                eprintln!(
                    "\n{test}: still running after {:?} (limit {limit:?}), at step: {}",
                    started.elapsed(),
                    state.step
                );
                for log in &state.logs {
                    eprintln!("--- last lines of {}:\n{}", log.display(), tail(log));
                }
                eprintln!("{test}: ending the test process so that the run fails here");
                std::process::exit(101);
            }
        });
        Self { state, _done: done }
    }

    /// Names the step the test is at, for the report.
    pub fn step(&self, step: impl Into<String>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).step = step.into();
    }

    /// A log file whose end the report shows.
    pub fn watch_log(&self, path: PathBuf) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .logs
            .push(path);
    }
}
