//! Integration tests of fakecloud against real HTTP and SMTP clients.

#![allow(clippy::unwrap_used)]

mod entra;
mod google;
mod misc;
mod smtp;
mod support;
