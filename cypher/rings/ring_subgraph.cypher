// A ring's members, the identifiers they use and the transfers between them: the evidence
// subgraph an investigator reads. Hub identifiers are included; the API marks how many members
// share each one.
MATCH (u:User)-[:MEMBER_OF]->(:Ring {id: $id})
MATCH (u)-[e]->(n)
WHERE NOT n:Ring
RETURN u.id AS member, type(e) AS rel, labels(n)[0] AS label, n.id AS node, n.masked AS masked,
       e.count AS count, e.first_seen AS first_seen, e.amount_total AS amount
LIMIT $limit
