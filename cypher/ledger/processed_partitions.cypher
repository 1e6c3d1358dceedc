// Every input partition already folded into the graph, with the content fingerprint it had.
MATCH (p:IngestPartition)
RETURN p.path AS path, p.fingerprint AS fingerprint, p.batch_seq AS batch_seq
