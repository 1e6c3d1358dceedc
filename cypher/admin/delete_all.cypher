// Empty the database (tests and `graphrisk reset --yes`); batched so big graphs don't need one huge transaction.
MATCH (n)
WITH n LIMIT $limit
DETACH DELETE n
RETURN count(*) AS deleted
