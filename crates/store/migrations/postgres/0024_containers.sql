-- Containers: the container behind a service (its name at the engine,
-- NULL for none), what the engine last said of it (a JSON object: state,
-- health, restarts, ports, image, Compose labels) and its state alone
-- (`running`, `exited`, ..., `removed` once the engine no longer has it).
ALTER TABLE services ADD COLUMN container TEXT;
ALTER TABLE services ADD COLUMN container_info TEXT;
ALTER TABLE services ADD COLUMN container_state TEXT;
CREATE UNIQUE INDEX services_container ON services (container);
