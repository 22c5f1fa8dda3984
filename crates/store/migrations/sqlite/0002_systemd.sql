-- systemd discovery (issue 3): the unit behind a service, what the last scan
-- saw of it, the timers, and the last scan's summary.

ALTER TABLE services ADD COLUMN unit TEXT;
ALTER TABLE services ADD COLUMN sub_state TEXT;
ALTER TABLE services ADD COLUMN unit_file_state TEXT;
ALTER TABLE services ADD COLUMN main_pid INTEGER;
-- JSON arrays: every PID of the unit's cgroup, every listening socket.
ALTER TABLE services ADD COLUMN pids TEXT;
ALTER TABLE services ADD COLUMN listens TEXT;

CREATE UNIQUE INDEX services_unit ON services (unit) WHERE unit IS NOT NULL;

CREATE TABLE timers (
    name              TEXT    PRIMARY KEY,
    description       TEXT    NOT NULL,
    active_state      TEXT    NOT NULL,
    schedule          TEXT    NOT NULL,   -- JSON array of strings
    last_trigger      INTEGER,
    next_elapse       INTEGER,
    unit              TEXT    NOT NULL,
    unit_active_state TEXT,
    last_result       TEXT,
    last_exit_status  INTEGER,
    last_exit         INTEGER,
    removed           INTEGER NOT NULL DEFAULT 0,
    last_scanned_at   INTEGER NOT NULL
);

CREATE TABLE hub_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
