// A batch that started but never finished (the process died): it must be resumed, with the
// same sequence number, partitions and ingestion time (started_at: the future-event limit),
// before anything new is processed.
MATCH (b:IngestBatch)
WHERE b.status = 'running'
RETURN b.seq AS seq, b.partitions AS partitions, b.fingerprints AS fingerprints,
       b.started_at AS started_at
ORDER BY seq
LIMIT 1
