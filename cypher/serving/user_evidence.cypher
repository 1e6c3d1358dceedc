// A user's identifiers and the other users sharing each of them, for explanations.
MATCH (u:User {id: $id})-[r]->(n)
WHERE NOT n:Ring
OPTIONAL MATCH (other:User)-[]->(n)
WHERE other.id <> u.id
WITH type(r) AS rel, labels(n)[0] AS label, n.id AS node, n.masked AS masked, r.count AS uses,
     collect(DISTINCT other.id)[0..$max_others] AS others, count(DISTINCT other) AS shared_with
RETURN rel, label, node, masked, uses, shared_with, others
ORDER BY shared_with DESC
