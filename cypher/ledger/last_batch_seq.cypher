// The highest batch sequence number used so far (0 when the graph is new).
OPTIONAL MATCH (b:IngestBatch)
RETURN coalesce(max(b.seq), 0) AS seq
