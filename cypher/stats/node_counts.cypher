// Nodes per label (the ledger's own labels included).
MATCH (n)
RETURN labels(n)[0] AS label, count(n) AS nodes
ORDER BY label
