// Fold one batch's Fingerprint aggregates into the graph.
// Re-applying a batch is a no-op: each node remembers the last batch folded into it
// (batch_seq) and batches are applied in increasing order, so a re-run after a crash
// skips what was committed and applies the rest.
UNWIND $rows AS row
MERGE (n:Fingerprint {id: row.id})
ON CREATE SET n.first_seen = row.first_seen, n.last_seen = row.last_seen, n.event_count = 0, n.batch_seq = -1
WITH n, row
WHERE n.batch_seq < $batch_seq
SET n.event_count = n.event_count + row.count,
    n.first_seen = CASE WHEN row.first_seen < n.first_seen THEN row.first_seen ELSE n.first_seen END,
    n.last_seen = CASE WHEN row.last_seen > n.last_seen THEN row.last_seen ELSE n.last_seen END,
    n.batch_seq = $batch_seq
SET n += row.props
RETURN count(n) AS applied
