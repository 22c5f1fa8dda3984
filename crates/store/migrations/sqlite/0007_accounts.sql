-- Users and security (issue 5): accounts, every bearer secret, the audit log.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    email         TEXT    UNIQUE COLLATE NOCASE,
    -- argon2id, PHC string format.
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at    INTEGER NOT NULL
);

-- Browser sessions, API access and refresh tokens, personal API tokens. Only
-- the SHA-256 of a token is kept: the token itself is shown once.
CREATE TABLE credentials (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL CHECK (kind IN ('session', 'access', 'refresh', 'api')),
    token_hash   TEXT    NOT NULL UNIQUE,
    -- Personal API tokens: the label their owner gave them.
    name         TEXT,
    -- A credential never grants more than its user has; it may grant less.
    role         TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    -- The login a token pair descends from: reusing a spent refresh token
    -- revokes the whole family.
    family       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

CREATE INDEX credentials_user ON credentials (user_id, kind);
CREATE INDEX credentials_family ON credentials (family);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    -- The username acting, or NULL when nobody was signed in.
    actor   TEXT,
    action  TEXT    NOT NULL,
    target  TEXT,
    client  TEXT,
    outcome TEXT    NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed'))
);

CREATE INDEX audit_time ON audit_log (at);
