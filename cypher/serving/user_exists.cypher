// Whether a user is in the graph, with its stored score.
MATCH (u:User {id: $id})
RETURN u.id AS id, u.risk_score AS score, u.risk_band AS band, u.model_version AS model_version
