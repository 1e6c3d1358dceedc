// The other users on a known user's identifiers (its k-hop neighbourhood), in the same shape
// as applicant_links, for explanations of users already in the graph: at most $limit users per
// identifier, each row with the identifier's true number of other users (rel_users), so one
// busy identifier cannot crowd the others out of the answer.
MATCH (me:User {id: $id})-[m]->(n)<-[r]-(u:User)
WHERE type(m) IN $rels AND type(r) = type(m) AND u.id <> me.id
WITH type(m) AS rel, n, collect({user: u.id, linked_at: r.first_seen}) AS users
UNWIND users[0..$limit] AS link
RETURN rel, n.id AS node, n.event_count AS node_events, n.first_seen AS node_first,
       link.user AS user, link.linked_at AS linked_at, size(users) AS rel_users
