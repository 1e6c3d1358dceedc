// One Merchant per id; the constraint's index also serves every MERGE and MATCH on id.
CREATE CONSTRAINT merchant_id IF NOT EXISTS FOR (n:Merchant) REQUIRE n.id IS UNIQUE
