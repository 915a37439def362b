-- API tokens belong to a user, may expire and may be revoked (SQLite 0007).
-- A token acts with at most its user's current role; deleting the user
-- revokes it (revoked_at is set before the user row goes, and user_id
-- becomes NULL). A revoked or expired row stays so that a request with it
-- is told why it is refused.
ALTER TABLE api_tokens ADD COLUMN user_id BIGINT REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked_at BIGINT;
UPDATE api_tokens
   SET user_id = (SELECT id FROM users WHERE role = 'administrator' ORDER BY id LIMIT 1);
CREATE INDEX api_tokens_user ON api_tokens(user_id);
