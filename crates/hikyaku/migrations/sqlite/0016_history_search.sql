-- The Send Job History's search (q=) is a substring match over the sender,
-- the recipients, the subject and From. No ordinary index serves a
-- substring, so with a million jobs a term that few jobs match read every
-- job (seconds). A trigram index finds the jobs that contain every
-- three-character piece of the term; the history's query then checks those
-- few with the same LIKE as before, so the answers do not change.
--
-- External content: the index keeps no copy of the text, only the trigrams
-- and the job's rowid (VACUUM and VACUUM INTO keep the rowids of a table
-- with indexes, so backups stay in step). detail = 'none': which jobs hold
-- a trigram, not where; the query asks for jobs holding all the term's
-- trigrams and the LIKE decides. A smaller index and less written at each
-- intake commit than with positions.
CREATE VIRTUAL TABLE jobs_search USING fts5(
    mail_from, rcpt_to, subject, header_from,
    content = 'jobs', tokenize = 'trigram', detail = 'none'
);
INSERT INTO jobs_search(jobs_search) VALUES ('rebuild');

-- Kept in step with jobs by triggers, so that every path that writes jobs
-- (intake, the CLI, the copy between engines) is covered without knowing.
CREATE TRIGGER jobs_search_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO jobs_search(rowid, mail_from, rcpt_to, subject, header_from)
    VALUES (new.rowid, new.mail_from, new.rcpt_to, new.subject, new.header_from);
END;
CREATE TRIGGER jobs_search_delete AFTER DELETE ON jobs BEGIN
    INSERT INTO jobs_search(jobs_search, rowid, mail_from, rcpt_to, subject, header_from)
    VALUES ('delete', old.rowid, old.mail_from, old.rcpt_to, old.subject, old.header_from);
END;
CREATE TRIGGER jobs_search_update AFTER UPDATE OF mail_from, rcpt_to, subject, header_from ON jobs BEGIN
    INSERT INTO jobs_search(jobs_search, rowid, mail_from, rcpt_to, subject, header_from)
    VALUES ('delete', old.rowid, old.mail_from, old.rcpt_to, old.subject, old.header_from);
    INSERT INTO jobs_search(rowid, mail_from, rcpt_to, subject, header_from)
    VALUES (new.rowid, new.mail_from, new.rcpt_to, new.subject, new.header_from);
END;
