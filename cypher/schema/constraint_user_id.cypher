// One User per id; the constraint's index also serves every MERGE and MATCH on id.
CREATE CONSTRAINT user_id IF NOT EXISTS FOR (n:User) REQUIRE n.id IS UNIQUE
