//! The text of `hikyaku queue` (`mailq`), `queue show` and `status`, from
//! the JSON that the control socket and the JSON API give alike. Times are
//! UTC, written out so that they read the same on every host.

use std::fmt::Write as _;

use serde_json::Value;

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
pub fn queue(jobs: &[Value]) -> String {
    if jobs.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36} {:>9}  {:<23}  {:<8}  Sender/Recipient",
        "Job ID", "Size", "Arrived", "State"
    );
    let mut bytes = 0;
    for j in jobs {
        let size = j["size"].as_i64().unwrap_or_default();
        bytes += size;
        let _ = writeln!(
            out,
            "{:<36} {:>9}  {:<23}  {:<8}  {}",
            text(j, "id"),
            size,
            time(j["created_at"].as_i64()),
            text(j, "state"),
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
    let _ = writeln!(
        out,
        "-- {kib} KiB in {n} {}.",
        if n == 1 { "job" } else { "jobs" }
    );
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One job, a field a line.
pub fn job(j: &Value) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<14} {v}");
    };
    line("Job ID:", text(j, "id").into());
    line("State:", text(j, "state").into());
    line(
        "Size:",
        format!("{} bytes", j["size"].as_i64().unwrap_or_default()),
    );
    line("Arrived:", time(j["created_at"].as_i64()));
    line("Updated:", time(j["updated_at"].as_i64()));
    if matches!(j["state"].as_str(), Some("queued" | "deferred")) {
        line("Next attempt:", time(j["next_attempt_at"].as_i64()));
    }
    line(
        "Attempts:",
        j["attempts"].as_i64().unwrap_or_default().to_string(),
    );
    line(
        "Submitter:",
        format!("{} ({})", text(j, "submitter"), text(j, "source")),
    );
    line("Sender:", text(j, "mail_from").into());
    let rcpts: Vec<&str> = j["rcpt_to"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    line("Recipients:", rcpts.join(", "));
    line("From:", text(j, "header_from").into());
    line("Subject:", text(j, "subject").into());
    let account = |k: &str| j[k].as_i64().map_or("-".into(), |id| format!("#{id}"));
    line("Account:", account("account_id"));
    line("Sent via:", account("via_account_id"));
    let reply = match (j["last_reply"].as_str(), j["last_reply_code"].as_str()) {
        (Some(r), Some(code)) => format!("{} [{code}]", one_line(r)),
        (Some(r), None) => one_line(r),
        _ => "-".into(),
    };
    line("Last reply:", reply);
    out
}

/// `hikyaku status`: the accounts, the queue's counts, the last error.
/// `now` makes expiry times relative ("in 52m", "3h ago").
pub fn status(s: &Value, now: i64) -> String {
    let mut out = String::from("Accounts\n");
    let accounts = s["accounts"].as_array().cloned().unwrap_or_default();
    if accounts.is_empty() {
        out.push_str("  (none yet: set one up in the Remote UI)\n");
    }
    let when = |t: Option<i64>| match t {
        None => "-".to_string(),
        Some(t) if t >= now => format!("{} (in {})", time(Some(t)), duration(t - now)),
        Some(t) => format!("{} ({} ago)", time(Some(t)), duration(now - t)),
    };
    for a in &accounts {
        let mut title = format!("  {}", text(a, "provider"));
        if let Some(id) = a["id"].as_i64() {
            title = format!("  #{id} {}", text(a, "provider"));
        }
        if let Some(name) = a["name"].as_str() {
            let _ = write!(title, " \"{name}\"");
        }
        let mut traits = Vec::new();
        for key in ["cloud", "credential_kind"] {
            if let Some(v) = a[key].as_str() {
                traits.push(v.to_string());
            }
        }
        traits.push(if a["enabled"].as_bool() == Some(false) {
            "disabled".into()
        } else {
            "enabled".into()
        });
        if a["is_default"].as_bool() == Some(true) {
            traits.push("default".into());
        }
        let _ = writeln!(out, "{title} ({})", traits.join(", "));
        let _ = writeln!(out, "    mailbox:     {}", text(a, "mailbox"));
        let mut token = text(a, "token_status").to_string();
        if let Some(r) = a["token_reason"].as_str() {
            let _ = write!(token, ": {}", one_line(r));
        }
        let _ = writeln!(out, "    token:       {token}");
        if a["access_token_expires_at"].is_i64() {
            let _ = writeln!(
                out,
                "    expires:     {}",
                when(a["access_token_expires_at"].as_i64())
            );
        }
        if a["credential_expires_at"].is_i64() {
            let _ = writeln!(
                out,
                "    credential:  expires {}",
                when(a["credential_expires_at"].as_i64())
            );
        }
        let mut connection = text(a, "connection_status").to_string();
        if let Some(r) = a["connection_reason"].as_str() {
            let _ = write!(connection, ": {}", one_line(r));
        }
        if let Some(t) = a["connection_checked_at"].as_i64() {
            let _ = write!(connection, " (checked {})", when(Some(t)));
        }
        let _ = writeln!(out, "    connection:  {connection}");
    }
    out.push_str("Queue\n");
    let counts: Vec<String> = ["queued", "sending", "deferred", "sent", "failed"]
        .iter()
        .map(|k| format!("{k} {}", s["queue"][k].as_i64().unwrap_or_default()))
        .collect();
    let _ = writeln!(out, "  {}", counts.join(", "));
    out.push_str("Last error\n");
    match s["last_error"].as_object() {
        Some(e) => {
            let _ = writeln!(
                out,
                "  {}: {}",
                time(e.get("at").and_then(Value::as_i64)),
                one_line(e.get("reply").and_then(Value::as_str).unwrap_or("-"))
            );
        }
        None => out.push_str("  none\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_queue_lists_each_job_with_its_reply_and_recipients() {
        assert_eq!(queue(&[]), "Mail queue is empty\n");
        let jobs = [json!({
            "id": "j1", "size": 2048, "created_at": 1_780_000_000, "state": "deferred",
            "mail_from": "a@example.com", "rcpt_to": ["b@example.com", "c@example.com"],
            "last_reply": "421 4.7.0\n try later",
        })];
        let text = queue(&jobs);
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
        let text = status(&s, 1000);
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
}
