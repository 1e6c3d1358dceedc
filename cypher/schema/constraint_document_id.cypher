// One Document per id; the constraint's index also serves every MERGE and MATCH on id.
CREATE CONSTRAINT document_id IF NOT EXISTS FOR (n:Document) REQUIRE n.id IS UNIQUE
