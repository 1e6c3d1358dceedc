// A ring for the investigator's console: every member's links (identifiers, devices, merchants,
// transfers) with counts, amounts and first/last times, and when each member onboarded. The
// API keeps what ties members together (shared nodes, transfers between members) and builds the
// ring's timeline from the same rows.
MATCH (u:User)-[:MEMBER_OF]->(:Ring {id: $id})
MATCH (u)-[e]->(n)
WHERE NOT n:Ring
RETURN u.id AS member, u.onboarded_at AS onboarded_at, type(e) AS rel, labels(n)[0] AS label,
       n.id AS node, n.masked AS masked, e.count AS count, e.first_seen AS first_seen,
       e.last_seen AS last_seen, e.amount_total AS amount
LIMIT $limit
