// The refresh history, newest first.
MATCH (b:IngestBatch)
RETURN b.seq AS seq, b.status AS status, size(b.partitions) AS partitions, b.read AS read,
       b.accepted AS accepted, b.rejected AS rejected, b.duplicates AS duplicates,
       b.started_at AS started_at, b.finished_at AS finished_at
ORDER BY seq DESC
LIMIT $limit
