//! Failure notices re-enter the queue as jobs of their own: delivery writes
//! the report ([`crate::delivery::dsn`]), and the notice is queued here like
//! any accepted message (null envelope sender, submitter `hikyaku`), to go
//! out through the account that refused the original.

use super::{Job, JobStore, NewJob};

/// The submitter name of jobs hikyaku creates itself.
pub const SUBMITTER: &str = "hikyaku";
/// The `source` of a failure-notice job.
pub const SOURCE: &str = "dsn";

/// Whether `job` is a failure notice made by hikyaku.
pub fn is_notice(job: &Job) -> bool {
    job.submitter == SUBMITTER && job.mail_from.is_empty()
}

/// What a notice job carries besides its message.
pub struct Addressing<'a> {
    /// The account it goes out through (that of the failed job, when known).
    pub account_id: Option<i64>,
    pub to: &'a str,
    /// The From address written in the notice.
    pub from: &'a str,
    pub subject: String,
}

/// The job that carries a notice (`message`: the report, CRLF line endings).
pub fn new_job(message: Vec<u8>, a: Addressing<'_>) -> NewJob {
    NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: a.account_id,
        submitter: SUBMITTER.to_owned(),
        source: SOURCE.to_owned(),
        // The null sender: no notice is ever sent about a notice.
        mail_from: String::new(),
        rcpt_to: vec![a.to.to_owned()],
        header_from: Some(a.from.to_owned()),
        subject: Some(a.subject),
        body: message.into(),
    }
}

/// Queues a notice (due at once).
pub async fn enqueue<S: JobStore>(store: &S, notice: &NewJob, now: i64) -> Result<(), S::Error> {
    store.enqueue(notice, now).await
}
