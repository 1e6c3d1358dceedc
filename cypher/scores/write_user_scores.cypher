// Write one model version's calibrated risk scores onto users, in batches.
UNWIND $rows AS row
MATCH (u:User {id: row.id})
SET u.risk_score = row.score, u.risk_band = row.band, u.model_version = $model_version, u.scored_at = $now
RETURN count(u) AS applied
