//! The one integration-test binary: every end-to-end test of hikyaku runs the
//! real server in-process on free ports against `fakecloud` on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod browser;
mod oauth_flow;
mod support;
mod tokens;
mod web;
