-- A paused service is neither checked nor judged: its status is UNKNOWN
-- ("paused") and it sends no notice until it is resumed.
ALTER TABLE services ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
