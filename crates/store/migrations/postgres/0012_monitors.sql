-- Monitors beyond an HTTP GET: the probe's settings (HTTP method, headers,
-- body, accepted codes; TLS trust; a DNS question) and the conditions on
-- its result, both JSON; a shorter interval while a check fails; what the
-- last check said of the server's certificate, and the warning of a check
-- that passed with a condition marked WARNING failing.
ALTER TABLE services ADD COLUMN probe TEXT;
ALTER TABLE services ADD COLUMN conditions TEXT;
ALTER TABLE services ADD COLUMN retry_interval_secs BIGINT;
-- Milliseconds since the epoch, like the other times.
ALTER TABLE services ADD COLUMN cert_expires_at BIGINT;
ALTER TABLE services ADD COLUMN last_warning TEXT;
ALTER TABLE health_checks ADD COLUMN warning TEXT;
