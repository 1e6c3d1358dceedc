// Upsert live rings (this run's clusters) in batches; re-running the same rows changes nothing.
UNWIND $rows AS row
MERGE (r:Ring {id: row.id})
SET r.score = row.score, r.size = row.size, r.model_version = row.model_version,
    r.first_seen = row.first_seen, r.last_seen = row.last_seen, r.status = row.status,
    r.view = row.view, r.parents = row.parents
RETURN count(r) AS applied
