-- API tokens belong to a user, may expire and may be revoked.
-- A token acts with at most its user's current role; deleting the user
-- revokes it (revoked_at is set before the user row goes, and user_id
-- becomes NULL). A revoked or expired row stays so that a request with it
-- is told why it is refused.
ALTER TABLE api_tokens ADD COLUMN user_id INTEGER REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN revoked_at INTEGER;
-- Tokens of earlier versions were made on the command line, which acts as
-- the Administrator: they belong to the first Administrator, if there is one.
UPDATE api_tokens
   SET user_id = (SELECT id FROM users WHERE role = 'administrator' ORDER BY id LIMIT 1);
CREATE INDEX api_tokens_user ON api_tokens(user_id);
