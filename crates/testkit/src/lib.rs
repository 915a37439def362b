//! What hikyaku's integration tests (`tests/it`), crash test
//! (`tests/it/crash.rs`) and load bench (`benches/load.rs`) share:
//!
//! - [`TestServer`]: hikyaku in-process on free ports over a temporary data
//!   directory, and [`Browser`], a client of its Remote UI and JSON API;
//! - [`prepare`]: fakecloud plus a data directory whose Microsoft account is
//!   Active, set up through the Remote UI like the printer manual's steps;
//! - [`Hikyaku`]: the real binary as a child process that can be killed and
//!   restarted over that directory, and [`Client`], an SMTP client that
//!   returns I/O errors instead of panicking (the server may die under it);
//! - [`eventually`]: waits on a condition with a deadline, instead of a
//!   fixed sleep.

mod browser;
pub mod postgres;
mod prepared;
mod process;
mod proxy;
mod server;
mod smtp;
mod wait;
mod watchdog;

pub use browser::{Browser, Page};
pub use prepared::{
    MAILBOX, PASSWORD, SUBMITTER, prepare, prepare_data_dir, prepare_with, start_fakecloud,
};
pub use process::{Hikyaku, Memory, cpu_time, free_port, memory};
pub use proxy::ConnectProxy;
pub use server::{ADMIN_PASSWORD, TestServer, add_user, test_config};
pub use smtp::{Client, Sent, header, message};
pub use wait::{Condition, POLL_INTERVAL, TimedOut, eventually, poll_until};
pub use watchdog::Watchdog;
