-- The Send Job History's search (q=) is a substring match (ILIKE '%term%')
-- over the sender, the recipients, the subject and From. No ordinary index
-- serves a substring, so with a million jobs a term that few jobs match
-- read every job. pg_trgm's GIN indexes answer ILIKE from trigrams.
--
-- pg_trgm is a trusted extension (PostgreSQL 13 and later): the owner of
-- the database may create it. Where the role may not, say what to run.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'the history''s search needs the PostgreSQL extension pg_trgm, which this role may not create: run CREATE EXTENSION pg_trgm; as a superuser in database "%", then start hikyaku again', current_database();
    WHEN undefined_file THEN
        RAISE EXCEPTION 'the history''s search needs the PostgreSQL extension pg_trgm, which this server does not have: install PostgreSQL''s contrib package (e.g. postgresql-contrib), run CREATE EXTENSION pg_trgm; as a superuser in database "%", then start hikyaku again', current_database();
END
$$;

-- One index per column, so that the query's four ILIKEs stay as they were
-- (a match never spans two columns) and the planner combines them.
CREATE INDEX jobs_search_mail_from ON jobs USING gin (mail_from gin_trgm_ops);
CREATE INDEX jobs_search_rcpt_to ON jobs USING gin (rcpt_to gin_trgm_ops);
CREATE INDEX jobs_search_subject ON jobs USING gin (subject gin_trgm_ops);
CREATE INDEX jobs_search_header_from ON jobs USING gin (header_from gin_trgm_ops);
