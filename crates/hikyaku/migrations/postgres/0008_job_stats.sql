-- Delivery outcomes per hour for the Portal's chart (SQLite 0008). Counted
-- by a trigger as jobs leave `sending`, so that no code path can forget it,
-- and kept apart from the jobs so that the chart costs a few hundred rows to
-- read and outlives the purge of old jobs (history.keep_days).
CREATE TABLE job_stats (
    hour  BIGINT NOT NULL,                 -- unix seconds / 3600 (UTC)
    state TEXT NOT NULL,                   -- sent | deferred | failed
    n     BIGINT NOT NULL,
    PRIMARY KEY (hour, state)
);

-- A wait that is no attempt (for authorization, for the rate limit) gives an
-- attempt back (attempts - 1): it is not a deferral.
CREATE FUNCTION job_stats_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_stats (hour, state, n) VALUES (NEW.updated_at / 3600, NEW.state, 1)
    ON CONFLICT (hour, state) DO UPDATE SET n = job_stats.n + 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER job_stats_count AFTER UPDATE OF state ON jobs
FOR EACH ROW
WHEN (OLD.state = 'sending'
      AND NEW.state IN ('sent', 'deferred', 'failed')
      AND (NEW.state <> 'deferred' OR NEW.attempts = OLD.attempts))
EXECUTE FUNCTION job_stats_count();

-- Jobs an older version finished count at the time of their last change.
INSERT INTO job_stats (hour, state, n)
SELECT updated_at / 3600, state, COUNT(*) FROM jobs
WHERE state IN ('sent', 'deferred', 'failed')
GROUP BY updated_at / 3600, state;
