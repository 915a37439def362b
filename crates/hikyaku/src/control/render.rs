//! The text of `hikyaku queue` (`mailq`), `queue show` and `status`, from
//! the JSON that the control socket and the JSON API give alike. Times are
//! UTC, written out so that they read the same on every host. The labels
//! follow the terminal's language (`LC_ALL`, `LC_MESSAGES`, `LANG`: `ja…`
//! gives Japanese, anything else English); ids, addresses, sizes, times and
//! the servers' replies are printed as they are.

use std::fmt::Write as _;

use serde_json::Value;

use crate::i18n::{Locale, Tr};

/// The language of the terminal's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    English,
    Japanese,
}

impl Language {
    /// The language the environment asks for, as `setlocale` reads it:
    /// the first of `LC_ALL`, `LC_MESSAGES`, `LANG` that is set and not
    /// empty.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok();
        Self::from_vars(var("LC_ALL"), var("LC_MESSAGES"), var("LANG"))
    }

    /// [`from_env`](Self::from_env) over given values.
    pub fn from_vars(
        lc_all: Option<String>,
        lc_messages: Option<String>,
        lang: Option<String>,
    ) -> Self {
        let chosen = [lc_all, lc_messages, lang]
            .into_iter()
            .flatten()
            .find(|v| !v.trim().is_empty())
            .unwrap_or_default();
        if chosen.trim().to_ascii_lowercase().starts_with("ja") {
            Language::Japanese
        } else {
            Language::English
        }
    }

    fn tr(self) -> Tr {
        Tr::new(match self {
            Language::English => Locale::En,
            Language::Japanese => Locale::Ja,
        })
    }
}

/// `text` padded with spaces to `width` columns, counting a wide (CJK)
/// character as two, so that Japanese labels line up too.
fn pad(text: &str, width: usize) -> String {
    let used: usize = text
        .chars()
        .map(|c| if (c as u32) < 0x1100 { 1 } else { 2 })
        .sum();
    format!("{text}{}", " ".repeat(width.saturating_sub(used)))
}

/// A status code (`deferred`, `not_registered`) as printed: as it is in
/// English, which scripts read; translated (`PREFIX-CODE`) in Japanese.
fn code(tr: &Tr, prefix: &str, value: &str) -> String {
    if tr.locale == Locale::En {
        return value.to_owned();
    }
    tr.try_t(&format!("{prefix}-{value}"))
        .unwrap_or_else(|| value.to_owned())
}

fn arg(tr: &Tr, key: &str, args: &[(&'static str, String)]) -> String {
    tr.args(key, args)
}

/// A Unix time as `2026-12-05 14:35:21 UTC`.
pub fn time(unix: Option<i64>) -> String {
    let Some(t) = unix.and_then(|u| time::OffsetDateTime::from_unix_timestamp(u).ok()) else {
        return "-".into();
    };
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.format(&format)
        .map(|s| format!("{s} UTC"))
        .unwrap_or_else(|_| "-".into())
}

/// A length of time, roughly: `45s`, `12m`, `3h 5m`, `2d 4h`.
fn duration(secs: i64) -> String {
    let s = secs.unsigned_abs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// The queue as `mailq` lists it: one block per job (id, size, arrival,
/// state, sender; the last reply in brackets; one recipient a line), and a
/// total. An empty queue says so in Postfix's words, which scripts look for.
pub fn queue(jobs: &[Value], lang: Language) -> String {
    let tr = lang.tr();
    if jobs.is_empty() {
        return format!("{}\n", tr.t("cli-queue-empty"));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {:>9}  {}  {}  {}",
        pad(&tr.t("cli-queue-col-id"), 36),
        tr.t("cli-queue-col-size"),
        pad(&tr.t("cli-queue-col-arrived"), 23),
        pad(&tr.t("cli-queue-col-state"), 8),
        tr.t("cli-queue-col-who"),
    );
    let mut bytes = 0;
    for j in jobs {
        let size = j["size"].as_i64().unwrap_or_default();
        bytes += size;
        let _ = writeln!(
            out,
            "{:<36} {:>9}  {:<23}  {}  {}",
            text(j, "id"),
            size,
            time(j["created_at"].as_i64()),
            pad(&code(&tr, "job-state", text(j, "state")), 8),
            text(j, "mail_from"),
        );
        if let Some(reply) = j["last_reply"].as_str() {
            let _ = writeln!(out, "{:>84}({})", "", one_line(reply));
        }
        for r in j["rcpt_to"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "{:>84}{}", "", r.as_str().unwrap_or("-"));
        }
        out.push('\n');
    }
    let kib = (bytes + 1023) / 1024;
    let n = jobs.len();
    let key = if n == 1 {
        "cli-queue-total-one"
    } else {
        "cli-queue-total-other"
    };
    let _ = writeln!(
        out,
        "{}",
        arg(&tr, key, &[("kib", kib.to_string()), ("n", n.to_string())])
    );
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One job, a field a line.
pub fn job(j: &Value, lang: Language) -> String {
    let tr = lang.tr();
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "{} {v}", pad(&tr.t(k), 14));
    };
    line("cli-job-id", text(j, "id").into());
    line("cli-job-state", code(&tr, "job-state", text(j, "state")));
    line(
        "cli-job-size",
        arg(
            &tr,
            "cli-job-bytes",
            &[("n", j["size"].as_i64().unwrap_or_default().to_string())],
        ),
    );
    line("cli-job-arrived", time(j["created_at"].as_i64()));
    line("cli-job-updated", time(j["updated_at"].as_i64()));
    if matches!(j["state"].as_str(), Some("queued" | "deferred")) {
        line("cli-job-next", time(j["next_attempt_at"].as_i64()));
    }
    line(
        "cli-job-attempts",
        j["attempts"].as_i64().unwrap_or_default().to_string(),
    );
    line(
        "cli-job-submitter",
        format!("{} ({})", text(j, "submitter"), text(j, "source")),
    );
    line("cli-job-sender", text(j, "mail_from").into());
    let rcpts: Vec<&str> = j["rcpt_to"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    line("cli-job-recipients", rcpts.join(", "));
    line("cli-job-from", text(j, "header_from").into());
    line("cli-job-subject", text(j, "subject").into());
    let account = |k: &str| j[k].as_i64().map_or("-".into(), |id| format!("#{id}"));
    line("cli-job-account", account("account_id"));
    line("cli-job-via", account("via_account_id"));
    let reply = match (j["last_reply"].as_str(), j["last_reply_code"].as_str()) {
        (Some(r), Some(code)) => format!("{} [{code}]", one_line(r)),
        (Some(r), None) => one_line(r),
        _ => "-".into(),
    };
    line("cli-job-reply", reply);
    out
}

/// `hikyaku status`: the accounts (cloud, credential kind, token and its
/// expiry, connection), the queue's counts, the last error. `now` makes
/// expiry times relative ("in 52m", "3h ago").
pub fn status(s: &Value, now: i64, lang: Language) -> String {
    let tr = lang.tr();
    let mut out = format!("{}\n", tr.t("cli-status-accounts"));
    let accounts = s["accounts"].as_array().cloned().unwrap_or_default();
    if accounts.is_empty() {
        let _ = writeln!(out, "  {}", tr.t("cli-status-no-accounts"));
    }
    let when = |t: Option<i64>| match t {
        None => "-".to_string(),
        Some(t) if t >= now => arg(
            &tr,
            "cli-status-in",
            &[("time", time(Some(t))), ("duration", duration(t - now))],
        ),
        Some(t) => arg(
            &tr,
            "cli-status-ago",
            &[("time", time(Some(t))), ("duration", duration(now - t))],
        ),
    };
    let label = |key: &str| pad(&tr.t(key), 12);
    for a in &accounts {
        let mut title = format!("  {}", text(a, "provider"));
        if let Some(id) = a["id"].as_i64() {
            title = format!("  #{id} {}", text(a, "provider"));
        }
        if let Some(name) = a["name"].as_str() {
            let _ = write!(title, " \"{name}\"");
        }
        let mut traits = Vec::new();
        for (key, prefix) in [("cloud", "cloud"), ("credential_kind", "credential-kind")] {
            if let Some(v) = a[key].as_str() {
                traits.push(code(&tr, prefix, v));
            }
        }
        traits.push(if a["enabled"].as_bool() == Some(false) {
            tr.t("cli-status-disabled")
        } else {
            tr.t("cli-status-enabled")
        });
        if a["is_default"].as_bool() == Some(true) {
            traits.push(tr.t("cli-status-default"));
        }
        let _ = writeln!(out, "{title} ({})", traits.join(", "));
        let _ = writeln!(
            out,
            "    {} {}",
            label("cli-status-mailbox"),
            text(a, "mailbox")
        );
        let mut token = code(&tr, "token-status", text(a, "token_status"));
        if let Some(r) = a["token_reason"].as_str() {
            let _ = write!(token, ": {}", one_line(r));
        }
        let _ = writeln!(out, "    {} {token}", label("cli-status-token"));
        if a["access_token_expires_at"].is_i64() {
            let _ = writeln!(
                out,
                "    {} {}",
                label("cli-status-expires"),
                when(a["access_token_expires_at"].as_i64())
            );
        }
        if a["credential_expires_at"].is_i64() {
            let _ = writeln!(
                out,
                "    {} {}",
                label("cli-status-credential"),
                arg(
                    &tr,
                    "cli-status-credential-expires",
                    &[("when", when(a["credential_expires_at"].as_i64()))]
                )
            );
        }
        let mut connection = code(&tr, "connection-status", text(a, "connection_status"));
        if let Some(r) = a["connection_reason"].as_str() {
            let _ = write!(connection, ": {}", one_line(r));
        }
        if let Some(t) = a["connection_checked_at"].as_i64() {
            let _ = write!(
                connection,
                " {}",
                arg(&tr, "cli-status-checked", &[("when", when(Some(t)))])
            );
        }
        let _ = writeln!(out, "    {} {connection}", label("cli-status-connection"));
    }
    let _ = writeln!(out, "{}", tr.t("cli-status-queue"));
    let counts: Vec<String> = ["queued", "sending", "deferred", "sent", "failed"]
        .iter()
        .map(|k| {
            format!(
                "{} {}",
                code(&tr, "job-state", k),
                s["queue"][k].as_i64().unwrap_or_default()
            )
        })
        .collect();
    let _ = writeln!(out, "  {}", counts.join(", "));
    let _ = writeln!(out, "{}", tr.t("cli-status-last-error"));
    match s["last_error"].as_object() {
        Some(e) => {
            let _ = writeln!(
                out,
                "  {}: {}",
                time(e.get("at").and_then(Value::as_i64)),
                one_line(e.get("reply").and_then(Value::as_str).unwrap_or("-"))
            );
        }
        None => {
            let _ = writeln!(out, "  {}", tr.t("cli-status-no-error"));
        }
    }
    out
}

/// `queue retry ID`: the job's new state, and that it will be tried now.
pub fn retried(id: &str, state: &str, lang: Language) -> String {
    let tr = lang.tr();
    let state = code(&tr, "job-state", state);
    format!(
        "{}\n",
        arg(
            &tr,
            "cli-retried",
            &[("id", id.to_owned()), ("state", state)]
        )
    )
}

/// `queue retry --all-deferred`: how many will be tried now.
pub fn retried_all(n: u64, lang: Language) -> String {
    let tr = lang.tr();
    let key = if n == 1 {
        "cli-retried-all-one"
    } else {
        "cli-retried-all-other"
    };
    format!("{}\n", arg(&tr, key, &[("n", n.to_string())]))
}

/// `queue delete ID`.
pub fn deleted(id: &str, lang: Language) -> String {
    let tr = lang.tr();
    format!("{}\n", arg(&tr, "cli-deleted", &[("id", id.to_owned())]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_queue_lists_each_job_with_its_reply_and_recipients() {
        assert_eq!(queue(&[], Language::English), "Mail queue is empty\n");
        let jobs = [json!({
            "id": "j1", "size": 2048, "created_at": 1_780_000_000, "state": "deferred",
            "mail_from": "a@example.com", "rcpt_to": ["b@example.com", "c@example.com"],
            "last_reply": "421 4.7.0\n try later",
        })];
        let text = queue(&jobs, Language::English);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("j1 "), "{text}");
        assert!(
            lines[1].contains(" 2048 ") && lines[1].contains(" deferred "),
            "{text}"
        );
        assert!(lines[1].ends_with("a@example.com"), "{text}");
        assert!(lines[2].trim() == "(421 4.7.0 try later)", "{text}");
        assert_eq!(lines[3].trim(), "b@example.com");
        assert_eq!(lines[4].trim(), "c@example.com");
        assert!(text.ends_with("-- 2 KiB in 1 job.\n"), "{text}");
    }

    #[test]
    fn status_says_when_tokens_expire() {
        let s = json!({
            "accounts": [{"id": 1, "provider": "microsoft", "cloud": "global",
                "credential_kind": "delegated", "enabled": true, "is_default": true,
                "token_status": "active", "access_token_expires_at": 1000 + 3000,
                "connection_status": "failed", "connection_reason": "DNS: no such host"}],
            "queue": {"queued": 2, "failed": 1},
            "last_error": {"at": 0, "reply": "550 5.7.1 no"},
        });
        let text = status(&s, 1000, Language::English);
        assert!(
            text.contains("#1 microsoft (global, delegated, enabled, default)"),
            "{text}"
        );
        assert!(text.contains("token:       active"), "{text}");
        assert!(text.contains("(in 50m)"), "{text}");
        assert!(
            text.contains("connection:  failed: DNS: no such host"),
            "{text}"
        );
        assert!(
            text.contains("queued 2, sending 0, deferred 0, sent 0, failed 1"),
            "{text}"
        );
        assert!(
            text.contains("1970-01-01 00:00:00 UTC: 550 5.7.1 no"),
            "{text}"
        );
    }

    #[test]
    fn the_language_follows_the_environment() {
        let v = |s: &str| Some(s.to_owned());
        assert_eq!(
            Language::from_vars(None, None, v("ja_JP.UTF-8")),
            Language::Japanese
        );
        assert_eq!(
            Language::from_vars(v("C"), None, v("ja_JP.UTF-8")),
            Language::English
        );
        assert_eq!(
            Language::from_vars(v(""), v("ja_JP.UTF-8"), v("en_US.UTF-8")),
            Language::Japanese
        );
        assert_eq!(Language::from_vars(None, None, None), Language::English);
    }

    #[test]
    fn queue_job_and_status_in_japanese() {
        let ja = Language::Japanese;
        assert!(
            queue(&[], ja).contains("Mail queue is empty"),
            "scripts still find it"
        );
        let jobs = [
            json!({
                "id": "j1", "size": 2048, "created_at": 1_780_000_000, "state": "deferred",
                "mail_from": "a@example.com", "rcpt_to": ["b@example.com"],
            }),
            json!({
                "id": "j2", "size": 10, "created_at": 1_780_000_000, "state": "failed",
                "mail_from": "c@example.com", "rcpt_to": ["d@example.com"],
            }),
        ];
        let text = queue(&jobs, ja);
        assert!(text.starts_with("ジョブID"), "{text}");
        assert!(text.contains(" 再送待ち "), "{text}");
        assert!(text.ends_with("-- 3 KiB、2 件のジョブ。\n"), "{text}");
        let one = job(&jobs[0], ja);
        assert!(one.contains("状態"), "{one}");
        assert!(one.contains("再送待ち"), "{one}");
        assert!(one.contains("2048 バイト"), "{one}");
        let s = json!({
            "accounts": [{"id": 1, "provider": "microsoft", "cloud": "worldwide",
                "credential_kind": "delegated", "enabled": true, "is_default": true,
                "token_status": "active", "access_token_expires_at": 1000 + 3000,
                "connection_status": "successful", "connection_checked_at": 900}],
            "queue": {"queued": 2},
        });
        let text = status(&s, 1000, ja);
        assert!(text.starts_with("アカウント\n"), "{text}");
        assert!(text.contains("全世界(Worldwide)"), "{text}");
        assert!(text.contains("委任(ユーザーがサインイン)"), "{text}");
        assert!(text.contains("稼働中"), "{text}");
        assert!(text.contains("（50m 後）"), "{text}");
        assert!(text.contains("成功"), "{text}");
        assert!(text.contains("待機中 2, 送信中 0"), "{text}");
        assert!(text.contains("なし"), "{text}");
        // English stays as scripts read it.
        let en = status(&s, 1000, Language::English);
        assert!(en.contains("token:       active"), "{en}");
        assert!(
            en.contains("connection:  successful (checked 1970-01-01 00:15:00 UTC (1m ago))"),
            "{en}"
        );
    }
}
