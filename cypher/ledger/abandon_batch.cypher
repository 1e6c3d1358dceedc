// An operator abandons an unfinished batch: recorded with who, when and why. Its partitions
// are not marked processed, so the next refresh takes them again as a new batch.
MATCH (b:IngestBatch {seq: $seq})
WHERE b.status = 'running'
SET b.status = 'abandoned', b.abandoned_at = $now, b.abandoned_by = $by, b.abandon_reason = $reason,
    b.abandoned_partial_nodes = $partial_nodes, b.abandoned_partial_rels = $partial_rels
RETURN b.seq AS seq, b.partitions AS partitions, b.started_at AS started_at
