// Link users to the rings they are members of (idempotent).
UNWIND $rows AS row
MATCH (u:User {id: row.user_id})
MATCH (r:Ring {id: row.ring_id})
MERGE (u)-[m:MEMBER_OF]->(r)
RETURN count(m) AS applied
