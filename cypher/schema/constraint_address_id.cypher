// One Address per id; the constraint's index also serves every MERGE and MATCH on id.
CREATE CONSTRAINT address_id IF NOT EXISTS FOR (n:Address) REQUIRE n.id IS UNIQUE
