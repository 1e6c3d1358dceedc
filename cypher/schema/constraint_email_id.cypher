// One Email per id; the constraint's index also serves every MERGE and MATCH on id.
CREATE CONSTRAINT email_id IF NOT EXISTS FOR (n:Email) REQUIRE n.id IS UNIQUE
