// Relationships whose last folded batch is $seq (see batch_node_writes).
MATCH ()-[r]->()
WHERE r.batch_seq = $seq
RETURN count(r) AS n
