//! The one integration-test binary: every end-to-end test of hikyaku runs the
//! real server in-process on free ports against `fakecloud` on 127.0.0.1.

#![allow(clippy::unwrap_used)]
// Tests compare against the real clock where the product must not.
#![allow(clippy::disallowed_methods)]

mod accounts;
mod apponly;
mod browser;
mod cli;
mod cluster;
mod corpus;
mod crash;
mod delivery;
mod history;
mod network;
mod oauth_flow;
mod ops;
mod pieces;
mod postgres;
mod properties;
mod queue;
mod secrets;
mod sending;
mod store_copy;
mod tokens;
mod transports;
mod trust;
mod ui;
mod users;
mod web;
