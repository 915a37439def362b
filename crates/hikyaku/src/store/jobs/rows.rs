//! Reading a job row.

use crate::queue::{Job, JobState};
use crate::store::sql::DbRow;
use crate::store::{Conflict, Result, StoreError};

pub(in crate::store) const JOB_COLUMNS: &str = "id, account_id, submitter, source, mail_from, rcpt_to, header_from, subject, size, state, attempts, next_attempt_at, last_reply, via_account_id, created_at, updated_at";

/// The row's state; a name the queue does not know is a damaged row.
pub(in crate::store) fn state(row: &impl DbRow) -> Result<JobState> {
    let name: String = row.col("state")?;
    name.parse().map_err(|e: crate::queue::UnknownState| {
        StoreError::Conflict(Conflict::Corrupt(e.to_string()))
    })
}

pub(in crate::store) fn job_from_row(row: &impl DbRow) -> Result<Job> {
    let rcpt: String = row.col("rcpt_to")?;
    let reply: Option<String> = row.col("last_reply")?;
    Ok(Job {
        id: row.col("id")?,
        account_id: row.col("account_id")?,
        submitter: row.col("submitter")?,
        source: row.col("source")?,
        mail_from: row.col("mail_from")?,
        rcpt_to: serde_json::from_str(&rcpt).unwrap_or_default(),
        header_from: row.col("header_from")?,
        subject: row.col("subject")?,
        size: row.col("size")?,
        state: state(row)?,
        attempts: row.col("attempts")?,
        next_attempt_at: row.col("next_attempt_at")?,
        last_reply: None,
        last_reply_reason: None,
        via_account_id: row.col("via_account_id")?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
    }
    .with_stored_reply(reply.as_deref()))
}
