// Remove MEMBER_OF edges of users who left a ring that lives on.
UNWIND $rows AS row
MATCH (u:User {id: row.user_id})-[m:MEMBER_OF]->(r:Ring {id: row.ring_id})
DELETE m
RETURN count(*) AS applied
