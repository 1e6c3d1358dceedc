// One hop from a user, for the console's "expand": everything the user links to and the users
// who sent it money, with counts, amounts and times. `total` is how many links there are, so
// the API can say how many a capped answer leaves out.
MATCH (u:User {id: $id})
OPTIONAL MATCH (u)-[e]->(n)
WHERE NOT n:Ring
WITH u, collect({rel: type(e), dir: 'out', label: labels(n)[0], node: n.id, masked: n.masked, count: e.count,
                 first_seen: e.first_seen, last_seen: e.last_seen, amount: e.amount_total}) AS out
OPTIONAL MATCH (u)<-[t:TRANSFERRED_TO]-(s:User)
WITH out, collect({rel: 'TRANSFERRED_TO', dir: 'in', label: 'User', node: s.id, masked: null, count: t.count,
                   first_seen: t.first_seen, last_seen: t.last_seen, amount: t.amount_total}) AS inc
WITH [l IN out + inc WHERE l.node IS NOT NULL] AS links
WITH links, size(links) AS total
UNWIND links AS link
RETURN link.rel AS rel, link.dir AS dir, link.label AS label, link.node AS node, link.masked AS masked,
       link.count AS count, link.first_seen AS first_seen, link.last_seen AS last_seen, link.amount AS amount,
       total
LIMIT $limit
