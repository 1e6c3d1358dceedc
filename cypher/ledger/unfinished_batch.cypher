// A batch that started but never finished (the process died): it must be resumed, with the
// same sequence number and partitions, before anything new is processed.
MATCH (b:IngestBatch)
WHERE b.status = 'running'
RETURN b.seq AS seq, b.partitions AS partitions, b.fingerprints AS fingerprints
ORDER BY seq
LIMIT 1
