"""Entities and relationships out of clean event tables.

Each event yields *facts*: for a node ``(label, id)`` its first and last time, a count and
properties; for a relationship ``(rel, src, dst)`` the same plus an amount. Which events yield
which facts is declared once, in :data:`NODE_FACTS` and :data:`EDGE_FACTS`; facts are built a
column at a time and summed per key within the batch (with the merges of
:mod:`pipelines.aggregate`), so what crosses the next shuffle follows the number of distinct
entities, not of events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue

from graphrisk.graph_schema import NodeLabel, RelType
from pipelines.aggregate import edge_fact_schema, node_fact_schema, presum_edge_facts, presum_node_facts
from pipelines.records import to_ipc

NODES = "nodes"
EDGES = "edges"
_ONBOARDING, _LOGIN, _PAYMENT = "onboarding", "login", "payment"


@dataclass(frozen=True)
class NodeFacts:
    """``label`` nodes from events of ``event_types``: id from column ``id``, property → column."""

    label: NodeLabel
    event_types: tuple[str, ...]
    id: str
    props: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EdgeFacts:
    """``rel`` relationships from events of ``event_types``, between two id columns."""

    rel: RelType
    event_types: tuple[str, ...]
    src: str
    dst: str
    amount: str | None = None


# Rows where the id (or destination) column is null yield no fact: a payment has a merchant or
# a counterparty, and a card only sometimes.
NODE_FACTS = (
    NodeFacts(NodeLabel.USER, (_ONBOARDING,), "user_id", {"onboarded_at": "time", "country": "country"}),
    NodeFacts(NodeLabel.USER, (_LOGIN, _PAYMENT), "user_id"),
    NodeFacts(NodeLabel.USER, (_PAYMENT,), "counterparty_id"),
    NodeFacts(NodeLabel.DEVICE, (_ONBOARDING, _LOGIN), "device_id", {"fingerprint": "device_fp"}),
    NodeFacts(NodeLabel.IP, (_ONBOARDING, _LOGIN), "ip", {"version": "ip_version", "masked": "ip_masked"}),
    NodeFacts(NodeLabel.DOCUMENT, (_ONBOARDING,), "doc",
              {"doc_type": "doc_type", "issuing_country": "doc_country", "masked": "doc_masked"}),
    NodeFacts(NodeLabel.EMAIL, (_ONBOARDING,), "email", {"domain": "email_domain", "masked": "email_masked"}),
    NodeFacts(NodeLabel.PHONE, (_ONBOARDING,), "phone", {"country_code": "phone_cc", "masked": "phone_masked"}),
    NodeFacts(NodeLabel.ADDRESS, (_ONBOARDING,), "address", {"country": "country", "masked": "address_masked"}),
    NodeFacts(NodeLabel.MERCHANT, (_PAYMENT,), "merchant_id", {"category": "merchant_category"}),
    NodeFacts(NodeLabel.CARD, (_PAYMENT,), "card", {"masked": "card_masked"}),
    NodeFacts(NodeLabel.FINGERPRINT, (_ONBOARDING, _LOGIN), "device_fp"),
)  # fmt: skip
EDGE_FACTS = (
    EdgeFacts(RelType.USED_DEVICE, (_ONBOARDING, _LOGIN), "user_id", "device_id"),
    EdgeFacts(RelType.USED_IP, (_ONBOARDING, _LOGIN), "user_id", "ip"),
    EdgeFacts(RelType.HAS_DOCUMENT, (_ONBOARDING,), "user_id", "doc"),
    EdgeFacts(RelType.HAS_EMAIL, (_ONBOARDING,), "user_id", "email"),
    EdgeFacts(RelType.HAS_PHONE, (_ONBOARDING,), "user_id", "phone"),
    EdgeFacts(RelType.LIVES_AT, (_ONBOARDING,), "user_id", "address"),
    EdgeFacts(RelType.PAID, (_PAYMENT,), "user_id", "merchant_id", "amount"),
    EdgeFacts(RelType.TRANSFERRED_TO, (_PAYMENT,), "user_id", "counterparty_id", "amount"),
    EdgeFacts(RelType.USED_CARD, (_PAYMENT,), "user_id", "card"),
    EdgeFacts(RelType.USED_FINGERPRINT, (_ONBOARDING, _LOGIN), "user_id", "device_fp"),
)


def _rows(clean: pa.Table, event_types: tuple[str, ...], key: str) -> pa.Table:
    mask = pc.and_(
        pc.is_in(clean.column("event_type"), pa.array(event_types)), pc.is_valid(clean.column(key))
    )
    return clean.filter(mask)


def node_facts(clean: pa.Table, spec: NodeFacts) -> pa.Table:
    """One fact per event (not yet summed): first = last = the event's time, count 1.

    A fact with properties carries their time; one without has none (-1), so it never
    decides a node's properties.
    """
    rows = _rows(clean, spec.event_types, spec.id)
    schema = node_fact_schema(spec.label)
    n = len(rows)
    time = rows.column("time")
    props = {p: rows.column(c).cast(schema.field(p).type) for p, c in spec.props.items()}
    has_props = np.zeros(n, dtype=bool)
    for col in props.values():
        has_props |= pc.is_valid(col).to_numpy(zero_copy_only=False)
    props_time = pc.if_else(pa.array(has_props), time, pa.scalar(-1, pa.int64()))
    cols = {"id": rows.column(spec.id), "first_seen": time, "last_seen": time,
            "event_count": pa.array(np.ones(n, dtype=np.int64)), "props_time": props_time}  # fmt: skip
    arrays = [cols[f.name] if f.name in cols else props.get(f.name, pa.nulls(n, f.type)) for f in schema]
    return pa.Table.from_arrays([a.cast(f.type) for a, f in zip(arrays, schema, strict=True)], schema=schema)


def edge_facts(clean: pa.Table, spec: EdgeFacts) -> pa.Table:
    """One fact per event (not yet summed); relationships without an amount carry 0."""
    rows = _rows(clean, spec.event_types, spec.dst)
    n = len(rows)
    time = rows.column("time")
    amount = rows.column(spec.amount) if spec.amount else pa.array(np.zeros(n))
    return pa.Table.from_arrays(
        [rows.column(spec.src), rows.column(spec.dst), pa.array(np.ones(n, dtype=np.int64)), time, time,
         amount, amount],
        schema=edge_fact_schema(),
    )  # fmt: skip


def batch_facts(clean: pa.Table) -> tuple[dict[NodeLabel, pa.Table], dict[RelType, pa.Table]]:
    """A clean table's node and relationship facts, summed per key within the batch."""
    nodes: dict[NodeLabel, list[pa.Table]] = {}
    for spec in NODE_FACTS:
        nodes.setdefault(spec.label, []).append(node_facts(clean, spec))
    edges = {spec.rel: presum_edge_facts(edge_facts(clean, spec)) for spec in EDGE_FACTS}
    summed = {label: presum_node_facts(pa.concat_tables(parts)) for label, parts in nodes.items()}
    return (
        {k: v for k, v in summed.items() if len(v)},
        {k: v for k, v in edges.items() if len(v)},
    )


class _FactsFn(beam.DoFn):
    """Emits ``(label, facts)`` on the main output and ``(rel, facts)`` on ``edges``, per batch.

    Fact tables go to a shuffle, so they travel as Arrow IPC bytes (:func:`to_ipc`).
    """

    def process(self, clean: pa.Table) -> Iterator[object]:
        nodes, edges = batch_facts(clean)
        for label, table in nodes.items():
            yield (label.value, to_ipc(table))
        for rel, table in edges.items():
            yield pvalue.TaggedOutput(EDGES, (rel.value, to_ipc(table)))


class ExtractGraph(beam.PTransform):
    """Clean event tables → node facts (main, ``nodes``) and relationship facts (``edges``)."""

    def expand(self, events: beam.PCollection) -> pvalue.DoOutputsTuple:
        return events | "Facts" >> beam.ParDo(_FactsFn()).with_outputs(EDGES, main=NODES)
