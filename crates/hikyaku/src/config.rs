//! The configuration file (TOML). Every key is declared once: its type and
//! default in the serde structs below, its description in [`KEYS`]; a test
//! keeps the two in step, and `hikyaku config defaults` prints both.
//! Unknown keys and bad values are refused with the file, the key and why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration file {path}: key `{key}`: {reason}")]
    Value {
        path: String,
        key: &'static str,
        reason: String,
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
        doc: "Log filter (trace, debug, info, warn, error, or a tracing filter such as \"hikyaku=debug\"). RUST_LOG overrides it.",
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
        doc: "Name hikyaku gives itself in the SMTP greeting.",
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
        doc: "Where failure notices (DSN) go. Empty: to the message's envelope sender. \"none\": no notices.",
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
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
        let positive: [(&'static str, u64); 10] = [
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
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(bad(
                "log.level",
                "not a valid log filter (try \"info\" or \"hikyaku=debug\")",
            ));
        }
        Ok(())
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
}
