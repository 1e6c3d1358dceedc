// One batch of the ledger by sequence number.
MATCH (b:IngestBatch {seq: $seq})
RETURN b.seq AS seq, b.status AS status, b.partitions AS partitions, b.started_at AS started_at
