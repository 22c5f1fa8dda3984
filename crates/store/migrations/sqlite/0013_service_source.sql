-- Where a service's settings live: NULL when it was made through the API or
-- the dashboard, 'file' when a monitors file declares it (read-only there).
ALTER TABLE services ADD COLUMN source TEXT;
