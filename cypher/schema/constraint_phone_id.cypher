// One Phone per id; the constraint's index also serves every MERGE and MATCH on id.
CREATE CONSTRAINT phone_id IF NOT EXISTS FOR (n:Phone) REQUIRE n.id IS UNIQUE
