// Mark a batch done and its partitions processed, in one transaction.
MATCH (b:IngestBatch {seq: $seq})
SET b.status = 'done', b.finished_at = $now, b.read = $read, b.accepted = $accepted,
    b.rejected = $rejected, b.duplicates = $duplicates
WITH b
UNWIND range(0, size(b.partitions) - 1) AS i
MERGE (p:IngestPartition {path: b.partitions[i]})
SET p.fingerprint = b.fingerprints[i], p.batch_seq = b.seq, p.processed_at = $now
RETURN count(p) AS partitions
