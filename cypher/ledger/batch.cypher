// One batch of the ledger by sequence number, with its abandonment record if any.
MATCH (b:IngestBatch {seq: $seq})
RETURN b.seq AS seq, b.status AS status, b.partitions AS partitions, b.started_at AS started_at,
       b.abandoned_at AS abandoned_at, b.abandoned_by AS abandoned_by, b.abandon_reason AS abandon_reason,
       b.abandoned_partial_nodes AS abandoned_partial_nodes, b.abandoned_partial_rels AS abandoned_partial_rels
