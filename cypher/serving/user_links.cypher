// The other users on a known user's identifiers (its k-hop neighbourhood), in the same shape
// as applicant_links, for explanations of users already in the graph.
MATCH (me:User {id: $id})-[m]->(n)<-[r]-(u:User)
WHERE type(m) IN $rels AND type(r) = type(m) AND u.id <> me.id
RETURN type(m) AS rel, n.id AS node, n.event_count AS node_events, n.first_seen AS node_first,
       u.id AS user, r.first_seen AS linked_at
LIMIT $limit
