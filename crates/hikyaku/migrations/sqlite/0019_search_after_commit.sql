-- The history search's trigram index (0016) took each job's trigrams in
-- the intake's own commit: one small FTS5 segment per commit, merged again
-- and again as the index grew. With a million jobs that cost an intake
-- commit a third more than on an empty store. New jobs are now indexed
-- after their commit, a few hundred at a time, by the store's writer
-- (store/jobs/search_index.rs); the search reads the few not yet indexed
-- (those past `indexed_to`) by their text.
--
-- The index holds exactly the jobs whose rowid is at most `indexed_to`:
-- the triggers below keep those in step, and the writer moves the mark up
-- as it indexes the next ones.
CREATE TABLE search_mark (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    indexed_to INTEGER NOT NULL
);
INSERT INTO search_mark (one, indexed_to) SELECT 1, coalesce(max(rowid), 0) FROM jobs;

DROP TRIGGER jobs_search_insert;
DROP TRIGGER jobs_search_delete;
DROP TRIGGER jobs_search_update;

-- A new job past the mark waits for the writer. One at or below it took a
-- rowid freed by deleting the newest job, and is indexed at once.
CREATE TRIGGER jobs_search_insert AFTER INSERT ON jobs
WHEN new.rowid <= (SELECT indexed_to FROM search_mark) BEGIN
    INSERT INTO jobs_search(rowid, mail_from, rcpt_to, subject, header_from)
    VALUES (new.rowid, new.mail_from, new.rcpt_to, new.subject, new.header_from);
END;
-- FTS5 must be told the exact text it indexed, and only for a job it holds.
CREATE TRIGGER jobs_search_delete AFTER DELETE ON jobs
WHEN old.rowid <= (SELECT indexed_to FROM search_mark) BEGIN
    INSERT INTO jobs_search(jobs_search, rowid, mail_from, rcpt_to, subject, header_from)
    VALUES ('delete', old.rowid, old.mail_from, old.rcpt_to, old.subject, old.header_from);
END;
CREATE TRIGGER jobs_search_update AFTER UPDATE OF mail_from, rcpt_to, subject, header_from ON jobs
WHEN old.rowid <= (SELECT indexed_to FROM search_mark) BEGIN
    INSERT INTO jobs_search(jobs_search, rowid, mail_from, rcpt_to, subject, header_from)
    VALUES ('delete', old.rowid, old.mail_from, old.rcpt_to, old.subject, old.header_from);
    INSERT INTO jobs_search(rowid, mail_from, rcpt_to, subject, header_from)
    VALUES (new.rowid, new.mail_from, new.rcpt_to, new.subject, new.header_from);
END;
