// The refresh ledger: one IngestPartition per input file ever processed.
CREATE CONSTRAINT ingest_partition_path IF NOT EXISTS FOR (p:IngestPartition) REQUIRE p.path IS UNIQUE
