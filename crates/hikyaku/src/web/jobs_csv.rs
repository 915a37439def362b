//! The Send Job History as CSV: every row the filters select (not only the
//! page shown), streamed a page of rows at a time so that a long history
//! never sits in memory whole. Shared by the page link (`/jobs.csv`, headings
//! and states in the page's language, times in the display time zone) and
//! the API (`/api/v1/jobs.csv`, stable codes, UTC).
//!
//! A cell a spreadsheet would take for a formula (starting with `=`, `+`,
//! `-`, `@`, a tab or a carriage return) gets a leading `'`: subjects and
//! addresses come from whoever sent the mail (OWASP "CSV injection").

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::i18n::Tr;
use crate::queue::{Job, JobFilter, JobState};
use crate::store::Store;
use crate::store::accounts::{Account, Transport};
use crate::store::export::Cursor;

/// Rows read from the store per chunk of the response.
const ROWS_PER_CHUNK: i64 = 500;

/// How the cells are written.
#[derive(Clone, Copy)]
pub enum Style {
    /// For a person: headings and states in `tr`'s language, times at `offset`.
    Page { tr: Tr, offset: time::UtcOffset },
    /// For a program: column names and codes, times in UTC (RFC 3339).
    Api,
}

/// The text of a cell as written, disarmed if a spreadsheet would run it.
pub fn safe_cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// The transport a job went through (sent: read from the provider's reply,
/// which names the HTTP API), or will go through (its account's now), and
/// the provider's message id when the API gave one.
pub fn transport_of(job: &Job, accounts: &[Account]) -> (Option<Transport>, Option<String>) {
    if job.state == JobState::Sent {
        let text = job
            .last_reply_reason
            .as_ref()
            .filter(|r| r.code == "upstream")
            .and_then(|r| match r.args.get("reply") {
                Some(crate::i18n::Arg::Text(t)) => Some(t.as_str()),
                _ => None,
            })
            .unwrap_or("");
        for (t, api) in [
            (Transport::Graph, " Microsoft Graph accepted"),
            (Transport::GmailApi, " Gmail API accepted"),
        ] {
            if let Some((_, rest)) = text.split_once(api) {
                let id = rest
                    .trim()
                    .strip_prefix("id=")
                    .map(|i| i.trim().to_owned())
                    .filter(|i| !i.is_empty());
                return (Some(t), id);
            }
        }
        return (Some(Transport::Smtp), None);
    }
    let account = job
        .via_account_id
        .or(job.account_id)
        .and_then(|id| accounts.iter().find(|a| a.id == id));
    (account.map(|a| a.transport), None)
}

/// The job as the JSON API shows it: its fields, `transport` and
/// `provider_id`.
pub fn job_json(job: &Job, accounts: &[Account]) -> serde_json::Value {
    let (transport, id) = transport_of(job, accounts);
    let mut v = serde_json::json!(job);
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "transport".into(),
            serde_json::json!(transport.map(Transport::as_str)),
        );
        o.insert("provider_id".into(), serde_json::json!(id));
    }
    v
}

const API_COLUMNS: [&str; 15] = [
    "id",
    "created_at",
    "state",
    "from",
    "envelope_from",
    "to",
    "subject",
    "size",
    "account",
    "attempts",
    "next_attempt_at",
    "last_reply",
    "last_reply_code",
    "transport",
    "provider_id",
];

fn headings(style: Style) -> Vec<String> {
    match style {
        Style::Api => API_COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
        Style::Page { tr, .. } => [
            "job-id",
            "job-time",
            "job-state",
            "job-from",
            "job-envelope-from",
            "job-to",
            "job-subject",
            "job-size",
            "job-account",
            "job-attempts",
            "job-next",
            "job-reply",
            "job-reply-code",
            "accounts-transport",
            "job-provider-id",
        ]
        .iter()
        .map(|k| tr.t(k))
        .collect(),
    }
}

fn time_cell(style: Style, unix: i64) -> String {
    match style {
        Style::Page { offset, .. } => super::pages::fmt_time(unix, offset),
        Style::Api => crate::clock::from_unix(unix)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    }
}

fn row(style: Style, job: &Job, accounts: &[Account]) -> Vec<String> {
    let tr = match style {
        Style::Page { tr, .. } => tr,
        Style::Api => Tr::new(crate::i18n::Locale::En),
    };
    let account = job
        .via_account_id
        .or(job.account_id)
        .and_then(|id| accounts.iter().find(|a| a.id == id));
    let account = match (style, account) {
        (Style::Api, Some(a)) => a.name.clone(),
        (Style::Api, None) => String::new(),
        (Style::Page { .. }, Some(a)) => tr.t(&format!("provider-{}", a.provider.as_str())),
        (Style::Page { .. }, None) => tr.t("default-account"),
    };
    let state = match style {
        Style::Api => job.state.as_str().to_owned(),
        Style::Page { .. } => tr.t(&format!("job-state-{}", job.state)),
    };
    let next = if job.state.is_waiting() {
        time_cell(style, job.next_attempt_at)
    } else {
        String::new()
    };
    let reply = job.last_reply_reason.as_ref();
    let (transport, provider_id) = transport_of(job, accounts);
    let transport = match (style, transport) {
        (_, None) => String::new(),
        (Style::Api, Some(t)) => t.as_str().to_owned(),
        (Style::Page { .. }, Some(t)) => tr.t(&format!("accounts-transport-{}", t.as_str())),
    };
    vec![
        job.id.clone(),
        time_cell(style, job.created_at),
        state,
        job.header_from.clone().unwrap_or_default(),
        job.mail_from.clone(),
        job.rcpt_to.join(", "),
        job.subject.clone().unwrap_or_default(),
        job.size.to_string(),
        account,
        job.attempts.to_string(),
        next,
        reply.map(|r| r.render(&tr)).unwrap_or_default(),
        reply.map(|r| r.code.clone()).unwrap_or_default(),
        transport,
        provider_id.unwrap_or_default(),
    ]
}

fn encode(rows: &[Vec<String>]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    for r in rows {
        // Writing to memory fails only on a bug in the writer: the row is
        // then left out rather than the export cut.
        let _ = w.write_record(r.iter().map(|c| safe_cell(c)));
    }
    w.into_inner().unwrap_or_default()
}

struct Export {
    store: Store,
    filter: JobFilter,
    style: Style,
    accounts: Vec<Account>,
    after: Option<Cursor>,
    /// The first page, read before the response starts.
    first: Option<Vec<Job>>,
    /// Whether the heading row still has to go out.
    heading: bool,
    done: bool,
}

/// The next chunk of the export: the heading, then a page of rows at a time.
async fn next_chunk(mut e: Export) -> Option<(Result<Vec<u8>, std::io::Error>, Export)> {
    if e.heading {
        e.heading = false;
        // The byte order mark makes spreadsheet programs read UTF-8 (the
        // Japanese headings) as UTF-8.
        let mut out = "\u{feff}".as_bytes().to_vec();
        out.extend(encode(&[headings(e.style)]));
        return Some((Ok(out), e));
    }
    if e.done {
        return None;
    }
    let page = match e.first.take() {
        Some(first) => Ok(first),
        None => {
            e.store
                .jobs_page(&e.filter, e.after.as_ref(), ROWS_PER_CHUNK)
                .await
        }
    };
    match page {
        Ok(jobs) => {
            if jobs.len() < ROWS_PER_CHUNK as usize {
                e.done = true;
            }
            if jobs.is_empty() {
                return None;
            }
            e.after = jobs.last().map(|j| (j.created_at, j.id.clone()));
            let rows: Vec<Vec<String>> =
                jobs.iter().map(|j| row(e.style, j, &e.accounts)).collect();
            Some((Ok(encode(&rows)), e))
        }
        // The response has started: a broken stream is how HTTP says the
        // export is incomplete.
        Err(err) => {
            tracing::warn!(error = %err, "job history export stopped");
            e.done = true;
            Some((Err(std::io::Error::other(err.to_string())), e))
        }
    }
}

/// The CSV response for `filter`, downloaded as `file_name`.
pub async fn response(
    store: &Store,
    filter: JobFilter,
    style: Style,
    file_name: &str,
) -> Result<Response, crate::store::StoreError> {
    // The first page is read before the status line goes out, so that a
    // store that cannot answer gets an error response, not a cut stream.
    let first = store.jobs_page(&filter, None, ROWS_PER_CHUNK).await?;
    let export = Export {
        accounts: store.accounts().await?,
        store: store.clone(),
        filter,
        style,
        after: None,
        first: Some(first),
        heading: true,
        done: false,
    };
    let stream = futures_util::stream::unfold(export, next_chunk);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_disarmed_and_others_kept() {
        for bad in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(safe_cell(bad), format!("'{bad}"));
        }
        for fine in ["Scan 2024", "a=b", "", "x-y"] {
            assert_eq!(safe_cell(fine), fine);
        }
    }

    #[test]
    fn cells_are_quoted_as_csv_wants() {
        let out = encode(&[vec!["a,b".into(), "say \"hi\"".into(), "=cmd".into()]]);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "\"a,b\",\"say \"\"hi\"\"\",'=cmd\r\n"
        );
    }
}
