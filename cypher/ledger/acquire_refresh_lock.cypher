// Take the one refresh lock, or report who holds it. Atomic: the first SET writes the node
// before its holder is read, so two runs cannot both see it free (Neo4j takes the node's
// write lock there; ArcadeDB's MVCC fails the later commit, and the client retries it).
// Free means: nobody holds it, this run holds it already, the holder's heartbeat is older than
// $stale_before, or the holder is $dead_token (a run on this host whose process is gone). The
// caller warns loudly when it takes one over.
MERGE (l:IngestLock {name: 'refresh'})
SET l.claimed_by = $token
WITH l, l.token AS prev_token, l.holder AS prev_holder, l.pid AS prev_pid, l.host AS prev_host,
     l.acquired_at AS prev_acquired_at, l.heartbeat_at AS prev_heartbeat_at,
     (l.token IS NULL OR l.token = $token OR l.token = $dead_token
      OR l.heartbeat_at < $stale_before) AS free
SET l.token = CASE WHEN free THEN $token ELSE prev_token END,
    l.holder = CASE WHEN free THEN $holder ELSE prev_holder END,
    l.pid = CASE WHEN free THEN $pid ELSE prev_pid END,
    l.host = CASE WHEN free THEN $host ELSE prev_host END,
    l.acquired_at = CASE WHEN free THEN $now ELSE prev_acquired_at END,
    l.heartbeat_at = CASE WHEN free THEN $now ELSE prev_heartbeat_at END
RETURN free AS acquired, prev_token AS prev_token, free AND prev_token IS NOT NULL AND prev_token <> $token AS taken_over,
       prev_holder AS prev_holder, prev_pid AS prev_pid, prev_host AS prev_host,
       prev_acquired_at AS prev_acquired_at, prev_heartbeat_at AS prev_heartbeat_at
