// GDPR erasure (`graphrisk erase --links`): detach and delete one user's node, with every
// relationship it has (identifiers, payments, transfers, ring memberships). Returns how many
// relationships and nodes went (0 and 0: the user was not in the graph).
MATCH (u:User {id: $id})
OPTIONAL MATCH (u)-[r]-()
WITH u, count(r) AS rels
DETACH DELETE u
RETURN rels, 1 AS nodes
