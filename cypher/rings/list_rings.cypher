// Rings by score, highest first, filtered by minimum score and (optionally) status; paged by skip.
MATCH (r:Ring)
WHERE r.score >= coalesce($min_score, 0.0) AND ($status IS NULL OR r.status = $status)
RETURN r.id AS id, r.score AS score, r.size AS size, r.status AS status, r.model_version AS model_version,
       r.first_seen AS first_seen, r.last_seen AS last_seen, r.view AS view
ORDER BY score DESC, id
SKIP coalesce($skip, 0)
LIMIT coalesce($limit, 50)
