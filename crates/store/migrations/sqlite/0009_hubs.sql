-- Several hubs on one database (issue 7): which hubs are alive, which hub runs
-- which service's health checks, and which hub runs each once-per-database
-- job (the overdue sweep, retention). A lease is the holder's until it
-- expires; a holder renews it well before, so a hub that dies loses its
-- leases one lease period after its last renewal and another hub takes them.
-- Coordination state only: not part of an export.

CREATE TABLE hubs (
    id         TEXT    PRIMARY KEY,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
);

CREATE TABLE check_leases (
    service_id INTEGER PRIMARY KEY REFERENCES services (id) ON DELETE CASCADE,
    hub        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE INDEX check_leases_hub ON check_leases (hub);

CREATE TABLE job_leases (
    name       TEXT    PRIMARY KEY,
    hub        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
