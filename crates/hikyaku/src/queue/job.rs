//! A job: one submitted message and its delivery attempts.

use super::JobState;
use crate::i18n::Reason;

/// A message handed over by intake (or a failure notice made by delivery).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub account_id: Option<i64>,
    pub submitter: String,
    pub source: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub header_from: Option<String>,
    pub subject: Option<String>,
    /// Shared, not copied, between the store's write and delivery.
    pub body: bytes::Bytes,
}

impl NewJob {
    /// The job as delivery sees it right after
    /// [`JobStore::enqueue_claimed`](super::JobStore::enqueue_claimed).
    pub fn claimed(&self, now: i64) -> Job {
        Job {
            id: self.id.clone(),
            account_id: self.account_id,
            submitter: self.submitter.clone(),
            source: self.source.clone(),
            mail_from: self.mail_from.clone(),
            rcpt_to: self.rcpt_to.clone(),
            header_from: self.header_from.clone(),
            subject: self.subject.clone(),
            size: i64::try_from(self.body.len()).unwrap_or(i64::MAX),
            state: JobState::Sending,
            attempts: 1,
            next_attempt_at: now,
            last_reply: None,
            last_reply_reason: None,
            via_account_id: None,
            created_at: now,
            updated_at: now,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Job {
    pub id: String,
    pub account_id: Option<i64>,
    pub submitter: String,
    pub source: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub header_from: Option<String>,
    pub subject: Option<String>,
    pub size: i64,
    pub state: JobState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    /// The English text of [`Job::last_reply_reason`] (logs, CLI, JSON API).
    pub last_reply: Option<String>,
    /// The last reply: ours as a reason, the upstream's quoted in one.
    /// The JSON API shows its code as `last_reply_code`.
    #[serde(rename = "last_reply_code", serialize_with = "code_of")]
    pub last_reply_reason: Option<Reason>,
    /// The account the job was last tried or delivered through.
    pub via_account_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Job {
    /// Sets the last reply from what the store holds (see
    /// [`Reason::from_stored`]).
    pub fn with_stored_reply(mut self, stored: Option<&str>) -> Self {
        let reason = stored.map(Reason::from_stored);
        self.last_reply = reason.as_ref().map(Reason::to_string);
        self.last_reply_reason = reason;
        self
    }
}

fn code_of<S: serde::Serializer>(r: &Option<Reason>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_some(&r.code),
        None => s.serialize_none(),
    }
}

/// Filters of the Send Job History.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub account_id: Option<i64>,
    pub search: Option<String>,
    /// Created at or after (unix seconds).
    pub since: Option<i64>,
    /// Created before (unix seconds).
    pub until: Option<i64>,
}

/// A claimed job and its body: `None` if the body is missing or larger than
/// [`CLAIM_BODY_MAX`] (delivery then reads it when it sends).
pub type Claimed = (Job, Option<bytes::Bytes>);

/// The largest body a claim returns with its job. A claim takes up to one
/// job per free delivery worker in one statement, and every body it returns
/// is held (twice, while the rows are decoded) until the last of them is
/// sent: eight 10 MB messages claimed together were over 160 MB at once.
/// Larger bodies are read one by one, by the worker that sends them.
pub const CLAIM_BODY_MAX: i64 = 1024 * 1024;

/// Bytes of one piece of a large message. A message longer than this is
/// stored piece by piece while it arrives and read piece by piece while it
/// is sent (SMTP), so neither holds it whole; a shorter one is stored whole
/// with its job in one write, as before.
pub const PIECE: usize = 256 * 1024;

/// How a job's message is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredBody {
    /// Whole, in one row: here it is.
    Whole(Vec<u8>),
    /// In this many pieces, read one at a time with
    /// [`JobStore::body_piece`](super::JobStore::body_piece).
    Pieces(u32),
}
