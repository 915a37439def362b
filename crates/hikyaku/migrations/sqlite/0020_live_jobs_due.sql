-- jobs_due (0001) held an entry for every job, finished or not, so each
-- delivery moved its job's entry from 'sending' to 'sent' in an index as
-- long as the history, whose 'sent' end lies pages away from the live
-- jobs in a long history: more pages written at every commit. What reads
-- it (the claims, the rescue of expired leases, the next due time) asks for
-- jobs waiting or being sent only, so it now holds those alone, as on
-- PostgreSQL. The condition is written as equalities joined by OR: SQLite
-- uses a partial index for a query with `state = 'queued'`, which implies
-- one of them, but not for an IN list.
DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs(state, next_attempt_at)
    WHERE state = 'queued' OR state = 'deferred' OR state = 'sending';
