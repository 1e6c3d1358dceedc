// Every property value of every node, paged; used to audit the store for raw PII.
MATCH (n)
RETURN labels(n)[0] AS label, properties(n) AS props
ORDER BY elementId(n)
SKIP $skip
LIMIT $limit
