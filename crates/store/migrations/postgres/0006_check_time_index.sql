-- Time-bounded reads of recent results (dashboard sparklines) and the
-- retention pruner's DELETE both range over checked_at alone.
CREATE INDEX health_checks_time ON health_checks (checked_at);
