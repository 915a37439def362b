-- Large messages over Graph for delegated accounts: the administrator's
-- opt-in to also request Mail.ReadWrite (drafts and upload sessions), and
-- the scope the provider granted at the last authorization (whether it
-- holds Mail.ReadWrite decides the account's message size limit).
ALTER TABLE accounts ADD COLUMN graph_large_messages BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE accounts ADD COLUMN granted_scope TEXT;
