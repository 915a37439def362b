//! Integration tests of fakecloud against real HTTP and SMTP clients.

// The test double and its tests use the real clock.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)]

mod entra;
mod google;
mod misc;
mod smtp;
mod support;
