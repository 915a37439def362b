//! The configuration file (TOML). Every key is declared once: its type and
//! default in the serde structs below, its description in [`KEYS`]; a test
//! keeps the two in step, and `hikyaku config defaults` prints both.
//! Unknown keys and bad values are refused with the file, the key and why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("invalid configuration file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration file {path}: key `{key}`: {reason}")]
    Value {
        path: String,
        key: &'static str,
        reason: String,
    },
    /// A configured certificate or key file is missing or unusable (the
    /// message names the key and the file).
    #[error("invalid configuration file {path}: {error}")]
    TlsFile {
        path: String,
        error: Box<crate::tls::TlsFileError>,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub web: WebConfig,
    pub log: LogConfig,
    pub intake: IntakeConfig,
    pub delivery: DeliveryConfig,
    pub google: GoogleConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub listen: SocketAddr,
    pub tls_cert: String,
    pub tls_key: String,
    pub allow_plain_http: bool,
    pub session_idle_minutes: u64,
    pub setup_link_minutes: u64,
    pub public_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    pub listen: Vec<SocketAddr>,
    pub starttls_listen: Vec<SocketAddr>,
    pub implicit_tls_listen: Vec<SocketAddr>,
    pub tls_cert: String,
    pub tls_key: String,
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: u64,
    pub max_connections: u64,
    pub max_connections_per_client: u64,
    pub idle_timeout_secs: u64,
    pub session_timeout_secs: u64,
    pub max_auth_failures: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub workers: u64,
    pub max_age_hours: u64,
    pub rate_per_minute: u64,
    pub rewrite_from: bool,
    pub connect_timeout_secs: u64,
    pub command_timeout_secs: u64,
    pub connections_per_account: u64,
    pub connection_idle_secs: u64,
    pub failure_notice_to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoogleConfig {
    pub auth_url: String,
    pub token_url: String,
    pub revoke_url: String,
    pub discovery_url: String,
    pub redirect_host: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            web: WebConfig::default(),
            log: LogConfig::default(),
            intake: IntakeConfig::default(),
            delivery: DeliveryConfig::default(),
            google: GoogleConfig::default(),
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: String::new(),
            tls_key: String::new(),
            allow_plain_http: false,
            session_idle_minutes: 15,
            setup_link_minutes: 60,
            public_url: String::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            starttls_listen: Vec::new(),
            implicit_tls_listen: Vec::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            hostname: "localhost".into(),
            max_message_size: 35 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 200,
            max_connections_per_client: 20,
            idle_timeout_secs: 300,
            session_timeout_secs: 1800,
            max_auth_failures: 3,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            max_age_hours: 120,
            rate_per_minute: 30,
            rewrite_from: true,
            connect_timeout_secs: 30,
            command_timeout_secs: 120,
            connections_per_account: 3,
            connection_idle_secs: 30,
            failure_notice_to: String::new(),
        }
    }
}

impl Default for GoogleConfig {
    fn default() -> Self {
        Self {
            auth_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
            revoke_url: "https://oauth2.googleapis.com/revoke".into(),
            discovery_url: "https://accounts.google.com/.well-known/openid-configuration".into(),
            redirect_host: "127.0.0.1".into(),
        }
    }
}

/// One documented key: its dotted path, its type and what it does.
pub struct KeyDoc {
    pub key: &'static str,
    pub ty: &'static str,
    pub doc: &'static str,
}

/// The description of every key, in the order `config defaults` prints them.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "data_dir",
        ty: "path",
        doc: "Directory for the SQLite store (hikyaku.sqlite), the master key (master.key) and generated certificates. Relative paths are relative to the working directory.",
    },
    KeyDoc {
        key: "web.listen",
        ty: "address",
        doc: "Address of the Remote UI and JSON API. On a non-loopback address the UI is served over HTTPS.",
    },
    KeyDoc {
        key: "web.tls_cert",
        ty: "path",
        doc: "PEM certificate chain for the Remote UI's HTTPS. Empty: a self-signed certificate is generated in data_dir at first start.",
    },
    KeyDoc {
        key: "web.tls_key",
        ty: "path",
        doc: "PEM private key for web.tls_cert.",
    },
    KeyDoc {
        key: "web.allow_plain_http",
        ty: "bool",
        doc: "Serve plain HTTP on a non-loopback address. Insecure: passwords cross the network in clear; the UI then shows a warning banner.",
    },
    KeyDoc {
        key: "web.session_idle_minutes",
        ty: "integer",
        doc: "A signed-in session ends after this many minutes without a request.",
    },
    KeyDoc {
        key: "web.setup_link_minutes",
        ty: "integer",
        doc: "How long the one-time first-start setup link stays valid.",
    },
    KeyDoc {
        key: "web.public_url",
        ty: "url",
        doc: "Base URL users reach the Remote UI at, used in the printed setup link. Empty: derived from web.listen.",
    },
    KeyDoc {
        key: "log.level",
        ty: "string",
        doc: "Log level: trace, debug, info, warn, error or off; or comma-separated target=level directives such as \"hikyaku=debug,sqlx=warn\" (a bare level may stand among them as the default). RUST_LOG overrides it.",
    },
    KeyDoc {
        key: "log.format",
        ty: "text | json",
        doc: "Log line format.",
    },
    KeyDoc {
        key: "intake.listen",
        ty: "list of addresses",
        doc: "Plain SMTP listeners (STARTTLS offered if intake.tls_cert is set). Keep these on loopback unless clients authenticate.",
    },
    KeyDoc {
        key: "intake.starttls_listen",
        ty: "list of addresses",
        doc: "SMTP listeners that offer STARTTLS and allow AUTH only after it (e.g. 0.0.0.0:587). Needs intake.tls_cert.",
    },
    KeyDoc {
        key: "intake.implicit_tls_listen",
        ty: "list of addresses",
        doc: "SMTP listeners with TLS from the first byte (e.g. 0.0.0.0:465). Needs intake.tls_cert.",
    },
    KeyDoc {
        key: "intake.tls_cert",
        ty: "path",
        doc: "PEM certificate chain for the SMTP listeners' TLS.",
    },
    KeyDoc {
        key: "intake.tls_key",
        ty: "path",
        doc: "PEM private key for intake.tls_cert.",
    },
    KeyDoc {
        key: "intake.hostname",
        ty: "string",
        doc: "Name hikyaku gives itself in the SMTP greeting: a domain name or an address literal such as [192.0.2.1].",
    },
    KeyDoc {
        key: "intake.max_message_size",
        ty: "bytes",
        doc: "Largest message accepted (552 5.3.4 beyond). Exchange Online accepts up to 35 MB, Gmail 25 MB.",
    },
    KeyDoc {
        key: "intake.max_recipients",
        ty: "integer",
        doc: "Recipients per message (452 4.5.3 beyond).",
    },
    KeyDoc {
        key: "intake.max_connections",
        ty: "integer",
        doc: "SMTP connections at once, all clients together.",
    },
    KeyDoc {
        key: "intake.max_connections_per_client",
        ty: "integer",
        doc: "SMTP connections at once from one client address.",
    },
    KeyDoc {
        key: "intake.idle_timeout_secs",
        ty: "seconds",
        doc: "An SMTP session that sends nothing for this long is closed (421 4.4.2).",
    },
    KeyDoc {
        key: "intake.session_timeout_secs",
        ty: "seconds",
        doc: "Longest SMTP session.",
    },
    KeyDoc {
        key: "intake.max_auth_failures",
        ty: "integer",
        doc: "Failed AUTH attempts before the SMTP session is closed.",
    },
    KeyDoc {
        key: "delivery.workers",
        ty: "integer",
        doc: "Messages delivered at once.",
    },
    KeyDoc {
        key: "delivery.max_age_hours",
        ty: "hours",
        doc: "A message still undelivered after this long (temporary failures) fails.",
    },
    KeyDoc {
        key: "delivery.rate_per_minute",
        ty: "integer",
        doc: "Messages per minute per account (Exchange Online allows 30).",
    },
    KeyDoc {
        key: "delivery.rewrite_from",
        ty: "bool",
        doc: "When a message's From differs from the account's mailbox, rewrite From to the mailbox (keeping the display name) and put the original address in Reply-To.",
    },
    KeyDoc {
        key: "delivery.connect_timeout_secs",
        ty: "seconds",
        doc: "Timeout to connect to the upstream SMTP server.",
    },
    KeyDoc {
        key: "delivery.command_timeout_secs",
        ty: "seconds",
        doc: "Timeout for each upstream SMTP reply.",
    },
    KeyDoc {
        key: "delivery.connections_per_account",
        ty: "integer",
        doc: "Upstream SMTP connections per account at once, in use or kept open for the next message (Exchange Online allows 3 per mailbox).",
    },
    KeyDoc {
        key: "delivery.connection_idle_secs",
        ty: "seconds",
        doc: "How long an upstream connection is kept open for the next message. 0: a new connection for every message.",
    },
    KeyDoc {
        key: "delivery.failure_notice_to",
        ty: "address",
        doc: "Where failure notices (DSN) go: an e-mail address. Empty: to the message's envelope sender. \"none\": no notices.",
    },
    KeyDoc {
        key: "google.auth_url",
        ty: "url",
        doc: "Google authorization endpoint.",
    },
    KeyDoc {
        key: "google.token_url",
        ty: "url",
        doc: "Google token endpoint.",
    },
    KeyDoc {
        key: "google.revoke_url",
        ty: "url",
        doc: "Google token revocation endpoint.",
    },
    KeyDoc {
        key: "google.discovery_url",
        ty: "url",
        doc: "Google OpenID configuration, fetched by the Server Connection Status check.",
    },
    KeyDoc {
        key: "google.redirect_host",
        ty: "string",
        doc: "Loopback host of the redirect URI (127.0.0.1 or localhost).",
    },
];

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: shown.clone(),
            error,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: &str| ConfigError::Value {
            path: origin.to_string(),
            key,
            reason: reason.to_string(),
        };
        let positive: [(&'static str, u64); 12] = [
            ("web.session_idle_minutes", self.web.session_idle_minutes),
            ("web.setup_link_minutes", self.web.setup_link_minutes),
            ("intake.max_message_size", self.intake.max_message_size),
            ("intake.max_recipients", self.intake.max_recipients),
            ("intake.max_connections", self.intake.max_connections),
            (
                "intake.max_connections_per_client",
                self.intake.max_connections_per_client,
            ),
            ("intake.idle_timeout_secs", self.intake.idle_timeout_secs),
            (
                "intake.session_timeout_secs",
                self.intake.session_timeout_secs,
            ),
            (
                "intake.max_auth_failures",
                u64::from(self.intake.max_auth_failures),
            ),
            ("delivery.workers", self.delivery.workers),
            ("delivery.rate_per_minute", self.delivery.rate_per_minute),
            (
                "delivery.connections_per_account",
                self.delivery.connections_per_account,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(bad(key, "must be greater than 0"));
            }
        }
        if self.web.tls_cert.is_empty() != self.web.tls_key.is_empty() {
            return Err(bad(
                "web.tls_key",
                "web.tls_cert and web.tls_key must be set together",
            ));
        }
        if self.intake.tls_cert.is_empty() != self.intake.tls_key.is_empty() {
            return Err(bad(
                "intake.tls_key",
                "intake.tls_cert and intake.tls_key must be set together",
            ));
        }
        if self.intake.tls_cert.is_empty()
            && (!self.intake.starttls_listen.is_empty()
                || !self.intake.implicit_tls_listen.is_empty())
        {
            return Err(bad(
                "intake.tls_cert",
                "TLS listeners are configured but no certificate is given",
            ));
        }
        if !self.web.public_url.is_empty() {
            match url::Url::parse(&self.web.public_url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => return Err(bad("web.public_url", "must be an http:// or https:// URL")),
            }
        }
        for (key, value) in [
            ("google.auth_url", &self.google.auth_url),
            ("google.token_url", &self.google.token_url),
            ("google.revoke_url", &self.google.revoke_url),
            ("google.discovery_url", &self.google.discovery_url),
        ] {
            match url::Url::parse(value) {
                Ok(u) if u.scheme() == "https" => {}
                _ => return Err(bad(key, "must be an https:// URL")),
            }
        }
        if !matches!(
            self.google.redirect_host.as_str(),
            "127.0.0.1" | "localhost" | "[::1]"
        ) {
            return Err(bad(
                "google.redirect_host",
                "must be 127.0.0.1, localhost or [::1]",
            ));
        }
        if let Err(reason) = check_log_level(&self.log.level) {
            return Err(bad("log.level", &reason));
        }
        if let Err(reason) = check_hostname(&self.intake.hostname) {
            return Err(bad("intake.hostname", &reason));
        }
        let notice_to = self.delivery.failure_notice_to.trim();
        if !notice_to.is_empty()
            && !notice_to.eq_ignore_ascii_case("none")
            && !is_plain_address(notice_to)
        {
            return Err(bad(
                "delivery.failure_notice_to",
                &format!(
                    "{notice_to:?} is not an e-mail address: give an address such as postmaster@example.com, \"none\" for no notices, or leave it empty to notify the envelope sender"
                ),
            ));
        }
        Ok(())
    }

    /// Checks that the TLS files the configuration names exist and hold a
    /// usable PEM certificate chain and key, loading each configured pair as
    /// a listener does (`hikyaku config check`; `serve` loads them before it
    /// starts anything). `origin` names the configuration in errors.
    pub fn check_tls_files(&self, origin: &str) -> Result<(), ConfigError> {
        for pair in self
            .web_tls_files()
            .into_iter()
            .chain(self.intake_tls_files())
        {
            pair.load().map_err(|error| ConfigError::TlsFile {
                path: origin.to_string(),
                error: Box::new(error),
            })?;
        }
        Ok(())
    }

    /// The Remote UI's certificate and key files, when configured.
    pub fn web_tls_files(&self) -> Option<crate::tls::TlsFiles<'_>> {
        (!self.web.tls_cert.is_empty()).then_some(crate::tls::TlsFiles {
            cert_key: "web.tls_cert",
            cert: &self.web.tls_cert,
            key_key: "web.tls_key",
            key: &self.web.tls_key,
        })
    }

    /// The SMTP listeners' certificate and key files, when configured.
    pub fn intake_tls_files(&self) -> Option<crate::tls::TlsFiles<'_>> {
        (!self.intake.tls_cert.is_empty()).then_some(crate::tls::TlsFiles {
            cert_key: "intake.tls_cert",
            cert: &self.intake.tls_cert,
            key_key: "intake.tls_key",
            key: &self.intake.tls_key,
        })
    }

    /// The documented defaults as a TOML file with a comment on every key.
    pub fn defaults_toml() -> String {
        let value = match toml::Value::try_from(Config::default()) {
            Ok(v) => v,
            Err(e) => return format!("# cannot render defaults: {e}\n"),
        };
        let mut out = String::from("# hikyaku configuration: every key with its default.\n");
        let mut section = "";
        for key in KEYS {
            let (table, name) = key.key.rsplit_once('.').unwrap_or(("", key.key));
            if table != section {
                out.push_str(&format!("\n[{table}]\n"));
                section = table;
            }
            out.push_str(&format!("# {} ({})\n", key.doc, key.ty));
            let found = if table.is_empty() {
                value.get(name)
            } else {
                value.get(table).and_then(|t| t.get(name))
            };
            match found {
                Some(v) => out.push_str(&format!("{name} = {v}\n")),
                None => out.push_str(&format!("# {name} =\n")),
            }
        }
        out
    }
}

/// The levels `log.level` accepts, alone or after `target=`.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// `log.level` is a level, or a list of directives each of which ends in an
/// explicit `=level` (a bare level may stand among them as the default).
/// A bare word that is not a level would be taken by tracing as a target
/// name, silently switching every other log line off (the first-start setup
/// link included), so it is refused.
fn check_log_level(text: &str) -> Result<(), String> {
    let allowed = "use trace, debug, info, warn, error or off, or target=level directives separated by commas such as \"hikyaku=debug,sqlx=warn\"";
    let is_level = |w: &str| LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(w.trim()));
    if text.trim().is_empty() {
        return Err(format!("is empty: {allowed}"));
    }
    for directive in text.split(',') {
        let ok = match directive.rsplit_once('=') {
            Some((target, level)) => !target.trim().is_empty() && is_level(level),
            None => is_level(directive),
        };
        if !ok {
            return Err(format!(
                "{:?} is not a log level or a target=level directive: {allowed}",
                directive.trim()
            ));
        }
    }
    if tracing_subscriber::EnvFilter::try_new(text).is_err() {
        return Err(format!("{text:?} is not a valid log filter: {allowed}"));
    }
    Ok(())
}

/// `intake.hostname` goes into the 220 greeting and the EHLO reply as it is:
/// a domain name (letters, digits, hyphens, dots) or an address literal.
fn check_hostname(host: &str) -> Result<(), String> {
    let allowed =
        "give a domain name such as mail.example.com or an address literal such as [192.0.2.1]";
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ok = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
                inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
            }
            _ => inner.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return if ok {
            Ok(())
        } else {
            Err(format!("{host:?} is not an address literal: {allowed}"))
        };
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!("{host:?} is not a domain name: {allowed}"))
    }
}

/// An address that can stand between `<` and `>` as it is: a local part and
/// a domain, without white space, controls or special characters.
fn is_plain_address(addr: &str) -> bool {
    addr.rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && crate::delivery::rewrite::is_safe_address(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = value {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_table() {
                    leaves(v, &path, out);
                } else {
                    out.push(path);
                }
            }
        }
    }

    #[test]
    fn every_key_is_documented_once_and_defaults_round_trip() {
        let value = toml::Value::try_from(Config::default()).unwrap();
        let mut keys = Vec::new();
        leaves(&value, "", &mut keys);
        let mut documented: Vec<String> = KEYS.iter().map(|k| k.key.to_string()).collect();
        keys.sort();
        documented.sort();
        assert_eq!(keys, documented);
        let printed = Config::defaults_toml();
        assert_eq!(
            Config::parse(&printed, "defaults").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Config::parse("[web]\nlisen = \"127.0.0.1:1\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.toml") && err.contains("lisen"), "{err}");
        let err = Config::parse("[web]\nlisten = \"nowhere\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen") && err.contains("line 2"), "{err}");
        let err = Config::parse("[web]\nsession_idle_minutes = 0\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("web.session_idle_minutes") && err.contains("greater than 0"),
            "{err}"
        );
        let err = Config::parse("[log]\nformat = \"xml\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("format"), "{err}");
    }

    fn refusal(text: &str) -> String {
        match Config::parse(text, "x.toml") {
            Ok(_) => panic!("accepted: {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn log_level_is_a_level_or_target_level_directives() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "hikyaku=debug",
            "hikyaku=debug,sqlx=warn",
            "warn,hikyaku=trace",
        ] {
            let config = Config::parse(&format!("[log]\nlevel = {ok:?}\n"), "x.toml");
            assert!(config.is_ok(), "{ok:?} refused: {config:?}");
        }
        // A bare word other than a level would be a target filter that
        // switches every other log line off, the setup link included.
        for bad in [
            "debgu",
            "hikyaku",
            "hikyaku=debgu",
            "info,sqlx",
            "",
            "=debug",
        ] {
            let err = refusal(&format!("[log]\nlevel = {bad:?}\n"));
            assert!(
                err.contains("x.toml")
                    && err.contains("`log.level`")
                    && err.contains("trace, debug, info, warn, error or off")
                    && err.contains("hikyaku=debug,sqlx=warn"),
                "{bad:?}: {err}"
            );
        }
        assert!(refusal("[log]\nlevel = \"debgu\"\n").contains("\"debgu\""));
    }

    #[test]
    fn hostname_must_be_a_domain_or_address_literal() {
        for ok in [
            "localhost",
            "mail.example.com",
            "relay-1.example.com",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
        ] {
            let config = Config::parse(&format!("[intake]\nhostname = {ok:?}\n"), "x.toml");
            assert!(config.is_ok(), "{ok:?} refused: {config:?}");
        }
        for bad in [
            "",
            "mail.example.com\r\n250 fake",
            "my host",
            "under_score.example",
            "-lead.example.com",
            "a..b",
            "[999.1.1.1]",
            "[2001:db8::1]",
            "[IPv6:nope]",
        ] {
            let err = refusal(&format!("[intake]\nhostname = {bad:?}\n"));
            assert!(
                err.contains("`intake.hostname`") && err.contains("domain name"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn failure_notice_to_is_empty_none_or_an_address() {
        for ok in ["", "none", "None", "postmaster@example.com"] {
            let config = Config::parse(
                &format!("[delivery]\nfailure_notice_to = {ok:?}\n"),
                "x.toml",
            );
            assert!(config.is_ok(), "{ok:?} refused: {config:?}");
        }
        for bad in [
            "not an address",
            "postmaster",
            "a@",
            "@example.com",
            "<a@example.com>",
            "a@example.com, b@example.com",
        ] {
            let err = refusal(&format!("[delivery]\nfailure_notice_to = {bad:?}\n"));
            assert!(
                err.contains("`delivery.failure_notice_to`")
                    && err.contains("not an e-mail address"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn zero_session_timeout_and_auth_failures_are_refused() {
        for key in ["session_timeout_secs", "max_auth_failures"] {
            let err = refusal(&format!("[intake]\n{key} = 0\n"));
            assert!(
                err.contains(&format!("`intake.{key}`")) && err.contains("greater than 0"),
                "{err}"
            );
        }
    }

    #[test]
    fn tls_files_must_exist_and_hold_pem_naming_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let ss = crate::tls::generate_self_signed(&["localhost".to_owned()]).unwrap();
        std::fs::write(path("cert.pem"), &ss.cert_pem).unwrap();
        std::fs::write(path("key.pem"), &ss.key_pem).unwrap();
        std::fs::write(path("junk.pem"), "hello\n").unwrap();
        let other = crate::tls::generate_self_signed(&["localhost".to_owned()]).unwrap();
        std::fs::write(path("other-key.pem"), &other.key_pem).unwrap();
        let config = |section: &str, cert: &str, key: &str| {
            let mut c = Config::default();
            let (cert, key) = (path(cert), path(key));
            if section == "web" {
                (c.web.tls_cert, c.web.tls_key) = (cert, key);
            } else {
                (c.intake.tls_cert, c.intake.tls_key) = (cert, key);
            }
            c
        };
        for section in ["web", "intake"] {
            config(section, "cert.pem", "key.pem")
                .check_tls_files("x.toml")
                .unwrap();
            let err = |cert: &str, key: &str| {
                config(section, cert, key)
                    .check_tls_files("x.toml")
                    .unwrap_err()
                    .to_string()
            };
            let missing = err("missing.pem", "key.pem");
            assert!(
                missing.contains("x.toml")
                    && missing.contains(&format!("{section}.tls_cert = "))
                    && missing.contains("missing.pem")
                    && missing.matches("os error 2").count() == 1,
                "{missing}"
            );
            let junk = err("junk.pem", "key.pem");
            assert!(
                junk.contains(&format!("{section}.tls_cert = "))
                    && junk.contains("junk.pem")
                    && junk.contains("no certificate found")
                    && !junk.contains("paste"),
                "{junk}"
            );
            let key = err("cert.pem", "junk.pem");
            assert!(
                key.contains(&format!("{section}.tls_key = "))
                    && key.contains("junk.pem")
                    && key.contains("private key"),
                "{key}"
            );
            let pair = err("cert.pem", "other-key.pem");
            assert!(
                pair.contains(&format!("{section}.tls_cert = "))
                    && pair.contains("other-key.pem")
                    && pair.contains("belongs to the first certificate"),
                "{pair}"
            );
        }
    }
}
