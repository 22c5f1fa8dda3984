-- Services that report in rather than being polled (issue 4): heartbeats of
-- seed 003 and Healthchecks-style push URLs.

ALTER TABLE services ADD COLUMN heartbeat_ip TEXT;
ALTER TABLE services ADD COLUMN heartbeat_ttl_secs INTEGER;
ALTER TABLE services ADD COLUMN last_heartbeat INTEGER;
-- SHA-256 of the push token, hex; the token itself is shown once and never stored.
ALTER TABLE services ADD COLUMN push_token_hash TEXT;
ALTER TABLE services ADD COLUMN push_period_secs INTEGER;
ALTER TABLE services ADD COLUMN push_grace_secs INTEGER;
ALTER TABLE services ADD COLUMN last_push INTEGER;
ALTER TABLE services ADD COLUMN push_status TEXT;
ALTER TABLE services ADD COLUMN push_message TEXT;

CREATE UNIQUE INDEX services_push_token ON services (push_token_hash) WHERE push_token_hash IS NOT NULL;
