-- Public status pages: which services (ids) and tags they show, and a notice
-- written by an administrator.
CREATE TABLE status_pages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    slug        TEXT    NOT NULL UNIQUE,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    services    TEXT    NOT NULL DEFAULT '[]',
    tags        TEXT    NOT NULL DEFAULT '[]',
    notice      TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Browsers that receive Web Push notifications: one row per device of an
-- account. The endpoint is the push service's capability URL.
CREATE TABLE push_subscriptions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER REFERENCES users (id) ON DELETE CASCADE,
    endpoint     TEXT    NOT NULL UNIQUE,
    p256dh       TEXT    NOT NULL,
    auth         TEXT    NOT NULL,
    device       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_sent_at INTEGER
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);

-- A channel may now be of kind webpush. SQLite cannot change a CHECK in
-- place: the table is built anew, with the delivery log (which refers to
-- it) set aside meanwhile so that dropping the old table deletes nothing,
-- and both tables' id counters kept (services name channels by id: a
-- deleted channel's id must not come back).
CREATE TABLE sequence_kept AS
    SELECT name, seq FROM sqlite_sequence WHERE name IN ('channels', 'deliveries');
CREATE TABLE deliveries_kept AS SELECT * FROM deliveries;
DROP TABLE deliveries;
CREATE TABLE channels_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL CHECK (kind IN ('webhook', 'ntfy', 'gotify', 'discord', 'slack', 'email', 'mqtt', 'webpush')),
    config       TEXT    NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    last_error   TEXT,
    last_sent_at INTEGER,
    created_at   INTEGER NOT NULL
);
INSERT INTO channels_new (id, name, kind, config, enabled, last_error, last_sent_at, created_at)
    SELECT id, name, kind, config, enabled, last_error, last_sent_at, created_at FROM channels;
DROP TABLE channels;
ALTER TABLE channels_new RENAME TO channels;
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
INSERT INTO deliveries (id, channel_id, service_id, kind, status, attempts, error, at)
    SELECT id, channel_id, service_id, kind, status, attempts, error, at FROM deliveries_kept;
DROP TABLE deliveries_kept;
CREATE INDEX deliveries_time ON deliveries (at);
DELETE FROM sqlite_sequence WHERE name IN ('channels', 'deliveries');
INSERT INTO sqlite_sequence (name, seq) SELECT name, seq FROM sequence_kept;
DROP TABLE sequence_kept;
