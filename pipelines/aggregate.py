"""Summing facts per node and per relationship within a batch.

:func:`fold_node_fact` and :func:`fold_edge_fact` define how facts merge. Facts travel as
tables, and most merges are plain arithmetic (earliest first, latest last, summed counts and
amounts) done a column at a time; a node's *properties* are only ever chosen by
:func:`fold_node_fact`. Columnar steps merely sum facts that carry identical properties, which
cannot change that choice (the fold picks whole property sets, so any one of identical ones is
the same pick). Tests check the columnar merges against the folds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from graphrisk.graph_schema import NODE_PROPERTIES, NodeLabel
from pipelines.records import from_ipc
from pipelines.snapshot import edge_schema, node_schema

NodeAcc = tuple[int, int, int, int, dict[str, Any]]
EdgeAcc = tuple[int, int, int, float, float]


def fold_node_fact(acc: list[Any] | None, fact: NodeAcc) -> list[Any]:
    """Fold one node fact into a mutable accumulator (``None`` starts one).

    Earliest first, latest last, summed count; properties from the latest fact that has any,
    ties on time broken by the properties' sorted items, so the result never depends on the
    order in which a runner delivers facts. A fact without properties never sets their time.
    """
    f, la, c, pt, p = fact
    if acc is None:
        acc = [f, la, 0, -1, {}]
    acc[0] = min(acc[0], f)
    acc[1] = max(acc[1], la)
    acc[2] += c
    if p and (pt > acc[3] or (pt == acc[3] and sorted(p.items()) > sorted(acc[4].items()))):
        acc[3], acc[4] = pt, p
    return acc


def fold_edge_fact(acc: list[Any] | None, fact: EdgeAcc) -> list[Any]:
    """Fold one relationship fact: earliest first, latest last, summed count and amount, largest amount."""
    f, la, c, amount, amax = fact
    if acc is None:
        return [f, la, c, amount, amax]
    acc[0] = min(acc[0], f)
    acc[1] = max(acc[1], la)
    acc[2] += c
    acc[3] += amount
    acc[4] = max(acc[4], amax)
    return acc


def merge_node_facts(values: Iterable[NodeAcc]) -> NodeAcc:
    """The combine of node facts (see :func:`fold_node_fact`)."""
    acc = None
    for v in values:
        acc = fold_node_fact(acc, v)
    assert acc is not None, "merge of no facts"
    return tuple(acc)  # type: ignore[return-value]


def merge_edge_facts(values: Iterable[EdgeAcc]) -> EdgeAcc:
    """The combine of relationship facts (see :func:`fold_edge_fact`), amounts rounded to 1e-4."""
    acc = None
    for v in values:
        acc = fold_edge_fact(acc, v)
    assert acc is not None, "merge of no facts"
    return acc[0], acc[1], acc[2], round(acc[3], 4), acc[4]


def node_fact_schema(label: NodeLabel) -> pa.Schema:
    """Node facts: the snapshot's node columns plus the time of the properties (-1: none)."""
    return node_schema(label).insert(4, pa.field("props_time", pa.int64()))


def edge_fact_schema() -> pa.Schema:
    """Relationship facts have the snapshot's relationship columns."""
    return edge_schema()


# The arithmetic part of the folds, as Arrow aggregations.
_NODE_SUMS = [("first_seen", "min"), ("last_seen", "max"), ("event_count", "sum"), ("props_time", "max")]
_EDGE_SUMS = [("count", "sum"), ("first_seen", "min"), ("last_seen", "max"), ("amount_total", "sum"),
              ("amount_max", "max")]  # fmt: skip


def _group(facts: pa.Table, keys: list[str], sums: list[tuple[str, str]], schema: pa.Schema) -> pa.Table:
    # Single-threaded: the order of float sums (and of output groups) is then fixed by the input.
    out = facts.group_by(keys, use_threads=False).aggregate(sums)
    names = {f"{col}_{op}": col for col, op in sums}
    out = out.rename_columns([names.get(n, n) for n in out.column_names])
    return out.select(schema.names).cast(schema)


def presum_node_facts(facts: pa.Table) -> pa.Table:
    """Facts of one label summed per node *and property set*: properties are left to the fold."""
    label_props = [n for n in facts.column_names if n not in {"id", *(c for c, _ in _NODE_SUMS)}]
    return _group(facts, ["id", *label_props], _NODE_SUMS, facts.schema)


def presum_edge_facts(facts: pa.Table) -> pa.Table:
    """Relationship facts summed per relationship (amounts unrounded until the final merge)."""
    return _group(facts, ["src", "dst"], _EDGE_SUMS, facts.schema)


def merge_node_tables(label: NodeLabel, parts: Iterable[pa.Table]) -> pa.Table:
    """One row per node from a batch's fact tables, sorted by id, in the snapshot's node columns.

    A node whose facts all carry the same properties (nearly all) is finished by the columnar
    sum; the others are folded with :func:`fold_node_fact`.
    """
    schema = node_fact_schema(label)
    summed = presum_node_facts(pa.concat_tables(list(parts)).cast(schema))
    ids = summed.column("id").combine_chunks()
    counts = pc.value_counts(ids)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    is_repeated = pc.is_in(ids, value_set=repeated)
    done = summed.filter(pc.invert(is_repeated))
    if len(repeated):
        done = pa.concat_tables([done, _fold_nodes(summed.filter(is_repeated), label, schema)])
    return done.drop_columns(["props_time"]).sort_by("id").cast(node_schema(label))


def _fold_nodes(rows: pa.Table, label: NodeLabel, schema: pa.Schema) -> pa.Table:
    props = NODE_PROPERTIES[label]
    facts: dict[str, list[NodeAcc]] = {}
    for r in rows.to_pylist():
        fact = (r["first_seen"], r["last_seen"], r["event_count"], r["props_time"],
                {p: r[p] for p in props if r[p] is not None})  # fmt: skip
        facts.setdefault(r["id"], []).append(fact)
    out = []
    for node_id, values in facts.items():
        first, last, count, pt, chosen = merge_node_facts(values)
        out.append({"id": node_id, "first_seen": first, "last_seen": last, "event_count": count,
                    "props_time": pt} | {p: chosen.get(p) for p in props})  # fmt: skip
    return pa.Table.from_pylist(out, schema=schema)


def merge_edge_tables(parts: Iterable[pa.Table]) -> pa.Table:
    """One row per relationship from a batch's fact tables, sorted by (src, dst), amounts to 1e-4."""
    summed = presum_edge_facts(pa.concat_tables(list(parts)).cast(edge_fact_schema()))
    # Python's round, as merge_edge_facts rounds (Arrow's round differs in the last digit at times).
    total = pa.array([round(x, 4) for x in summed.column("amount_total").to_pylist()], pa.float64())
    summed = summed.set_column(summed.schema.get_field_index("amount_total"), "amount_total", total)
    return summed.sort_by([("src", "ascending"), ("dst", "ascending")])


def _nodes_of(element: tuple[str, Iterable[bytes]]) -> tuple[str, pa.Table]:
    label, parts = element
    return label, merge_node_tables(NodeLabel(label), [from_ipc(p) for p in parts])


def _edges_of(element: tuple[str, Iterable[bytes]]) -> tuple[str, pa.Table]:
    rel, parts = element
    return rel, merge_edge_tables([from_ipc(p) for p in parts])


class AggregateNodes(beam.PTransform):
    """``(label, node facts as IPC bytes)`` → one ``(label, node table sorted by id)`` per label."""

    def expand(self, facts: beam.PCollection) -> beam.PCollection:
        return facts | "GroupByLabel" >> beam.GroupByKey() | "MergeNodes" >> beam.Map(_nodes_of)


class AggregateEdges(beam.PTransform):
    """``(rel, relationship facts as IPC bytes)`` → one ``(rel, table sorted by src, dst)`` per type."""

    def expand(self, facts: beam.PCollection) -> beam.PCollection:
        return facts | "GroupByType" >> beam.GroupByKey() | "MergeEdges" >> beam.Map(_edges_of)
