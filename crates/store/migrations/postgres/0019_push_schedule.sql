-- A push check expected on a cron schedule in a time zone (instead of
-- every push_period_secs): "0 3 * * *" in "Europe/Berlin".
ALTER TABLE services ADD COLUMN push_schedule TEXT;
ALTER TABLE services ADD COLUMN push_tz TEXT;
