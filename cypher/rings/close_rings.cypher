// Rings that disappeared: set their final status (closed, merged, split) and drop their members.
UNWIND $rows AS row
MATCH (r:Ring {id: row.id})
SET r.status = row.status, r.last_seen = row.last_seen, r.successors = row.successors
WITH r
OPTIONAL MATCH (:User)-[m:MEMBER_OF]->(r)
DELETE m
RETURN count(DISTINCT r) AS applied
