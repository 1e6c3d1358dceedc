// The refresh lock (ledger): one IngestLock node, so two runs' first MERGE cannot create two.
CREATE CONSTRAINT ingest_lock_name IF NOT EXISTS FOR (l:IngestLock) REQUIRE l.name IS UNIQUE
