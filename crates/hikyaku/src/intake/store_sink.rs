//! The intake's link to the rest of hikyaku: submitter logins (Argon2id), the
//! address allowlist, and the durable queue. `accept` returns only after the
//! store's commit, so the session's `250` means "on disk".

use std::net::IpAddr;
use std::sync::Arc;

use super::cidr::Cidr;
use super::{IntakeSink, SinkError, Submission, Submitter};
use crate::clock::SharedClock;
use crate::queue::{JobStore as _, NewJob};
use crate::store::{Store, StoreError};

/// The summary of a message's header the job history shows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderSummary {
    pub from: Option<String>,
    pub subject: Option<String>,
}

/// Reads From and Subject (decoded) from a message; never fails.
pub fn summarize(message: &[u8]) -> HeaderSummary {
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(message) else {
        return HeaderSummary::default();
    };
    let from = parsed
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(|s| shown(s, 320));
    let subject = parsed.subject().map(|s| shown(s, 500));
    HeaderSummary { from, subject }
}

/// Header text as the history keeps it: at most `max` characters, control
/// characters replaced. An encoded word can decode to any character, a NUL
/// included, which PostgreSQL cannot store in text and a list cannot show.
fn shown(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| match c {
            c if c.is_whitespace() && c.is_control() => ' ',
            c if c.is_control() => char::REPLACEMENT_CHARACTER,
            c => c,
        })
        .collect()
}

/// Builds the job for an accepted message.
pub fn new_job(
    submitter: &str,
    source: &str,
    account_id: Option<i64>,
    mail_from: &str,
    rcpt_to: Vec<String>,
    data: Vec<u8>,
) -> NewJob {
    let summary = summarize(&data);
    NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        account_id,
        submitter: submitter.to_string(),
        source: source.to_string(),
        mail_from: mail_from.to_string(),
        rcpt_to,
        header_from: summary.from,
        subject: summary.subject,
        body: data.into(),
    }
}

pub fn sink_error(e: StoreError) -> SinkError {
    match e {
        StoreError::Full => SinkError::StorageFull,
        other if other.is_temporary() => {
            SinkError::Temporary("the queue is busy, try again later".into())
        }
        other => {
            tracing::error!(error = %other, "cannot store an accepted message");
            SinkError::Temporary(
                "the queue cannot store the message right now, try again later".into(),
            )
        }
    }
}

/// [`IntakeSink`] over the store.
#[derive(Clone)]
pub struct StoreSink {
    pub store: Store,
    pub clock: SharedClock,
    /// Called after each enqueue into the queue, to wake delivery.
    pub on_enqueue: Arc<dyn Fn() + Send + Sync>,
    /// Delivery's short way for messages a free worker can take at once.
    pub handoff: Option<crate::delivery::Handoff>,
    /// Recent successful submitter logins.
    pub logins: Arc<crate::passwords::LoginCache>,
    /// Failed logins, per user name and per address, across connections.
    pub throttle: Arc<crate::throttle::Throttle>,
    /// `delivery.rewrite_from`: whether a From the account may not send as
    /// is rewritten at delivery (else such a message is refused here).
    pub rewrite_from: bool,
}

impl IntakeSink for StoreSink {
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<Option<Submitter>, SinkError> {
        // Per name *from this address* and per address: many devices often
        // share one submitter, and one of them with an old password (or a
        // stranger guessing) must not lock the others out.
        let keys = vec![
            format!("user:{} from {peer}", user.to_ascii_lowercase()),
            format!("addr:smtp:{peer}"),
        ];
        let now = self.clock.unix();
        if let Some(wait) = self.throttle.wait(&keys, now) {
            return Err(SinkError::Throttled(wait));
        }
        let found = self.store.submitter(user).await.map_err(sink_error)?;
        let ok = match &found {
            Some(f) => {
                self.logins
                    .verify(&f.name, password, &f.password_hash)
                    .await
            }
            None => false,
        };
        if !ok {
            self.throttle.fail(&keys, now);
            return Ok(None);
        }
        self.throttle.succeed(&keys);
        Ok(found.map(|f| Submitter {
            name: f.name,
            account_id: f.account_id,
        }))
    }

    fn arriving(&self) -> Option<crate::queue::arrivals::Arriving> {
        self.store
            .arrivals()
            .map(crate::queue::arrivals::Arrivals::open)
    }

    async fn allowlisted(&self, peer: IpAddr) -> Result<Option<Submitter>, SinkError> {
        let entries = self.store.allowlist().await.map_err(|e| {
            tracing::error!(error = %e, "cannot read the allowlist");
            sink_error(e)
        })?;
        Ok(entries
            .into_iter()
            .find(|e| Cidr::parse(&e.cidr).is_ok_and(|c| c.contains(peer)))
            .map(|e| Submitter {
                name: format!("allowlist:{}", e.cidr),
                account_id: e.account_id,
            }))
    }

    fn piece_size(&self) -> Option<usize> {
        Some(crate::queue::PIECE)
    }

    async fn store_piece(&self, upload: &str, seq: u32, piece: Vec<u8>) -> Result<(), SinkError> {
        self.store
            .store_piece(upload, seq, piece.into(), self.clock.unix())
            .await
            .map_err(sink_error)
    }

    async fn discard_upload(&self, upload: &str) {
        if let Err(e) = self.store.discard_upload(upload).await {
            // The next start removes what is left.
            tracing::warn!(upload, error = %e, "cannot remove the stored pieces of a message not taken");
        }
    }

    async fn accept(&self, s: Submission) -> Result<String, SinkError> {
        let mut job = new_job(
            &s.submitter.name,
            &s.peer.ip().to_string(),
            s.submitter.account_id,
            &s.envelope.mail_from,
            s.envelope.rcpt_to,
            s.data,
        );
        if let Some(upload) = &s.upload {
            // The job takes the stored pieces' name; the header is in the head.
            job.id.clone_from(&upload.id);
            let summary = summarize(&upload.head);
            job.header_from = summary.from;
            job.subject = summary.subject;
        }
        let size = s.upload.as_ref().map_or(job.body.len(), |u| u.size);
        // Routing, before 250: the job carries its account from here on.
        let accounts = self.store.accounts().await.map_err(sink_error)?;
        job.account_id = super::routing::route(
            &accounts,
            s.submitter.account_id,
            &job.mail_from,
            job.header_from.as_deref(),
            self.rewrite_from,
        )
        .map_err(|e| SinkError::Refused(e.to_string()))?;
        if let Some(reason) = super::routing::too_large(&accounts, job.account_id, size) {
            return Err(SinkError::TooLargeForAccount(reason));
        }
        let (id, submitter) = (job.id.clone(), job.submitter.clone());
        let now = self.clock.unix();
        if let Some(upload) = s.upload {
            // In pieces: delivery reads it from the store, piece by piece.
            let total = i64::try_from(size).unwrap_or(i64::MAX);
            self.store
                .enqueue_pieces(job, upload.pieces, total, now)
                .await
                .map_err(sink_error)?;
            tracing::debug!(job_id = %id, submitter = %submitter, size, pieces = upload.pieces + 1, "message stored");
            (self.on_enqueue)();
            return Ok(id);
        }
        // With a place at delivery, the job is stored already claimed and
        // handed over after the commit; otherwise delivery finds it queued.
        let hand_over = match self.handoff.as_ref().and_then(|h| h.reserve(size)) {
            Some(slot) => {
                let (claimed, body) = (job.claimed(now), job.body.clone());
                self.store
                    .enqueue_claimed(job, now, crate::queue::lease::until(now))
                    .await
                    .map_err(sink_error)?;
                Some((slot, claimed, body))
            }
            None => {
                self.store
                    .enqueue_owned(job, now)
                    .await
                    .map_err(sink_error)?;
                None
            }
        };
        // The session logs the acceptance with its peer; this is the store's side.
        tracing::debug!(job_id = %id, submitter = %submitter, size, "message stored");
        match hand_over {
            Some((slot, claimed, body)) => slot.hand(claimed, body),
            None => (self.on_enqueue)(),
        }
        Ok(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn the_summary_holds_no_control_characters() {
        // Encoded words may decode to anything, a NUL included.
        let message = b"From: =?utf-8?q?a=00b?= <dev@example.com>\r\n\
Subject: =?utf-8?q?Scan=00_=09page=01_1_=E2=9C=93?=\r\n\r\nbody\r\n";
        let summary = summarize(message);
        assert_eq!(summary.from.as_deref(), Some("dev@example.com"));
        assert_eq!(
            summary.subject.as_deref(),
            Some("Scan\u{fffd}  page\u{fffd} 1 \u{2713}")
        );
        let long = format!("Subject: {}\r\n\r\n", "x".repeat(600));
        assert_eq!(
            summarize(long.as_bytes()).subject.map(|s| s.len()),
            Some(500)
        );
    }

    #[tokio::test]
    async fn failed_logins_throttle_that_address_not_the_other_devices() {
        // The wall clock stands still: each Argon2 check may take seconds on
        // a loaded machine, longer than the throttle's first wait.
        struct Frozen(std::time::Instant);
        impl crate::clock::Clock for Frozen {
            fn now(&self) -> time::OffsetDateTime {
                time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000)
            }
            fn monotonic(&self) -> std::time::Instant {
                self.0
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let hash = crate::passwords::hash("right password".into())
            .await
            .unwrap();
        store.add_submitter("mfp", &hash, None, 0).await.unwrap();
        let sink = StoreSink {
            store,
            clock: Arc::new(Frozen(std::time::Instant::now())),
            on_enqueue: Arc::new(|| {}),
            handoff: None,
            logins: Arc::new(crate::passwords::LoginCache::new(
                std::time::Duration::from_secs(60),
            )),
            throttle: Arc::default(),
            rewrite_from: true,
        };
        let old: IpAddr = "192.0.2.10".parse().unwrap();
        let other: IpAddr = "192.0.2.11".parse().unwrap();
        for _ in 0..3 {
            assert!(matches!(
                sink.authenticate("mfp", "old password", old).await,
                Ok(None)
            ));
        }
        // The device with the old password now waits, even with the right one…
        assert!(matches!(
            sink.authenticate("mfp", "right password", old).await,
            Err(SinkError::Throttled(_))
        ));
        // …while another device sharing the submitter still gets in.
        let ok = sink
            .authenticate("mfp", "right password", other)
            .await
            .unwrap();
        assert_eq!(ok.map(|s| s.name).as_deref(), Some("mfp"));
    }
}
