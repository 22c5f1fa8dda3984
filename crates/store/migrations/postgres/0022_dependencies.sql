-- Dependencies and self-healing: the services a service depends on (a JSON
-- list of ids, NULL for none), its healing rule (JSON, NULL for none), and
-- the failing service at the root of its dependencies while there is one
-- (JSON {"id", "name"}, set by the hub; its status is then UNKNOWN).
ALTER TABLE services ADD COLUMN depends_on TEXT;
ALTER TABLE services ADD COLUMN heal TEXT;
ALTER TABLE services ADD COLUMN waiting_on TEXT;
