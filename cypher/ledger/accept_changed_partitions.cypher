// An operator accepts that processed partitions changed after processing (graphrisk refresh
// --accept-changed): their new fingerprints are recorded, with who and when, and the old kept.
// Their new content is not folded in: the store and snapshot keep what was processed.
UNWIND range(0, size($paths) - 1) AS i
MATCH (p:IngestPartition {path: $paths[i]})
SET p.previous_fingerprint = p.fingerprint, p.fingerprint = $fingerprints[i],
    p.change_accepted_by = $by, p.change_accepted_at = $now
RETURN count(p) AS accepted
