-- A service's tags: a JSON list of labels to group and filter by, NULL when
-- it has none.
ALTER TABLE services ADD COLUMN tags TEXT;
