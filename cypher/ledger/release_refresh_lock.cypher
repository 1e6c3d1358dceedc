// Release the refresh lock, only if this run still holds it.
MATCH (l:IngestLock {name: 'refresh'})
WHERE l.token = $token
SET l.token = null, l.holder = null, l.pid = null, l.host = null, l.acquired_at = null,
    l.heartbeat_at = null, l.released_at = $now
RETURN count(l) AS released
