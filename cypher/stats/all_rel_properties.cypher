// Every property value of every relationship, paged; used to audit the store for raw PII.
MATCH ()-[r]->()
RETURN type(r) AS type, properties(r) AS props
ORDER BY elementId(r)
SKIP $skip
LIMIT $limit
