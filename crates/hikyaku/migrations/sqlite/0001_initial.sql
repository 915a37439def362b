-- hikyaku's schema. Times are unix seconds (UTC). Secrets (client secrets,
-- tokens, pending authorizations) are sealed blobs: see src/secrets.rs.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    source       TEXT NOT NULL
);

CREATE TABLE setup_tokens (
    token_hash TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log(at);

-- One configured sender. The seed's device has one Microsoft and one Google
-- setting; everything is keyed by account id so that more can follow.
CREATE TABLE accounts (
    id                    INTEGER PRIMARY KEY,
    provider              TEXT NOT NULL,           -- microsoft | google
    name                  TEXT NOT NULL UNIQUE,
    enabled               INTEGER NOT NULL DEFAULT 0,
    verify_cert           INTEGER NOT NULL DEFAULT 1,
    verify_cn             INTEGER NOT NULL DEFAULT 0,
    endpoint              TEXT,                    -- Microsoft: https://login.microsoftonline.com/<tenant>/oauth2/v2.0
    client_id             TEXT,
    client_secret         BLOB,                    -- sealed
    smtp_host             TEXT,
    smtp_port             INTEGER,
    smtp_security         TEXT,                    -- starttls | implicit
    sender                TEXT,                    -- envelope sender; default: the authorized mailbox
    is_default            INTEGER NOT NULL DEFAULT 0,
    connection_status     TEXT NOT NULL DEFAULT 'not_checked',
    connection_reason     TEXT,
    connection_warning    TEXT,
    connection_checked_at INTEGER,
    clock_skew_secs       INTEGER,
    token_status          TEXT NOT NULL DEFAULT 'not_registered',
    token_reason          TEXT,
    token_warning         TEXT,
    mailbox               TEXT,
    identity_verified     INTEGER,
    refresh_token         BLOB,                    -- sealed
    access_token          BLOB,                    -- sealed
    access_expires_at     INTEGER,
    last_refreshed_at     INTEGER,
    authorized_at         INTEGER,
    authorization         BLOB,                    -- sealed JSON: pending device code or PKCE state
    updated_at            INTEGER NOT NULL
);

-- Who may submit over SMTP, and through which account.
CREATE TABLE submitters (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    account_id    INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE allowlist (
    id         INTEGER PRIMARY KEY,
    cidr       TEXT NOT NULL UNIQUE,
    account_id INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL
);

-- The durable queue: a job is one submitted message and its delivery attempts.
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,              -- UUIDv7, sortable by creation
    account_id      INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
    submitter       TEXT NOT NULL,
    source          TEXT NOT NULL,
    mail_from       TEXT NOT NULL,
    rcpt_to         TEXT NOT NULL,                 -- JSON array
    header_from     TEXT,
    subject         TEXT,
    size            INTEGER NOT NULL,
    state           TEXT NOT NULL,                 -- queued | sending | deferred | sent | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_reply      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs(state, next_attempt_at);
CREATE INDEX jobs_created ON jobs(created_at);

CREATE TABLE messages (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    body   BLOB NOT NULL
);

CREATE TABLE ca_certificates (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    subject     TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    not_before  INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    der         BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Small settings the Remote UI edits (e.g. the display time zone).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO accounts (provider, name, verify_cert, verify_cn, endpoint, smtp_host, smtp_port, smtp_security, updated_at)
VALUES ('microsoft', 'microsoft', 1, 0, 'https://login.microsoftonline.com/common/oauth2/v2.0', 'smtp.office365.com', 587, 'starttls', 0);
INSERT INTO accounts (provider, name, verify_cert, verify_cn, smtp_host, smtp_port, smtp_security, updated_at)
VALUES ('google', 'google', 1, 0, 'smtp.gmail.com', 587, 'starttls', 0);
