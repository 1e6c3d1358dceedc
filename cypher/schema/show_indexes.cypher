// List indexes and constraints (Neo4j 5 syntax; db.indexes() is gone there and absent on ArcadeDB).
SHOW INDEXES
