-- Whether a CA certificate also anchors the Google account's connections.
-- Only an Administrator's CAs do: a NetworkAdmin may add trust anchors for
-- the network, but must not decide whom Google's credentials are sent to.
-- Certificates stored before this column existed are not trusted for
-- Google until an Administrator adds them again.
ALTER TABLE ca_certificates ADD COLUMN for_google INTEGER NOT NULL DEFAULT 0;
