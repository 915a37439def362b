//! The configuration file (TOML). Every key is declared once, in the table
//! given to `config_keys!` below: its description, type, default and the rule
//! its value must pass. The serde structs, their defaults, [`KEYS`] (printed
//! by `hikyaku config defaults`) and the checks all come from that table.
//! Unknown keys and bad values are refused with the file, the key and why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::address::is_plain_address;

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

/// One documented key: its dotted path, its type and what it does.
pub struct KeyDoc {
    pub key: &'static str,
    pub ty: &'static str,
    pub doc: &'static str,
}

/// Builds the configuration from one table of keys. Each key is written as
///
/// ```text
/// /// What it does (printed by `config defaults`, and the field's rustdoc).
/// name: Type = default, "type word" [, rule];
/// ```
///
/// under the root struct or under a `section: SectionStruct { ... }`. The
/// optional rule is a function taking `&Type` and returning why the value is
/// refused. From the table come the serde structs (unknown keys refused,
/// missing keys defaulted), their `Default`s, [`KEYS`] in table order, and
/// `check_keys`, which applies the rules in table order.
macro_rules! config_keys {
    (
        $(#[$root_meta:meta])*
        $root:ident {
            $(
                $(#[doc = $root_doc:literal])*
                $root_key:ident : $root_ty:ty = $root_default:expr, $root_word:literal
                    $(, $root_rule:expr)? ;
            )*
        }
        $(
            $(#[$section_meta:meta])*
            $section:ident : $section_ty:ident {
                $(
                    $(#[doc = $doc:literal])*
                    $key:ident : $ty:ty = $default:expr, $word:literal $(, $rule:expr)? ;
                )*
            }
        )*
    ) => {
        $(#[$root_meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $root {
            $( $(#[doc = $root_doc])* pub $root_key: $root_ty, )*
            $( $(#[$section_meta])* pub $section: $section_ty, )*
        }

        impl Default for $root {
            fn default() -> Self {
                Self {
                    $( $root_key: $root_default, )*
                    $( $section: $section_ty::default(), )*
                }
            }
        }

        $(
            $(#[$section_meta])*
            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
            #[serde(deny_unknown_fields, default)]
            pub struct $section_ty {
                $( $(#[doc = $doc])* pub $key: $ty, )*
            }

            impl Default for $section_ty {
                fn default() -> Self {
                    Self {
                        $( $key: $default, )*
                    }
                }
            }
        )*

        /// The description of every key, in the order `config defaults`
        /// prints them.
        pub const KEYS: &[KeyDoc] = &[
            $(
                KeyDoc {
                    key: stringify!($root_key),
                    ty: $root_word,
                    doc: concat!($($root_doc),*).trim_ascii_start(),
                },
            )*
            $($(
                KeyDoc {
                    key: concat!(stringify!($section), ".", stringify!($key)),
                    ty: $word,
                    doc: concat!($($doc),*).trim_ascii_start(),
                },
            )*)*
        ];

        impl $root {
            /// Applies each key's rule in table order: the first key refused
            /// and why.
            fn check_keys(&self) -> Result<(), (&'static str, String)> {
                $($(
                    ($root_rule)(&self.$root_key)
                        .map_err(|reason| (stringify!($root_key), reason))?;
                )?)*
                $($($(
                    ($rule)(&self.$section.$key).map_err(|reason| {
                        (concat!(stringify!($section), ".", stringify!($key)), reason)
                    })?;
                )?)*)*
                Ok(())
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

// Every key: description, name, type, default, type word and rule.
config_keys! {
    /// The whole configuration.
    Config {
        /// Directory for the SQLite store (hikyaku.sqlite), the master key
        /// (master.key) and generated certificates. Relative paths are relative to
        /// the working directory.
        data_dir: PathBuf = PathBuf::from("data"), "path";
    }

    /// Where the store lives.
    store: StoreConfig {
        /// Empty (or sqlite://PATH): the SQLite file in data_dir (or at PATH),
        /// for one instance. postgres://USER@HOST:PORT/DATABASE: a PostgreSQL
        /// database that several instances share (each with the same master.key).
        url: String = String::new(), "url", store_url;
        /// PostgreSQL only: how long a delivery's claim of a job lasts without a
        /// heartbeat (a running delivery renews it every third of it). An
        /// instance that dies leaves its jobs to the others after this long.
        lease_secs: u64 = 60, "seconds", positive;
    }

    /// The Remote UI and the JSON API.
    web: WebConfig {
        /// Address of the Remote UI and JSON API. On a non-loopback address the UI
        /// is served over HTTPS.
        listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), "address";
        /// PEM certificate chain for the Remote UI's HTTPS. Empty: a self-signed
        /// certificate is generated in data_dir at first start.
        tls_cert: String = String::new(), "path";
        /// PEM private key for web.tls_cert.
        tls_key: String = String::new(), "path";
        /// Serve plain HTTP on a non-loopback address. Insecure: passwords cross
        /// the network in clear; the UI then shows a warning banner.
        allow_plain_http: bool = false, "bool";
        /// A signed-in session ends after this many minutes without a request.
        session_idle_minutes: u64 = 15, "integer", positive;
        /// How long the one-time first-start setup link stays valid.
        setup_link_minutes: u64 = 60, "integer", positive;
        /// Base URL users reach the Remote UI at, used in the printed setup link.
        /// Empty: derived from web.listen.
        public_url: String = String::new(), "url", empty_or_web_url;
    }

    /// Logging.
    log: LogConfig {
        /// Log level: trace, debug, info, warn, error or off; or comma-separated
        /// target=level directives such as "hikyaku=debug,sqlx=warn" (a bare level
        /// may stand among them as the default). RUST_LOG overrides it.
        level: String = "info".into(), "string", log_level;
        /// Log line format.
        format: LogFormat = LogFormat::Text, "text | json";
    }

    /// The local control socket: `hikyaku queue`, `status`, `send` and
    /// `sendmail` reach the running server through it.
    control: ControlConfig {
        /// Path of the Unix socket. Empty: hikyaku.sock in data_dir (reachable only
        /// by users who can enter data_dir). The package puts it in
        /// /run/hikyaku/, where every local user can submit mail; only root and
        /// hikyaku's own user may manage the queue through it.
        socket: String = String::new(), "path";
    }

    /// The SMTP listeners and what they accept.
    intake: IntakeConfig {
        /// Plain SMTP listeners (STARTTLS offered if intake.tls_cert is set). Keep
        /// these on loopback unless clients authenticate.
        listen: Vec<SocketAddr> = vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            "list of addresses";
        /// SMTP listeners that offer STARTTLS and allow AUTH only after it (e.g.
        /// 0.0.0.0:587). Needs intake.tls_cert.
        starttls_listen: Vec<SocketAddr> = Vec::new(), "list of addresses";
        /// SMTP listeners with TLS from the first byte (e.g. 0.0.0.0:465). Needs
        /// intake.tls_cert.
        implicit_tls_listen: Vec<SocketAddr> = Vec::new(), "list of addresses";
        /// PEM certificate chain for the SMTP listeners' TLS.
        tls_cert: String = String::new(), "path";
        /// PEM private key for intake.tls_cert.
        tls_key: String = String::new(), "path";
        /// Name hikyaku gives itself in the SMTP greeting: a domain name or an
        /// address literal such as [192.0.2.1].
        hostname: String = "localhost".into(), "string", host_name;
        /// Largest message accepted (552 5.3.4 beyond). Exchange Online accepts up
        /// to 35 MB, Gmail 25 MB.
        max_message_size: u64 = 35 * 1024 * 1024, "bytes", positive;
        /// Recipients per message (452 4.5.3 beyond).
        max_recipients: u64 = 100, "integer", positive;
        /// SMTP connections at once, all clients together.
        max_connections: u64 = 200, "integer", positive;
        /// SMTP connections at once from one client address.
        max_connections_per_client: u64 = 20, "integer", positive;
        /// SMTP connections at once from one network (IPv4 /24, IPv6 /64), so
        /// that a few addresses of one network cannot take every connection.
        max_connections_per_network: u64 = 100, "integer", positive;
        /// An SMTP session that sends nothing for this long is closed (421 4.4.2).
        idle_timeout_secs: u64 = 300, "seconds", positive;
        /// Longest SMTP session.
        session_timeout_secs: u64 = 1800, "seconds", positive;
        /// Failed AUTH attempts before the SMTP session is closed.
        max_auth_failures: u32 = 3, "integer", positive;
    }

    /// Delivery to the upstream servers.
    delivery: DeliveryConfig {
        /// Messages delivered at once.
        workers: u64 = 4, "integer", positive;
        /// A message still undelivered after this long (temporary failures) fails.
        max_age_hours: u64 = 120, "hours";
        /// Messages per minute per account (Exchange Online allows 30).
        rate_per_minute: u64 = 30, "integer", positive;
        /// When a message's From differs from the account's mailbox, rewrite From
        /// to the mailbox (keeping the display name) and put the original address
        /// in Reply-To.
        rewrite_from: bool = true, "bool";
        /// Timeout to connect to the upstream SMTP server.
        connect_timeout_secs: u64 = 30, "seconds";
        /// Timeout for each upstream SMTP reply.
        command_timeout_secs: u64 = 120, "seconds";
        /// Upstream SMTP connections per account at once, in use or kept open for
        /// the next message (Exchange Online allows 3 per mailbox).
        connections_per_account: u64 = 3, "integer", positive;
        /// How long an upstream connection is kept open for the next message. 0: a
        /// new connection for every message.
        connection_idle_secs: u64 = 30, "seconds";
        /// Where failure notices (DSN) go: an e-mail address. Empty: to the
        /// message's envelope sender. "none": no notices.
        failure_notice_to: String = String::new(), "address", notice_address;
    }

    /// Google's OAuth 2.0 endpoints.
    google: GoogleConfig {
        /// Google authorization endpoint.
        auth_url: String = "https://accounts.google.com/o/oauth2/v2/auth".into(), "url", https_url;
        /// Google token endpoint.
        token_url: String = "https://oauth2.googleapis.com/token".into(), "url", https_url;
        /// Google token revocation endpoint.
        revoke_url: String = "https://oauth2.googleapis.com/revoke".into(), "url", https_url;
        /// Google OpenID configuration, fetched by the Server Connection Status
        /// check.
        discovery_url: String =
            "https://accounts.google.com/.well-known/openid-configuration".into(),
            "url", https_url;
        /// Loopback host of the redirect URI (127.0.0.1 or localhost).
        redirect_host: String = "127.0.0.1".into(), "string", loopback_host;
    }

    /// The Send Job History.
    history: HistoryConfig {
        /// Sent and failed jobs (and a failed job's message) are deleted this many
        /// days after they finished. Queued and deferred jobs are never deleted.
        keep_days: u64 = 90, "days", positive;
    }

    /// The Audit Log.
    audit: AuditConfig {
        /// Audit Log entries are deleted after this many days.
        keep_days: u64 = 365, "days", positive;
    }
}

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
        self.check_keys()
            .map_err(|(key, reason)| bad(key, &reason))?;
        // Rules that span keys.
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

    /// Where the control socket is (`control.socket`, else in `data_dir`).
    pub fn control_socket(&self) -> PathBuf {
        if self.control.socket.is_empty() {
            self.data_dir.join("hikyaku.sock")
        } else {
            PathBuf::from(&self.control.socket)
        }
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

/// Counts, sizes and timeouts for which 0 would switch the feature off or
/// refuse everything.
fn positive<T: Copy + Into<u64>>(value: &T) -> Result<(), String> {
    if (*value).into() == 0 {
        Err("must be greater than 0".into())
    } else {
        Ok(())
    }
}

/// `web.public_url`: empty (derived from `web.listen`) or a web address.
/// The form only; the store checks the rest when it opens.
fn store_url(text: &str) -> Result<(), String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(());
    }
    match text.split_once("://") {
        Some(("sqlite", path)) if !path.is_empty() => Ok(()),
        Some(("postgres" | "postgresql", rest)) if !rest.is_empty() => Ok(()),
        _ => Err(
            "must be empty (the file in data_dir), sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"
                .into(),
        ),
    }
}

fn empty_or_web_url(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    match url::Url::parse(text) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => Err("must be an http:// or https:// URL".into()),
    }
}

/// Google's endpoints carry secrets and tokens: never over plain HTTP.
fn https_url(text: &str) -> Result<(), String> {
    match url::Url::parse(text) {
        Ok(u) if u.scheme() == "https" => Ok(()),
        _ => Err("must be an https:// URL".into()),
    }
}

/// The redirect URI of a loopback authorization must point at this machine.
fn loopback_host(text: &str) -> Result<(), String> {
    if matches!(text, "127.0.0.1" | "localhost" | "[::1]") {
        Ok(())
    } else {
        Err("must be 127.0.0.1, localhost or [::1]".into())
    }
}

/// `delivery.failure_notice_to`: empty, "none" or an address that can be
/// written into RCPT TO as it is.
fn notice_address(text: &str) -> Result<(), String> {
    let notice_to = text.trim();
    if notice_to.is_empty() || notice_to.eq_ignore_ascii_case("none") || is_plain_address(notice_to)
    {
        Ok(())
    } else {
        Err(format!(
            "{notice_to:?} is not an e-mail address: give an address such as postmaster@example.com, \"none\" for no notices, or leave it empty to notify the envelope sender"
        ))
    }
}

impl WebConfig {
    /// `session_idle_minutes` in seconds, the unit the store compares with.
    pub fn session_idle_secs(&self) -> i64 {
        i64::try_from(self.session_idle_minutes.saturating_mul(60)).unwrap_or(i64::MAX)
    }
}

/// The levels `log.level` accepts, alone or after `target=`.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// `log.level` is a level, or a list of directives each of which ends in an
/// explicit `=level` (a bare level may stand among them as the default).
/// A bare word that is not a level would be taken by tracing as a target
/// name, silently switching every other log line off (the first-start setup
/// link included), so it is refused.
fn log_level(text: &str) -> Result<(), String> {
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
fn host_name(host: &str) -> Result<(), String> {
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

    /// `config` is a leaf: besides the address and TLS leaves it uses no
    /// module of the crate, so any module may read the configuration.
    #[test]
    fn config_uses_only_leaf_modules() {
        let source = include_str!("config.rs");
        let needle = concat!("crate", "::");
        for (at, _) in source.match_indices(needle) {
            let rest = &source[at + needle.len()..];
            let module = rest
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
                .unwrap_or_default();
            assert!(
                matches!(module, "address" | "tls"),
                "config uses the module {module:?}"
            );
        }
    }

    /// Each key's rule refuses with that key's name and the same reason.
    #[test]
    fn each_rule_refuses_with_its_own_key() {
        let zero = "must be greater than 0";
        let https = "must be an https:// URL";
        for (key, value, reason) in [
            ("web.session_idle_minutes", "0", zero),
            ("web.setup_link_minutes", "0", zero),
            ("intake.max_message_size", "0", zero),
            ("intake.max_recipients", "0", zero),
            ("intake.max_connections", "0", zero),
            ("intake.max_connections_per_client", "0", zero),
            ("intake.max_connections_per_network", "0", zero),
            ("intake.idle_timeout_secs", "0", zero),
            ("intake.session_timeout_secs", "0", zero),
            ("intake.max_auth_failures", "0", zero),
            ("delivery.workers", "0", zero),
            ("delivery.rate_per_minute", "0", zero),
            ("delivery.connections_per_account", "0", zero),
            (
                "web.public_url",
                "\"ftp://example.com\"",
                "must be an http:// or https:// URL",
            ),
            ("google.auth_url", "\"http://example.com\"", https),
            ("google.token_url", "\"http://example.com\"", https),
            ("google.revoke_url", "\"http://example.com\"", https),
            ("google.discovery_url", "\"not a url\"", https),
            (
                "google.redirect_host",
                "\"example.com\"",
                "must be 127.0.0.1, localhost or [::1]",
            ),
        ] {
            let (table, name) = key.split_once('.').unwrap();
            assert_eq!(
                refusal(&format!("[{table}]\n{name} = {value}\n")),
                format!("invalid configuration file x.toml: key `{key}`: {reason}")
            );
        }
        // Keys without a rule take any value of their type.
        for (key, value) in [
            ("delivery.max_age_hours", "0"),
            ("delivery.connect_timeout_secs", "0"),
            ("delivery.connection_idle_secs", "0"),
            ("web.public_url", "\"\""),
        ] {
            let (table, name) = key.split_once('.').unwrap();
            let text = format!("[{table}]\n{name} = {value}\n");
            assert!(Config::parse(&text, "x.toml").is_ok(), "{text}");
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
