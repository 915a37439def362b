-- The Send Job History with a long history (a million finished jobs): each
-- of its views walks an index newest first and stops after a page, instead
-- of scanning the table. The id breaks ties within a second (and is the
-- keyset cursor's second half); (created_at, id) also serves what
-- jobs_created served (the purge by age).
DROP INDEX IF EXISTS jobs_created;
CREATE INDEX jobs_history ON jobs(created_at, id);
CREATE INDEX jobs_state_history ON jobs(state, created_at, id);
CREATE INDEX jobs_account_history ON jobs(account_id, created_at, id);
