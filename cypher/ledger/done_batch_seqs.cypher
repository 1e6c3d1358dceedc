// Sequence numbers of finished batches, in order: the deltas the snapshot is folded from (a
// running or abandoned batch's delta may be half written and is never folded).
MATCH (b:IngestBatch)
WHERE b.status = 'done'
RETURN b.seq AS seq
ORDER BY seq
