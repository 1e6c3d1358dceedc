// Nodes whose last folded batch is $seq: for the latest (unfinished) batch, exactly the nodes
// its committed writes touched. A full scan: an operator command, not a hot path.
MATCH (n)
WHERE n.batch_seq = $seq
RETURN count(n) AS n
