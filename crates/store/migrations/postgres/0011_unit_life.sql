-- How a unit's life goes, as systemd reports it and the live follower keeps
-- it: automatic restarts (a crash loop), how the last run ended, since when
-- it is up; and a service's start period, when failed checks do not count.
ALTER TABLE services ADD COLUMN restarts BIGINT;
ALTER TABLE services ADD COLUMN unit_result TEXT;
ALTER TABLE services ADD COLUMN exit_status BIGINT;
-- Milliseconds since the epoch, like the other times.
ALTER TABLE services ADD COLUMN active_since BIGINT;
ALTER TABLE services ADD COLUMN start_period_secs BIGINT;
