// One IP per id; the constraint's index also serves every MERGE and MATCH on id.
CREATE CONSTRAINT ip_id IF NOT EXISTS FOR (n:IP) REQUIRE n.id IS UNIQUE
