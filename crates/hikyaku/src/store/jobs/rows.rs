//! Reading a job row.

use sqlx::Row;

use crate::queue::{Job, JobState};
use crate::store::{Conflict, Result, StoreError};

pub(in crate::store) const JOB_COLUMNS: &str = "id, account_id, submitter, source, mail_from, rcpt_to, header_from, subject, size, state, attempts, next_attempt_at, last_reply, via_account_id, created_at, updated_at";

/// The row's state; a name the queue does not know is a damaged row.
pub(super) fn state(row: &sqlx::sqlite::SqliteRow) -> Result<JobState> {
    let name: String = row.try_get("state")?;
    name.parse().map_err(|e: crate::queue::UnknownState| {
        StoreError::Conflict(Conflict::Corrupt(e.to_string()))
    })
}

pub(in crate::store) fn job_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Job> {
    let rcpt: String = row.try_get("rcpt_to")?;
    let reply: Option<String> = row.try_get("last_reply")?;
    Ok(Job {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        submitter: row.try_get("submitter")?,
        source: row.try_get("source")?,
        mail_from: row.try_get("mail_from")?,
        rcpt_to: serde_json::from_str(&rcpt).unwrap_or_default(),
        header_from: row.try_get("header_from")?,
        subject: row.try_get("subject")?,
        size: row.try_get("size")?,
        state: state(row)?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_reply: None,
        last_reply_reason: None,
        via_account_id: row.try_get("via_account_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    }
    .with_stored_reply(reply.as_deref()))
}
