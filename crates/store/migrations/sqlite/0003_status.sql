-- Live status (issue 4): one status per service, its changes, and the event
-- log that lets a live client resume where it left off.

ALTER TABLE services ADD COLUMN state TEXT NOT NULL DEFAULT 'UNKNOWN'
    CHECK (state IN ('OK', 'UPDATE', 'WARNING', 'FAILURE', 'UNKNOWN'));
ALTER TABLE services ADD COLUMN state_reason TEXT;
ALTER TABLE services ADD COLUMN state_since INTEGER;

CREATE TABLE status_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    at         INTEGER NOT NULL,
    old_state  TEXT    NOT NULL,
    new_state  TEXT    NOT NULL,
    reason     TEXT    NOT NULL
);

CREATE INDEX status_events_service_time ON status_events (service_id, at);

CREATE TABLE event_log (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    at   INTEGER NOT NULL,
    kind TEXT    NOT NULL,
    data TEXT    NOT NULL
);
