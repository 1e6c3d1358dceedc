// Keep the refresh lock fresh while a run works; 0 rows: it was taken over (the run must stop).
MATCH (l:IngestLock {name: 'refresh'})
WHERE l.token = $token
SET l.heartbeat_at = $now
RETURN l.token AS token
