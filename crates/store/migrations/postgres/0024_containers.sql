-- Containers: the container behind a service (its name at the engine,
-- NULL for none) and what the engine last said of it (a JSON object:
-- state, health, restarts, ports, image, Compose labels).
ALTER TABLE services ADD COLUMN container TEXT;
ALTER TABLE services ADD COLUMN container_info TEXT;
CREATE UNIQUE INDEX services_container ON services (container);
