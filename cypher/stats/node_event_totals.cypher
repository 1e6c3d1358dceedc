// Events folded into nodes per label, for reconciliation checks.
MATCH (n)
WHERE n.event_count IS NOT NULL
RETURN labels(n)[0] AS label, sum(n.event_count) AS events, min(n.first_seen) AS first_seen,
       max(n.last_seen) AS last_seen
ORDER BY label
