// One Card per id; the constraint's index also serves every MERGE and MATCH on id.
CREATE CONSTRAINT card_id IF NOT EXISTS FOR (n:Card) REQUIRE n.id IS UNIQUE
