// One ring with its members (and their own risk scores, when scored).
MATCH (r:Ring {id: $id})
OPTIONAL MATCH (u:User)-[:MEMBER_OF]->(r)
WITH r, u ORDER BY u.id
RETURN r.id AS id, r.score AS score, r.size AS size, r.status AS status, r.model_version AS model_version,
       r.first_seen AS first_seen, r.last_seen AS last_seen, r.view AS view, r.parents AS parents,
       r.successors AS successors,
       [x IN collect(u) | {id: x.id, risk_score: x.risk_score}] AS members
