-- Large messages are stored in pieces as they arrive, so neither the intake
-- nor delivery holds a whole message in memory. A piece is written before
-- its job exists (an upload, keyed by the id the job will have); the job's
-- `messages` row attaches it, with `pieces` set and an empty `body`.
CREATE TABLE message_pieces (
    upload_id  TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (upload_id, seq)
);

-- 0: the whole body is in `body` (small messages, and every older row).
ALTER TABLE messages ADD COLUMN pieces INTEGER NOT NULL DEFAULT 0;

-- A body that goes (sent, job deleted or purged: also through the cascade
-- from `jobs`) takes its pieces with it.
CREATE TRIGGER messages_pieces_gone AFTER DELETE ON messages
WHEN OLD.pieces > 0
BEGIN
    DELETE FROM message_pieces WHERE upload_id = OLD.job_id;
END;
