-- The service registry (seed 000) and its health history.
-- Times are integer milliseconds since the Unix epoch, UTC: portable to
-- PostgreSQL (BIGINT) and cheap to range-scan for uptime figures.

CREATE TABLE services (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT    NOT NULL UNIQUE,
    description         TEXT,
    base_url            TEXT,
    port                INTEGER CHECK (port BETWEEN 1 AND 65535),
    health_endpoint     TEXT,
    status              TEXT    NOT NULL CHECK (status IN ('raw', 'discovered', 'configured')),
    systemd_state       TEXT,
    reported_state      TEXT    CHECK (reported_state IN ('active', 'inactive', 'failed')),
    check_interval_secs INTEGER,
    check_timeout_ms    INTEGER,
    health_status       TEXT    NOT NULL DEFAULT 'unknown'
                                CHECK (health_status IN ('healthy', 'unhealthy', 'unknown')),
    last_health_check   INTEGER,
    last_response_code  INTEGER,
    last_latency_ms     INTEGER,
    last_error          TEXT,
    last_scanned_at     INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

CREATE INDEX services_status ON services (status);

CREATE TABLE health_checks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id    INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    checked_at    INTEGER NOT NULL,
    is_healthy    INTEGER NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('healthy', 'unhealthy', 'unknown')),
    url           TEXT,
    response_code INTEGER,
    latency_ms    INTEGER,
    error         TEXT
);

CREATE INDEX health_checks_service_time ON health_checks (service_id, checked_at);
