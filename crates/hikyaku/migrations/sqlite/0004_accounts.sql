-- Accounts as first-class objects: any number per provider, each with its
-- cloud, credential kind, send-as list and limits. The two accounts an older
-- version made keep their ids, settings and tokens (delegated, public cloud).

-- worldwide | gcc_high | dod | china (Microsoft); worldwide (Google).
ALTER TABLE accounts ADD COLUMN cloud TEXT NOT NULL DEFAULT 'worldwide';
-- delegated | microsoft_secret | microsoft_certificate | google_service_account
ALTER TABLE accounts ADD COLUMN credential_kind TEXT NOT NULL DEFAULT 'delegated';
-- Overrides of the cloud preset; NULL takes the preset's value.
ALTER TABLE accounts ADD COLUMN smtp_scope TEXT;
ALTER TABLE accounts ADD COLUMN graph_host TEXT;
-- JSON array of exact addresses and "@domain" entries this account may send as.
ALTER TABLE accounts ADD COLUMN send_as TEXT NOT NULL DEFAULT '[]';
-- Per-mailbox limits (protocols: Exchange 30/min, 3 connections); NULL = the
-- configured default.
ALTER TABLE accounts ADD COLUMN rate_per_minute INTEGER;
ALTER TABLE accounts ADD COLUMN max_connections INTEGER;
-- App-only credentials. The certificate is public (DER); its private key and
-- a service account's JSON key are sealed like the client secret.
ALTER TABLE accounts ADD COLUMN certificate BLOB;
ALTER TABLE accounts ADD COLUMN private_key BLOB;
ALTER TABLE accounts ADD COLUMN service_account_key BLOB;
-- The service account's client_email (shown, not secret).
ALTER TABLE accounts ADD COLUMN service_account_email TEXT;
-- When the app-only credential stops working: a secret's expiry as entered
-- with it, or the certificate's notAfter.
ALTER TABLE accounts ADD COLUMN credential_expires_at INTEGER;
