// Ring ids are unique (creates the index MERGE on :Ring(id) uses).
CREATE CONSTRAINT ring_id IF NOT EXISTS FOR (r:Ring) REQUIRE r.id IS UNIQUE
