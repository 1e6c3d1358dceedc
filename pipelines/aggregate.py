"""Summing facts per node and per relationship within a batch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam

NodeAcc = tuple[int, int, int, int, dict[str, Any]]
EdgeAcc = tuple[int, int, int, float, float]


def merge_node_facts(values: Iterable[NodeAcc]) -> NodeAcc:
    """Earliest first, latest last, summed count; properties from the latest fact that has them.

    Ties on time are broken by the properties' sorted items so the result never depends on
    the order in which a runner delivers facts.
    """
    first, last, count, ptime, props = None, None, 0, -1, {}
    for f, la, c, pt, p in values:
        first = f if first is None or f < first else first
        last = la if last is None or la > last else last
        count += c
        if p and (pt > ptime or (pt == ptime and sorted(p.items()) > sorted(props.items()))):
            ptime, props = pt, p
    assert first is not None and last is not None, "merge of no facts"
    return first, last, count, ptime, props


def merge_edge_facts(values: Iterable[EdgeAcc]) -> EdgeAcc:
    """Earliest first, latest last, summed count and amount, largest single amount."""
    first, last, count, total, biggest = None, None, 0, 0.0, 0.0
    for f, la, c, amount, amax in values:
        first = f if first is None or f < first else first
        last = la if last is None or la > last else last
        count += c
        total += amount
        biggest = max(biggest, amax)
    assert first is not None and last is not None, "merge of no facts"
    return first, last, count, round(total, 4), biggest


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
