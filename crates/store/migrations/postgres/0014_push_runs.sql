-- A push check's runs: when its last /start ping came (cleared by the ping
-- that ends the run), and how long the last run took (from /start, or as
-- the sender said with ?ping=), in milliseconds.
ALTER TABLE services ADD COLUMN push_started_at BIGINT;
ALTER TABLE services ADD COLUMN push_duration_ms BIGINT;
