// Relationships per type, with the number of events folded into them and money moved.
MATCH ()-[r]->()
RETURN type(r) AS type, count(r) AS rels, sum(r.count) AS events, sum(coalesce(r.amount_total, 0.0)) AS amount
ORDER BY type
