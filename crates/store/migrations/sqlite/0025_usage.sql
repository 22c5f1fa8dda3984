-- Resource usage history: raw samples (width 0) kept for a short window,
-- 1-minute buckets (width 60, in seconds) for a day and 15-minute buckets
-- (width 900) for 90 days. One row per subject and bucket, the
-- figures as integers in small units so SQLite stores them in few bytes:
-- CPU in hundredths of a percent (of one core for a unit, of all cores for
-- a host), memory, swap and disk in bytes, rates in bytes per second, load
-- and disk use in hundredths, temperature in tenths of a degree Celsius.
-- `start` is in seconds since the Unix epoch.
CREATE TABLE unit_usage (
    service_id  INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    width       INTEGER NOT NULL,
    start       INTEGER NOT NULL,
    samples     INTEGER NOT NULL,
    cpu_min     INTEGER,
    cpu_avg     INTEGER,
    cpu_max     INTEGER,
    memory_min  INTEGER,
    memory_avg  INTEGER,
    memory_max  INTEGER,
    tasks_max   INTEGER,
    io_read     INTEGER,
    io_write    INTEGER,
    PRIMARY KEY (service_id, width, start)
) WITHOUT ROWID;
CREATE INDEX unit_usage_width_start ON unit_usage (width, start);

CREATE TABLE host_usage (
    host          TEXT NOT NULL,
    width         INTEGER NOT NULL,
    start         INTEGER NOT NULL,
    samples       INTEGER NOT NULL,
    cpu_min       INTEGER NOT NULL,
    cpu_avg       INTEGER NOT NULL,
    cpu_max       INTEGER NOT NULL,
    memory_min    INTEGER NOT NULL,
    memory_avg    INTEGER NOT NULL,
    memory_max    INTEGER NOT NULL,
    memory_total  INTEGER NOT NULL,
    swap_max      INTEGER NOT NULL,
    swap_total    INTEGER NOT NULL,
    load_max      INTEGER NOT NULL,
    disk_max      INTEGER NOT NULL,
    disk_used     INTEGER NOT NULL,
    disk_size     INTEGER NOT NULL,
    net_rx        INTEGER NOT NULL,
    net_tx        INTEGER NOT NULL,
    disk_read     INTEGER NOT NULL,
    disk_write    INTEGER NOT NULL,
    temperature_max INTEGER,
    PRIMARY KEY (host, width, start)
) WITHOUT ROWID;
CREATE INDEX host_usage_width_start ON host_usage (width, start);
