-- What a credential may be used for: `all` (whatever its role allows) or
-- `heartbeat` (only registering and refreshing heartbeat services), so the
-- token a host keeps for its heartbeats cannot change anything else.
ALTER TABLE credentials
    ADD COLUMN scope TEXT NOT NULL DEFAULT 'all' CHECK (scope IN ('all', 'heartbeat'));
