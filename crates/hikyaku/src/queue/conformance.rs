//! The behaviour every engine of [`JobStore`] must show, tested through the
//! interface alone. Each engine's tests run [`all`] with fresh stores of
//! their own (SQLite: `store::jobs`; PostgreSQL: `store::postgres`), and a
//! store shared by several instances runs [`instances`] too.

#![allow(clippy::unwrap_used)] // tests may unwrap

use super::{JobState, JobStore, NewJob, StoreFailure as _};
use crate::i18n::Reason;

/// An upstream's reply, as a job's last reply.
fn up(reply: impl std::fmt::Display) -> Reason {
    Reason::new("upstream").arg("reply", reply)
}

/// A small job whose body names it.
pub(crate) fn job(id: &str) -> NewJob {
    NewJob {
        id: id.to_owned(),
        account_id: None,
        submitter: "mfp".into(),
        source: "127.0.0.1".into(),
        mail_from: "scanner@printer.local".into(),
        rcpt_to: vec!["boss@example.com".into()],
        header_from: None,
        subject: None,
        body: format!("Subject: {id}\r\n\r\nbody\r\n").into_bytes().into(),
    }
}

/// Runs every case, each on a fresh store from `fresh` (which also returns
/// whatever must live as long as the store, e.g. its directory).
pub(crate) async fn all<S, G>(fresh: impl AsyncFn() -> (S, G))
where
    S: JobStore + Clone + 'static,
{
    {
        let (store, _keep) = fresh().await;
        retrying_a_failed_job_starts_its_count_again(&store).await;
    }
    {
        let (store, _keep) = fresh().await;
        expired_leases_and_interrupted_deliveries_are_requeued(&store).await;
    }
    {
        let (store, _keep) = fresh().await;
        a_claim_takes_the_most_overdue_of_queued_and_deferred_alike(&store).await;
    }
    {
        let (store, _keep) = fresh().await;
        finishing_many_jobs_at_once_records_each_and_keeps_failed_bodies(&store).await;
    }
    {
        let (store, _keep) = fresh().await;
        concurrent_writes_commit_together_and_a_bad_one_fails_alone(&store).await;
    }
    {
        let (store, _keep) = fresh().await;
        enqueue_stores_and_a_claim_leases(&store).await;
    }
    {
        let (store, _keep) = fresh().await;
        a_handed_over_job_is_stored_claimed(&store).await;
    }
    {
        let (store, _keep) = fresh().await;
        deferring_without_an_attempt_and_deleting(&store).await;
    }
    {
        let (store, _keep) = fresh().await;
        counts_and_the_last_error(&store).await;
    }
    {
        let (store, _keep) = fresh().await;
        a_last_reply_comes_back_as_the_reason_stored(&store).await;
    }
    {
        let (store, _keep) = fresh().await;
        a_message_in_pieces_is_stored_read_and_dropped_piece_by_piece(&store).await;
    }
    {
        let (store, _keep) = fresh().await;
        uploads_no_job_took_are_discarded_and_purged(&store).await;
    }
}

/// The pieces of a message named `id`: `n` of `len` bytes, each byte its
/// piece's number.
fn pieces(n: u8, len: usize) -> Vec<bytes::Bytes> {
    (0..n).map(|i| vec![b'a' + i; len].into()).collect()
}

async fn a_message_in_pieces_is_stored_read_and_dropped_piece_by_piece<
    S: JobStore + Clone + 'static,
>(
    store: &S,
) {
    use super::StoredBody;
    // Two jobs in pieces (one to be sent, one to fail) and a small one.
    for id in ["p-sent", "p-failed", "p-deleted"] {
        for (seq, p) in (0..).zip(pieces(3, 1000)) {
            store.store_piece(id, seq, p, 100).await.unwrap();
        }
        let mut last = job(id);
        last.body = b"the end\r\n".to_vec().into();
        store.enqueue_pieces(last, 3, 3007, 100).await.unwrap();
    }
    let whole: Vec<u8> = [pieces(3, 1000).concat(), b"the end\r\n".to_vec()].concat();
    assert_eq!(store.job("p-sent").await.unwrap().size, 3007);
    assert_eq!(
        store.body_layout("p-sent").await.unwrap(),
        StoredBody::Pieces(4)
    );
    for seq in 0..3 {
        assert_eq!(
            store.body_piece("p-sent", seq).await.unwrap(),
            vec![b'a' + u8::try_from(seq).unwrap(); 1000]
        );
    }
    assert_eq!(store.body_piece("p-sent", 3).await.unwrap(), b"the end\r\n");
    assert!(
        store
            .body_piece("p-sent", 4)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // Read whole for the HTTP transports and notices.
    assert_eq!(store.job_body("p-sent").await.unwrap(), whole);
    // A small message stays whole.
    store.enqueue(&job("small"), 100).await.unwrap();
    assert_eq!(
        store.body_layout("small").await.unwrap(),
        StoredBody::Whole(job("small").body.to_vec())
    );
    // A claim leaves a message in pieces to the worker, however small.
    let claimed = store
        .claim_due_jobs_with_bodies(200, 1_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    for (j, body) in &claimed {
        assert_eq!(body.is_some(), j.id == "small", "{}", j.id);
    }
    // An upload a job took is not discarded.
    store.discard_upload("p-sent").await.unwrap();
    assert_eq!(store.job_body("p-sent").await.unwrap(), whole);
    store
        .mark_sent("p-sent", None, &up("250 ok"), 300)
        .await
        .unwrap();
    store
        .mark_failed("p-failed", None, &up("550 no"), 300)
        .await
        .unwrap();
    // Sent: its pieces are dropped with its body. Failed: kept for a retry.
    assert!(
        store
            .body_piece("p-sent", 0)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(store.job_body("p-sent").await.unwrap_err().is_not_found());
    assert_eq!(store.job_body("p-failed").await.unwrap(), whole);
    store.retry_job("p-failed", 400).await.unwrap();
    // Deleted: its pieces go too.
    store
        .mark_sent("small", None, &up("250 ok"), 300)
        .await
        .unwrap();
    store
        .defer_job("p-deleted", &up("451 later"), 500, 300, true)
        .await
        .unwrap();
    store.delete_job("p-deleted").await.unwrap();
    assert!(
        store
            .body_piece("p-deleted", 0)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // Nothing of the two is left that a purge could still find.
    assert_eq!(store.purge_uploads(i64::MAX).await.unwrap(), 0);
    assert_eq!(store.job_body("p-failed").await.unwrap(), whole);
}

async fn uploads_no_job_took_are_discarded_and_purged<S: JobStore + Clone + 'static>(store: &S) {
    for (seq, p) in (0..).zip(pieces(2, 10)) {
        store.store_piece("left", seq, p, 100).await.unwrap();
    }
    store.discard_upload("left").await.unwrap();
    assert!(
        store
            .body_piece("left", 0)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // A crash leaves pieces behind: those whose newest piece is older than
    // the cut-off go, an upload still being written stays.
    store
        .store_piece("crashed", 0, pieces(1, 10)[0].clone(), 100)
        .await
        .unwrap();
    store
        .store_piece("arriving", 0, pieces(1, 10)[0].clone(), 100)
        .await
        .unwrap();
    store
        .store_piece("arriving", 1, pieces(1, 10)[0].clone(), 200)
        .await
        .unwrap();
    assert_eq!(store.purge_uploads(150).await.unwrap(), 1);
    assert!(
        store
            .body_piece("crashed", 0)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(store.body_piece("arriving", 0).await.is_ok());
    // The same piece twice is refused, not a second copy.
    assert!(
        store
            .store_piece("arriving", 1, pieces(1, 10)[0].clone(), 200)
            .await
            .is_err()
    );
}

async fn a_last_reply_comes_back_as_the_reason_stored<S: JobStore + Clone + 'static>(store: &S) {
    store.enqueue(&job("r"), 100).await.unwrap();
    store.claim_due_job(100, 700).await.unwrap().unwrap();
    let reason = Reason::new("job-waiting")
        .arg("provider", "Microsoft")
        .arg("name", "microsoft")
        .nested(
            "detail",
            Reason::new("job-wait-token-error").nested("reason", Reason::new("declined")),
        );
    store
        .defer_job("r", &reason, 160, 100, false)
        .await
        .unwrap();
    let r = store.job("r").await.unwrap();
    assert_eq!(r.last_reply_reason.as_ref(), Some(&reason));
    assert_eq!(r.last_reply, Some(reason.to_string()));
}

async fn retrying_a_failed_job_starts_its_count_again<S: JobStore + Clone + 'static>(store: &S) {
    store.enqueue(&job("f"), 100).await.unwrap();
    store.enqueue(&job("d"), 100).await.unwrap();
    for _ in 0..3 {
        let f = store.claim_due_job(100, 200).await.unwrap().unwrap();
        store
            .defer_job(&f.id, &up("451 later"), 100, 100, true)
            .await
            .unwrap();
    }
    let f = store.job("f").await.unwrap();
    let d = store.job("d").await.unwrap();
    assert!(f.attempts + d.attempts >= 3);
    let claimed = store.claim_due_job(100, 200).await.unwrap().unwrap();
    store
        .mark_failed(&claimed.id, None, &up("550 no"), 150)
        .await
        .unwrap();
    let deferred = if claimed.id == "f" { "d" } else { "f" };
    let before = store.job(deferred).await.unwrap().attempts;
    store.retry_job(&claimed.id, 300).await.unwrap();
    store.retry_job(deferred, 300).await.unwrap();
    // A failed job is a new start; a deferred one keeps its count.
    assert_eq!(store.job(&claimed.id).await.unwrap().attempts, 0);
    assert_eq!(store.job(deferred).await.unwrap().attempts, before);
    // A made-up id is not found.
    assert!(matches!(
        store.retry_job("nope", 300).await,
        Err(e) if e.is_not_found()
    ));
}

async fn expired_leases_and_interrupted_deliveries_are_requeued<S: JobStore + Clone + 'static>(
    store: &S,
) {
    store.enqueue(&job("short"), 100).await.unwrap();
    store.enqueue(&job("long"), 101).await.unwrap();
    // "short" is claimed with a lease to 200, "long" with one to 10_000.
    assert_eq!(
        store.claim_due_job(150, 200).await.unwrap().unwrap().id,
        "short"
    );
    assert_eq!(
        store.claim_due_job(150, 10_000).await.unwrap().unwrap().id,
        "long"
    );
    assert!(store.claim_due_job(150, 10_000).await.unwrap().is_none());

    // A job still being delivered here stays, lease or not.
    assert_eq!(
        store
            .requeue_expired_leases(300, &["short".to_owned()])
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.job("short").await.unwrap().state, "sending");
    // At 300 only the expired lease comes back, due at once.
    assert_eq!(store.requeue_expired_leases(300, &[]).await.unwrap(), 1);
    let short = store.job("short").await.unwrap();
    assert_eq!(
        (short.state.as_str(), short.next_attempt_at),
        ("deferred", 300)
    );
    assert!(short.last_reply.unwrap().contains("lease expired"));
    assert_eq!(short.last_reply_reason, Some(super::lease::expired()));
    assert_eq!(store.job("long").await.unwrap().state, "sending");

    // After a restart every `sending` job comes back, lease or not.
    assert_eq!(store.requeue_interrupted(400).await.unwrap(), 1);
    let long = store.job("long").await.unwrap();
    assert_eq!(
        (long.state.as_str(), long.next_attempt_at),
        ("deferred", 400)
    );
    assert!(long.last_reply.unwrap().contains("restart"));
    // Both are claimable again, the most overdue first.
    let again = store.claim_due_jobs(500, 1_000, 5).await.unwrap();
    let ids: Vec<&str> = again.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, vec!["short", "long"]);
    assert!(again.iter().all(|j| j.attempts == 2));
}

async fn a_claim_takes_the_most_overdue_of_queued_and_deferred_alike<
    S: JobStore + Clone + 'static,
>(
    store: &S,
) {
    for (id, at) in [("q300", 300), ("q100", 100), ("d", 150), ("late", 900)] {
        store.enqueue(&job(id), at).await.unwrap();
    }
    // "d" is deferred to 200: after q100, before q300.
    let d = store.claim_due_jobs(150, 1_000, 1).await.unwrap();
    assert_eq!(d[0].id, "q100");
    store
        .defer_job("q100", &up("451 later"), 200, 150, true)
        .await
        .unwrap();
    let claimed = store.claim_due_jobs(500, 1_000, 2).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, vec!["d", "q100"]);
    let rest = store.claim_due_jobs(500, 1_000, 5).await.unwrap();
    let ids: Vec<&str> = rest.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, vec!["q300"], "not yet due: late");
}

async fn finishing_many_jobs_at_once_records_each_and_keeps_failed_bodies<
    S: JobStore + Clone + 'static,
>(
    store: &S,
) {
    for i in 0..10 {
        store
            .enqueue(&job(&format!("f{i}")), 100 + i)
            .await
            .unwrap();
    }
    let claimed = store
        .claim_due_jobs_with_bodies(200, 1_000, 10)
        .await
        .unwrap();
    // The most overdue first, each with its own body.
    let ids: Vec<String> = claimed.iter().map(|(j, _)| j.id.clone()).collect();
    assert_eq!(ids, (0..10).map(|i| format!("f{i}")).collect::<Vec<_>>());
    for (j, body) in &claimed {
        assert_eq!(
            body.as_deref(),
            Some(format!("Subject: {}\r\n\r\nbody\r\n", j.id).as_bytes())
        );
        assert_eq!((j.state.as_str(), j.attempts), ("sending", 1));
    }
    // Nothing is left to claim.
    assert!(
        store
            .claim_due_jobs(200, 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // f9 was deleted meanwhile (an Administrator); finishing must not revive it.
    store
        .defer_job("f9", &up("x"), 300, 200, false)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("f{i}");
            if i == 3 {
                store
                    .mark_failed(&id, None, &up("550 5.1.1 unknown"), 250)
                    .await
            } else {
                store
                    .mark_sent(&id, None, &up(format!("250 2.0.0 OK id{i}")), 250)
                    .await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for i in 0..9 {
        let j = store.job(&format!("f{i}")).await.unwrap();
        if i == 3 {
            assert_eq!(
                (j.state.as_str(), j.last_reply.as_deref()),
                ("failed", Some("550 5.1.1 unknown"))
            );
            assert!(
                store.job_body("f3").await.is_ok(),
                "a failed job keeps its body"
            );
        } else {
            assert_eq!(j.state, "sent");
            assert_eq!(j.last_reply, Some(format!("250 2.0.0 OK id{i}")));
            assert!(
                store.job_body(&j.id).await.is_err(),
                "a sent job's body is dropped"
            );
        }
        assert_eq!(j.updated_at, 250);
    }
    assert_eq!(store.job("f9").await.unwrap().state, "deferred");
    assert!(store.job_body("f9").await.is_ok());
}

async fn concurrent_writes_commit_together_and_a_bad_one_fails_alone<
    S: JobStore + Clone + 'static,
>(
    store: &S,
) {
    store.enqueue(&job("dup"), 1).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        // Job 17 reuses an existing id and must be the only one refused.
        let j = if i == 17 {
            job("dup")
        } else {
            job(&format!("j{i}"))
        };
        tasks.push(tokio::spawn(async move { store.enqueue(&j, 2).await }));
    }
    let mut refused = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await.unwrap().is_err() {
            refused.push(i);
        }
    }
    assert_eq!(refused, vec![17]);
    for i in (0..40).filter(|i| *i != 17) {
        let stored = store.job(&format!("j{i}")).await.unwrap();
        assert_eq!(stored.state, "queued");
        assert_eq!(
            store.job_body(&format!("j{i}")).await.unwrap(),
            format!("Subject: j{i}\r\n\r\nbody\r\n").into_bytes()
        );
    }
    // The original "dup" is untouched.
    assert_eq!(store.job("dup").await.unwrap().created_at, 1);
}

async fn enqueue_stores_and_a_claim_leases<S: JobStore + Clone + 'static>(store: &S) {
    assert_eq!(store.next_due_at().await.unwrap(), None);
    let mut new = job("a");
    new.rcpt_to = vec!["x@example.com".into(), "y@example.com".into()];
    new.subject = Some("Scan".into());
    store.enqueue(&new, 100).await.unwrap();
    let stored = store.job("a").await.unwrap();
    assert_eq!(
        (stored.state, stored.attempts, stored.next_attempt_at),
        (JobState::Queued, 0, 100)
    );
    assert_eq!(stored.rcpt_to, new.rcpt_to);
    assert_eq!(stored.subject.as_deref(), Some("Scan"));
    assert_eq!(stored.size, i64::try_from(new.body.len()).unwrap());
    assert_eq!(store.job_body("a").await.unwrap(), new.body.to_vec());
    assert_eq!(store.next_due_at().await.unwrap(), Some(100));
    // Not due before its time.
    assert!(store.claim_due_job(99, 700).await.unwrap().is_none());
    let claimed = store.claim_due_jobs_with_bodies(100, 700, 5).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let (j, body) = &claimed[0];
    assert_eq!((j.state, j.attempts), (JobState::Sending, 1));
    assert_eq!(body.as_deref(), Some(&new.body[..]));
    // Claimed once only; a sending job is not due.
    assert!(store.claim_due_job(1_000, 2_000).await.unwrap().is_none());
    assert_eq!(store.next_due_at().await.unwrap(), None);
    // Its lease still runs: nothing to requeue.
    assert_eq!(store.requeue_expired_leases(699, &[]).await.unwrap(), 0);
    assert!(store.job("missing").await.unwrap_err().is_not_found());
    assert!(store.job_body("missing").await.unwrap_err().is_not_found());
}

async fn a_handed_over_job_is_stored_claimed<S: JobStore + Clone + 'static>(store: &S) {
    let new = job("h");
    let in_memory = new.claimed(100);
    store.enqueue_claimed(new, 100, 700).await.unwrap();
    let stored = store.job("h").await.unwrap();
    assert_eq!(
        (stored.state, stored.attempts),
        (in_memory.state, in_memory.attempts)
    );
    assert!(store.claim_due_job(100, 700).await.unwrap().is_none());
    // The process died before delivery took it: the start puts it back.
    assert_eq!(store.requeue_interrupted(200).await.unwrap(), 1);
    let back = store.claim_due_job(200, 800).await.unwrap().unwrap();
    assert_eq!((back.id.as_str(), back.attempts), ("h", 2));
    store
        .mark_sent("h", None, &up("250 OK"), 210)
        .await
        .unwrap();
    let sent = store.job("h").await.unwrap();
    assert_eq!(
        (sent.state, sent.last_reply.as_deref()),
        (JobState::Sent, Some("250 OK"))
    );
    assert!(store.job_body("h").await.unwrap_err().is_not_found());
    // A sent job stays sent: a late requeue or finish does not move it.
    assert_eq!(store.requeue_interrupted(300).await.unwrap(), 0);
    store
        .mark_failed("h", None, &up("550 late"), 310)
        .await
        .unwrap();
    assert_eq!(store.job("h").await.unwrap().state, JobState::Sent);
    assert!(store.retry_job("h", 320).await.is_err());
}

async fn deferring_without_an_attempt_and_deleting<S: JobStore + Clone + 'static>(store: &S) {
    store.enqueue(&job("w"), 100).await.unwrap();
    let w = store.claim_due_job(100, 700).await.unwrap().unwrap();
    assert_eq!(w.attempts, 1);
    // Being sent: not deletable.
    assert!(store.delete_job("w").await.is_err());
    // A wait (no attempt made) gives the count back.
    store
        .defer_job("w", &up("waiting"), 160, 100, false)
        .await
        .unwrap();
    let w = store.job("w").await.unwrap();
    assert_eq!(
        (
            w.state,
            w.attempts,
            w.next_attempt_at,
            w.last_reply.as_deref()
        ),
        (JobState::Deferred, 0, 160, Some("waiting"))
    );
    assert_eq!(store.next_due_at().await.unwrap(), Some(160));
    // A deferral of a job no longer sending changes nothing.
    store
        .defer_job("w", &up("late"), 999, 120, true)
        .await
        .unwrap();
    assert_eq!(store.job("w").await.unwrap().next_attempt_at, 160);
    // Retry now makes it due at once, keeping its count.
    store.retry_job("w", 130).await.unwrap();
    let w = store.job("w").await.unwrap();
    assert_eq!((w.state, w.next_attempt_at), (JobState::Queued, 130));
    store.delete_job("w").await.unwrap();
    assert!(store.job("w").await.unwrap_err().is_not_found());
    assert!(store.job_body("w").await.unwrap_err().is_not_found());
    assert!(store.delete_job("w").await.is_err());
}

async fn counts_and_the_last_error<S: JobStore + Clone + 'static>(store: &S) {
    assert!(store.job_counts().await.unwrap().is_empty());
    assert_eq!(store.last_job_error().await.unwrap(), None);
    for (id, at) in [
        ("q", 500),
        ("s", 101),
        ("f", 102),
        ("d", 103),
        ("later", 900),
    ] {
        store.enqueue(&job(id), at).await.unwrap();
    }
    // Claims go by due time: s, f, d (q and later are not due yet).
    let ids: Vec<String> = store
        .claim_due_jobs(200, 700, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, ["s", "f", "d"]);
    store
        .mark_sent("s", None, &up("250 OK"), 210)
        .await
        .unwrap();
    store
        .mark_failed("f", None, &up("550 no"), 220)
        .await
        .unwrap();
    store
        .defer_job("d", &up("451 later"), 400, 230, true)
        .await
        .unwrap();
    let mut counts = store.job_counts().await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        vec![
            (JobState::Queued, 2),
            (JobState::Deferred, 1),
            (JobState::Sent, 1),
            (JobState::Failed, 1),
        ]
    );
    assert_eq!(
        store.last_job_error().await.unwrap(),
        Some((230, up("451 later")))
    );
    let filter = super::JobFilter {
        state: Some(JobState::Queued),
        ..Default::default()
    };
    let queued: Vec<String> = store
        .jobs(&filter, 10, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    // Newest first.
    assert_eq!(queued, ["later", "q"]);
}

/// The cases of several instances sharing one queue, each on a fresh pair
/// of stores from `pair`: two instances (two lease owners) over one database.
pub(crate) async fn instances<S, G>(pair: impl AsyncFn() -> (S, S, G))
where
    S: JobStore + Clone + 'static,
{
    {
        let (a, b, _keep) = pair().await;
        instances_claiming_at_once_never_claim_the_same_job(&a, &b).await;
    }
    {
        let (a, b, _keep) = pair().await;
        a_lease_taken_over_fences_the_old_owners_late_writes(&a, &b).await;
    }
}

async fn instances_claiming_at_once_never_claim_the_same_job<S: JobStore + Clone + 'static>(
    a: &S,
    b: &S,
) {
    const JOBS: usize = 300;
    for i in 0..JOBS {
        let store = if i % 2 == 0 { a } else { b };
        store.enqueue(&job(&format!("m{i}")), 100).await.unwrap();
    }
    // Eight workers on each instance claim small batches until none is left.
    let mut tasks = Vec::new();
    for w in 0..16 {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim_due_jobs(200, 10_000, 3).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                for j in claimed {
                    assert_eq!(j.attempts, 1, "{} claimed twice", j.id);
                    store
                        .mark_sent(&j.id, None, &up("250 OK"), 210)
                        .await
                        .unwrap();
                    mine.push(j.id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let claimed = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), claimed, "a job was claimed by two workers");
    assert_eq!(claimed, JOBS, "every job claimed once");
    assert_eq!(a.job_counts().await.unwrap(), vec![(JobState::Sent, 300)]);
}

async fn a_lease_taken_over_fences_the_old_owners_late_writes<S: JobStore + Clone + 'static>(
    a: &S,
    b: &S,
) {
    a.enqueue(&job("x"), 100).await.unwrap();
    a.enqueue(&job("y"), 100).await.unwrap();
    let first = a.claim_due_jobs(100, 200, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    // The other instance finds nothing to claim while the leases run.
    assert!(b.claim_due_jobs(150, 1_000, 5).await.unwrap().is_empty());
    assert_eq!(b.requeue_expired_leases(150, &[]).await.unwrap(), 0);
    // Instance A stalls past its leases; B puts both back and takes them.
    assert_eq!(b.requeue_expired_leases(300, &[]).await.unwrap(), 2);
    let taken = b.claim_due_jobs(300, 900, 5).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert!(taken.iter().all(|j| j.attempts == 2));
    // A restarting meanwhile puts back only its own jobs: none.
    assert_eq!(a.requeue_interrupted(310).await.unwrap(), 0);
    // A's late outcomes are refused by the fence and change nothing.
    a.mark_sent("x", None, &up("250 late from A"), 320)
        .await
        .unwrap();
    a.defer_job("y", &up("451 late from A"), 999, 320, true)
        .await
        .unwrap();
    for id in ["x", "y"] {
        let j = b.job(id).await.unwrap();
        assert_eq!(
            (j.state, j.attempts, j.updated_at),
            (JobState::Sending, 2, 300)
        );
        assert!(b.job_body(id).await.is_ok(), "{id} keeps its body");
    }
    // The new owner's results stand.
    b.mark_sent("x", None, &up("250 from B"), 330)
        .await
        .unwrap();
    b.mark_failed("y", None, &up("550 from B"), 330)
        .await
        .unwrap();
    let x = a.job("x").await.unwrap();
    assert_eq!(
        (x.state, x.last_reply.as_deref()),
        (JobState::Sent, Some("250 from B"))
    );
    let y = a.job("y").await.unwrap();
    assert_eq!(
        (y.state, y.last_reply.as_deref()),
        (JobState::Failed, Some("550 from B"))
    );
}
