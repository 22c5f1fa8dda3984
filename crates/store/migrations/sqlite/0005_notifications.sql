-- Notifications (issue 4): channels, per-service rules, and the delivery log.

CREATE TABLE channels (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL CHECK (kind IN ('webhook', 'ntfy', 'gotify', 'discord', 'slack', 'email', 'mqtt')),
    -- JSON: url, topic, token... Needed to deliver, so kept as given; never
    -- returned in full by the API and never logged.
    config       TEXT    NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    last_error   TEXT,
    last_sent_at INTEGER,
    created_at   INTEGER NOT NULL
);

CREATE TABLE deliveries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    service_id INTEGER REFERENCES services (id) ON DELETE SET NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('alert', 'recovery', 'reminder', 'test')),
    status     TEXT    NOT NULL CHECK (status IN ('sent', 'failed')),
    attempts   INTEGER NOT NULL,
    error      TEXT,
    at         INTEGER NOT NULL
);

CREATE INDEX deliveries_time ON deliveries (at);

ALTER TABLE services ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE services ADD COLUMN maintenance_until INTEGER;
ALTER TABLE services ADD COLUMN notify_after INTEGER;
