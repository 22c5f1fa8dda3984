-- Hourly rollups of health check results, kept like status changes after
-- the raw results are pruned: the response-time chart's longer ranges.
-- `latency_*` figures (ms) are over the passing checks that measured one.
CREATE TABLE check_hours (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id    INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    hour          INTEGER NOT NULL,
    checks        INTEGER NOT NULL,
    passed        INTEGER NOT NULL,
    latencies     INTEGER NOT NULL,
    latency_sum   INTEGER NOT NULL,
    latency_min   INTEGER,
    latency_max   INTEGER,
    UNIQUE (service_id, hour)
);
CREATE INDEX check_hours_hour ON check_hours (hour);
