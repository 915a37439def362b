-- The messages-per-minute window held one row per start, so each
-- reservation of starts counted and deleted as many rows as starts in the
-- last minute: at a high limit, hundreds of thousands of index entries
-- read per reservation. A row now stands for the `n` starts of one
-- reservation dated alike (two rows per reservation: the start used at
-- once, and the others dated at the end of their use).
ALTER TABLE account_starts ADD COLUMN n INTEGER NOT NULL DEFAULT 1;
