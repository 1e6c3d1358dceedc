"""Summing facts per node and per relationship within a batch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam

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


def node_row(element: tuple[tuple[str, str], NodeAcc]) -> tuple[str, dict[str, Any]]:
    """``(label, row)`` as the upsert statements take rows."""
    (label, node_id), (first, last, count, _, props) = element
    return label, {"id": node_id, "first_seen": first, "last_seen": last, "count": count, "props": props}


def edge_row(element: tuple[tuple[str, str, str], EdgeAcc]) -> tuple[str, dict[str, Any]]:
    """``(rel, row)`` as the upsert statements take rows."""
    (rel, src, dst), (first, last, count, total, biggest) = element
    return rel, {"src": src, "dst": dst, "first_seen": first, "last_seen": last, "count": count,
                 "amount_total": total, "amount_max": biggest}  # fmt: skip


def _sorted_table(
    element: tuple[str, Iterable[dict[str, Any]]], key: tuple[str, ...]
) -> tuple[str, list[dict[str, Any]]]:
    name, rows = element
    return name, sorted(rows, key=lambda r: tuple(r[k] for k in key))


class AggregateNodes(beam.PTransform):
    """Node facts → one ``(label, rows sorted by id)`` table per label."""

    def expand(self, facts: beam.PCollection) -> beam.PCollection:
        return (
            facts
            | "SumPerNode" >> beam.CombinePerKey(merge_node_facts)
            | "NodeRow" >> beam.Map(node_row)
            | "GroupByLabel" >> beam.GroupByKey()
            | "SortNodes" >> beam.Map(_sorted_table, ("id",))
        )


class AggregateEdges(beam.PTransform):
    """Relationship facts → one ``(rel, rows sorted by src, dst)`` table per relationship type."""

    def expand(self, facts: beam.PCollection) -> beam.PCollection:
        return (
            facts
            | "SumPerEdge" >> beam.CombinePerKey(merge_edge_facts)
            | "EdgeRow" >> beam.Map(edge_row)
            | "GroupByType" >> beam.GroupByKey()
            | "SortEdges" >> beam.Map(_sorted_table, ("src", "dst"))
        )
