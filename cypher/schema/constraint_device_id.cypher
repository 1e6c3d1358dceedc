// One Device per id; the constraint's index also serves every MERGE and MATCH on id.
CREATE CONSTRAINT device_id IF NOT EXISTS FOR (n:Device) REQUIRE n.id IS UNIQUE
