-- Agents and check scripts (issue 6): servers with their agent credentials,
-- checks as services of a server, and every result a check reported.

CREATE TABLE servers (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL UNIQUE,
    -- JSON array of strings.
    labels           TEXT    NOT NULL DEFAULT '[]',
    agent_id         TEXT    NOT NULL UNIQUE,
    -- SHA-256 of the one-time claim token; NULL once it was used.
    claim_hash       TEXT    UNIQUE,
    claim_expires_at INTEGER,
    -- SHA-256 of the agent's key; NULL before the claim and after revocation.
    key_hash         TEXT    UNIQUE,
    hostname         TEXT,
    agent_version    TEXT,
    claimed_at       INTEGER,
    revoked_at       INTEGER,
    last_seen_at     INTEGER,
    -- How often the agent was told to send a heartbeat; offline after three missed.
    heartbeat_secs   INTEGER NOT NULL DEFAULT 10,
    -- The host's last systemd scan, JSON, as the agent sent it.
    scan             TEXT,
    scanned_at       INTEGER,
    created_at       INTEGER NOT NULL
);

ALTER TABLE services ADD COLUMN server_id INTEGER REFERENCES servers (id) ON DELETE CASCADE;
ALTER TABLE services ADD COLUMN check_name TEXT;
ALTER TABLE services ADD COLUMN check_schedule TEXT;
-- The check's last result: OK, UPDATE, WARNING, FAILURE, UNKNOWN or ERROR.
ALTER TABLE services ADD COLUMN check_status TEXT;
ALTER TABLE services ADD COLUMN check_message TEXT;
ALTER TABLE services ADD COLUMN check_at INTEGER;

CREATE UNIQUE INDEX services_server_check ON services (server_id, check_name)
    WHERE server_id IS NOT NULL;

-- Every result line, once: (service, time, ordinal) identifies it, so an
-- agent replaying its log after a reconnect adds nothing twice.
CREATE TABLE check_results (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id  INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    ordinal     INTEGER NOT NULL,
    status      TEXT    NOT NULL
                CHECK (status IN ('OK', 'UPDATE', 'WARNING', 'FAILURE', 'UNKNOWN', 'ERROR')),
    message     TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (service_id, at, ordinal)
);
