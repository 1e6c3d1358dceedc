// Users with a stored risk score, highest first.
MATCH (u:User)
WHERE u.risk_score IS NOT NULL
RETURN u.id AS id, u.risk_score AS score, u.risk_band AS band, u.model_version AS model_version
ORDER BY score DESC
SKIP $skip
LIMIT $limit
