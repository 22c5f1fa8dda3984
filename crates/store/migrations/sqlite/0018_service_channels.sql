-- The channels a service notifies: a JSON list of channel ids, NULL for
-- every channel.
ALTER TABLE services ADD COLUMN channels TEXT;
