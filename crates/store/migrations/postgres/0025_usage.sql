-- Resource usage history: raw samples (width 0) kept for a short window,
-- 1-minute buckets (width 60, in seconds) for a day and 15-minute buckets
-- (width 900) for 90 days. One row per subject and bucket, the
-- figures as integers in small units (SQLite stores them in few bytes):
-- CPU in hundredths of a percent (of one core for a unit, of all cores for
-- a host), memory, swap and disk in bytes, rates in bytes per second, load
-- and disk use in hundredths, temperature in tenths of a degree Celsius.
-- `start` is in seconds since the Unix epoch.
CREATE TABLE unit_usage (
    service_id  BIGINT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    width       BIGINT NOT NULL,
    start       BIGINT NOT NULL,
    samples     BIGINT NOT NULL,
    cpu_min     BIGINT,
    cpu_avg     BIGINT,
    cpu_max     BIGINT,
    memory_min  BIGINT,
    memory_avg  BIGINT,
    memory_max  BIGINT,
    tasks_max   BIGINT,
    io_read     BIGINT,
    io_write    BIGINT,
    PRIMARY KEY (service_id, width, start)
);
CREATE INDEX unit_usage_width_start ON unit_usage (width, start);

CREATE TABLE host_usage (
    host          TEXT NOT NULL,
    width         BIGINT NOT NULL,
    start         BIGINT NOT NULL,
    samples       BIGINT NOT NULL,
    cpu_min       BIGINT NOT NULL,
    cpu_avg       BIGINT NOT NULL,
    cpu_max       BIGINT NOT NULL,
    memory_min    BIGINT NOT NULL,
    memory_avg    BIGINT NOT NULL,
    memory_max    BIGINT NOT NULL,
    memory_total  BIGINT NOT NULL,
    swap_max      BIGINT NOT NULL,
    swap_total    BIGINT NOT NULL,
    load_max      BIGINT NOT NULL,
    disk_max      BIGINT NOT NULL,
    disk_used     BIGINT NOT NULL,
    disk_size     BIGINT NOT NULL,
    net_rx        BIGINT NOT NULL,
    net_tx        BIGINT NOT NULL,
    disk_read     BIGINT NOT NULL,
    disk_write    BIGINT NOT NULL,
    temperature_max BIGINT,
    PRIMARY KEY (host, width, start)
);
CREATE INDEX host_usage_width_start ON host_usage (width, start);
