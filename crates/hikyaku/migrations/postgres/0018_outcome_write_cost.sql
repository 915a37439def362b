-- The history search's text in a table of its own. Every change of a job's
-- state (an indexed column) writes a new version of its row with new
-- entries in every index of `jobs`: with the four trigram indexes of 0016
-- on `jobs`, each outcome also re-indexed the job's sender, recipients,
-- subject and From. Here they are written once, as the job is inserted, in
-- the same statement (so in the same transaction), and never again.
CREATE TABLE job_search (
    job_id      TEXT PRIMARY KEY,
    mail_from   TEXT NOT NULL,
    rcpt_to     TEXT NOT NULL,
    subject     TEXT,
    header_from TEXT
);

INSERT INTO job_search (job_id, mail_from, rcpt_to, subject, header_from)
SELECT id, mail_from, rcpt_to, subject, header_from FROM jobs;

DROP INDEX IF EXISTS jobs_search_mail_from;
DROP INDEX IF EXISTS jobs_search_rcpt_to;
DROP INDEX IF EXISTS jobs_search_subject;
DROP INDEX IF EXISTS jobs_search_header_from;

-- One index per column, as in 0016: the search's four ILIKEs stay as they
-- were and the planner combines them.
CREATE INDEX job_search_mail_from ON job_search USING gin (mail_from gin_trgm_ops);
CREATE INDEX job_search_rcpt_to ON job_search USING gin (rcpt_to gin_trgm_ops);
CREATE INDEX job_search_subject ON job_search USING gin (subject gin_trgm_ops);
CREATE INDEX job_search_header_from ON job_search USING gin (header_from gin_trgm_ops);

-- Kept by triggers, so that every way a job is written or removed (the
-- queue, the purge, a deletion, `hikyaku store copy`) keeps the search in
-- step. Per statement: a purge or a copy of many jobs is one statement here.
CREATE FUNCTION job_search_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_search (job_id, mail_from, rcpt_to, subject, header_from)
    SELECT id, mail_from, rcpt_to, subject, header_from FROM new_jobs;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_search_insert AFTER INSERT ON jobs
REFERENCING NEW TABLE AS new_jobs
FOR EACH STATEMENT EXECUTE FUNCTION job_search_insert();

CREATE FUNCTION job_search_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_search s USING old_jobs o WHERE s.job_id = o.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_search_delete AFTER DELETE ON jobs
REFERENCING OLD TABLE AS old_jobs
FOR EACH STATEMENT EXECUTE FUNCTION job_search_delete();

-- No code changes these columns today; should any, the search follows.
CREATE FUNCTION job_search_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE job_search
       SET job_id = NEW.id, mail_from = NEW.mail_from, rcpt_to = NEW.rcpt_to,
           subject = NEW.subject, header_from = NEW.header_from
     WHERE job_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_search_update AFTER UPDATE OF id, mail_from, rcpt_to, subject, header_from ON jobs
FOR EACH ROW EXECUTE FUNCTION job_search_update();

-- jobs_due (state, next_attempt_at) held an entry for every version of
-- every job, finished or not; what read it is served by jobs_waiting,
-- jobs_leased and jobs_state_history (0014), and by this index of the
-- waiting jobs alone for the oldest one's age (which jobs_due did not
-- serve: the planner walked the whole history by date instead). An
-- outcome's new row version is not a waiting job, so it adds no entry.
DROP INDEX IF EXISTS jobs_due;
CREATE INDEX jobs_waiting_since ON jobs(created_at) WHERE state IN ('queued', 'deferred', 'sending');

-- The Portal's chart counts (0008) in parts. Every outcome added 1 to the
-- same row (this hour's "sent"), whose lock its transaction holds until
-- its commit is on disk: outcomes of concurrent deliveries waited for one
-- another's commits, one at a time. Each database session now counts in a
-- part of its own; `job_stats` is their sum, read and written as before.
CREATE TABLE job_stats_parts (
    hour  BIGINT   NOT NULL,               -- unix seconds / 3600 (UTC)
    state TEXT     NOT NULL,               -- sent | deferred | failed
    part  SMALLINT NOT NULL,
    n     BIGINT   NOT NULL,
    PRIMARY KEY (hour, state, part)
);
INSERT INTO job_stats_parts (hour, state, part, n) SELECT hour, state, 0, n FROM job_stats;
DROP TABLE job_stats;
CREATE VIEW job_stats AS
    SELECT hour, state, SUM(n)::BIGINT AS n FROM job_stats_parts GROUP BY hour, state;

CREATE OR REPLACE FUNCTION job_stats_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_stats_parts (hour, state, part, n)
    VALUES (NEW.updated_at / 3600, NEW.state, pg_backend_pid() % 64, 1)
    ON CONFLICT (hour, state, part) DO UPDATE SET n = job_stats_parts.n + 1;
    RETURN NULL;
END;
$$;

-- Writes to `job_stats` (the purge of old hours, `hikyaku store copy`)
-- go to the parts.
CREATE FUNCTION job_stats_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM job_stats_parts WHERE hour = OLD.hour AND state = OLD.state;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO job_stats_parts (hour, state, part, n) VALUES (NEW.hour, NEW.state, 0, NEW.n)
        ON CONFLICT (hour, state, part) DO UPDATE SET n = job_stats_parts.n + EXCLUDED.n;
        RETURN NEW;
    END IF;
    RETURN OLD;
END;
$$;

CREATE TRIGGER job_stats_write INSTEAD OF INSERT OR UPDATE OR DELETE ON job_stats
FOR EACH ROW EXECUTE FUNCTION job_stats_write();
