-- A maintenance window that comes back: JSON {"schedule", "tz", "minutes"}
-- (from each firing of the cron schedule, for that many minutes); NULL for
-- none.
ALTER TABLE services ADD COLUMN maintenance_window TEXT;
-- A maintenance window planned ahead begins here and ends at
-- maintenance_until; NULL: it began when it was set.
ALTER TABLE services ADD COLUMN maintenance_from BIGINT;
