-- An instance whose deliveries wait for one of an account's connection
-- slots while the cluster holds them all says so here, dated (database
-- clock, milliseconds) and renewed while it waits. An instance holding
-- some of those slots in idle upstream sessions gives them back at its
-- next look (every half second) instead of after its idle limit: a burst
-- that ended unevenly between the instances is then not delivered by one
-- of them with fewer slots while the other's sessions sit idle. A row past
-- its date means nothing and is replaced by the next want.
CREATE TABLE account_slot_wants (
    account_id  BIGINT NOT NULL,
    owner       TEXT NOT NULL,
    until_ms    BIGINT NOT NULL,
    PRIMARY KEY (account_id, owner)
);
