// Record a batch before writing any of its data, so a crash leaves a trace to resume from.
CREATE (b:IngestBatch {seq: $seq, status: 'running', partitions: $partitions,
                       fingerprints: $fingerprints, started_at: $now})
RETURN b.seq AS seq
