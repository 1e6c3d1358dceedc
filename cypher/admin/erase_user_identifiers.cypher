// GDPR erasure (`graphrisk erase --links`): delete the identifier nodes (pseudonymised email,
// phone, device, IP, address, card, document) that no user but this one is linked to. Run before
// erase_user, while the user's relationships still say which nodes were its own. Merchants are
// businesses, not personal data, and Rings are kept for their other members. Returns the nodes
// deleted and their relationships (all of them to this user).
MATCH (u:User {id: $id})-[]-(n)
WHERE NOT n:User AND NOT n:Merchant AND NOT n:Ring
WITH DISTINCT n
MATCH (n)-[r]-(o:User)
WITH n, count(DISTINCT o) AS users, count(r) AS rels
WHERE users = 1
DETACH DELETE n
RETURN count(*) AS deleted, sum(rels) AS rels
