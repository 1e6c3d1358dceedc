// A user's identifiers and the other users sharing each of them, for explanations: the true
// number of others (shared_with), up to $max_others of their ids to show, and up to 2,000
// (scanned) from which the API counts the confirmed fraud among them. A fixed bound: a
// shared IP can have a hundred thousand users, and the count says when it was reached. Ties
// are ordered by the API (api/routes/users.py), not here: the store's order is not relied on.
MATCH (u:User {id: $id})-[r]->(n)
WHERE NOT n:Ring
OPTIONAL MATCH (other:User)-[]->(n)
WHERE other.id <> u.id
WITH type(r) AS rel, labels(n)[0] AS label, n.id AS node, n.masked AS masked, r.count AS uses,
     collect(DISTINCT other.id) AS all_others, count(DISTINCT other) AS shared_with
RETURN rel, label, node, masked, uses, shared_with, all_others[0..$max_others] AS others,
       all_others[0..2000] AS scanned
ORDER BY shared_with DESC
