// Fold one batch's (User)-[:USED_FINGERPRINT]->(Fingerprint) aggregates into the graph.
// Idempotent per batch through batch_seq, as the node upserts; both endpoints were upserted
// earlier in the same batch.
UNWIND $rows AS row
MATCH (a:User {id: row.src})
MATCH (b:Fingerprint {id: row.dst})
MERGE (a)-[r:USED_FINGERPRINT]->(b)
ON CREATE SET r.count = 0, r.batch_seq = -1, r.first_seen = row.first_seen, r.last_seen = row.last_seen
WITH r, row
WHERE r.batch_seq < $batch_seq
SET r.count = r.count + row.count,
    r.first_seen = CASE WHEN row.first_seen < r.first_seen THEN row.first_seen ELSE r.first_seen END,
    r.last_seen = CASE WHEN row.last_seen > r.last_seen THEN row.last_seen ELSE r.last_seen END,
    r.batch_seq = $batch_seq
RETURN count(r) AS applied
