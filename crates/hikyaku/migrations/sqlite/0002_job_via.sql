-- The account a job was last tried or delivered through: a job bound to no
-- account goes out through the default one, which may change later.
ALTER TABLE jobs ADD COLUMN via_account_id INTEGER REFERENCES accounts(id) ON DELETE SET NULL;
