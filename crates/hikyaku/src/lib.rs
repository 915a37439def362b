//! hikyaku: a mail-sending gateway. Devices and applications that speak plain
//! SMTP hand it messages; it sends them through Exchange Online or Gmail with
//! OAuth 2.0. See the README for the flow of a message and the module map.

pub mod app;
pub mod cli_login;
pub mod clock;
pub mod clockjump;
pub mod config;
pub mod connection;
pub mod delivery;
pub mod http;
pub mod intake;
pub mod passwords;
pub mod provider;
pub mod proxy;
pub mod queue;
pub mod roles;
pub mod secrets;
pub mod store;
pub mod template;
pub mod throttle;
pub mod tls;
pub mod tokens;
pub mod web;
