// The refresh ledger: one IngestBatch per refresh run, identified by a monotonic sequence.
CREATE CONSTRAINT ingest_batch_seq IF NOT EXISTS FOR (b:IngestBatch) REQUIRE b.seq IS UNIQUE
