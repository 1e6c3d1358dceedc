// One Fingerprint per id; the constraint's index also serves every MERGE and MATCH on id.
CREATE CONSTRAINT fingerprint_id IF NOT EXISTS FOR (n:Fingerprint) REQUIRE n.id IS UNIQUE
