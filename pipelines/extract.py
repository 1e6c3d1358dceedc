"""Entities and relationships out of clean events.

Each event yields *facts*: ``(label, id) → (first, last, count, props_time, props)`` for
nodes and ``(rel, src, dst) → (first, last, count, amount_total, amount_max)`` for
relationships. Facts are summed per key afterwards, so a batch's write volume follows the
number of distinct entities, not of events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from graphrisk.graph_schema import NodeLabel, RelType
from pipelines.aggregate import fold_edge_fact, fold_node_fact

NodeFact = tuple[tuple[str, str], tuple[int, int, int, int, dict[str, Any]]]
EdgeFact = tuple[tuple[str, str, str], tuple[int, int, int, float, float]]
NODES = "nodes"
EDGES = "edges"


def _props(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def event_facts(ev: dict[str, Any]) -> tuple[list[NodeFact], list[EdgeFact]]:
    """The node and relationship facts of one clean event."""
    t = int(ev["time"])
    user = ev["user_id"]
    nodes: list[NodeFact] = []
    edges: list[EdgeFact] = []

    def node(label: NodeLabel, node_id: str, **props: Any) -> None:
        nodes.append(((label.value, node_id), (t, t, 1, t, _props(**props))))

    def edge(rel: RelType, src: str, dst: str, amount: float = 0.0) -> None:
        edges.append(((rel.value, src, dst), (t, t, 1, amount, amount)))

    kind = ev["event_type"]
    if kind == "onboarding":
        node(NodeLabel.USER, user, onboarded_at=t, country=ev["country"])
    else:
        node(NodeLabel.USER, user)
    if kind in ("onboarding", "login"):
        node(NodeLabel.DEVICE, ev["device_id"], fingerprint=ev["device_fp"])
        edge(RelType.USED_DEVICE, user, ev["device_id"])
        node(NodeLabel.IP, ev["ip"], version=ev["ip_version"], masked=ev["ip_masked"])
        edge(RelType.USED_IP, user, ev["ip"])
    if kind == "onboarding":
        node(NodeLabel.DOCUMENT, ev["doc"], doc_type=ev["doc_type"], issuing_country=ev["doc_country"],
             masked=ev["doc_masked"])  # fmt: skip
        edge(RelType.HAS_DOCUMENT, user, ev["doc"])
        node(NodeLabel.EMAIL, ev["email"], domain=ev["email_domain"], masked=ev["email_masked"])
        edge(RelType.HAS_EMAIL, user, ev["email"])
        node(NodeLabel.PHONE, ev["phone"], country_code=ev["phone_cc"], masked=ev["phone_masked"])
        edge(RelType.HAS_PHONE, user, ev["phone"])
        node(NodeLabel.ADDRESS, ev["address"], country=ev["country"], masked=ev["address_masked"])
        edge(RelType.LIVES_AT, user, ev["address"])
    elif kind == "payment":
        amount = float(ev["amount"])
        if ev.get("merchant_id"):
            node(NodeLabel.MERCHANT, ev["merchant_id"], category=ev.get("merchant_category"))
            edge(RelType.PAID, user, ev["merchant_id"], amount)
        else:
            node(NodeLabel.USER, ev["counterparty_id"])
            edge(RelType.TRANSFERRED_TO, user, ev["counterparty_id"], amount)
        if ev.get("card"):
            node(NodeLabel.CARD, ev["card"], masked=ev["card_masked"])
            edge(RelType.USED_CARD, user, ev["card"])
    return nodes, edges


class _FactsFn(beam.DoFn):
    """Emits facts pre-summed per bundle.

    Most events touch entities other events of the bundle touch too (a user's logins, a
    merchant's payments), so summing here, with the same associative merges the aggregation
    uses, cuts the elements crossing the shuffle several-fold.
    """

    def start_bundle(self) -> None:
        self._nodes: dict[tuple[str, str], list[Any]] = {}
        self._edges: dict[tuple[str, str, str], list[Any]] = {}

    def process(self, ev: dict[str, Any]) -> Iterator[Any]:
        nodes, edges = event_facts(ev)
        for key, fact in nodes:
            self._nodes[key] = fold_node_fact(self._nodes.get(key), fact)
        for key, fact in edges:
            self._edges[key] = fold_edge_fact(self._edges.get(key), fact)
        return iter(())

    def finish_bundle(self) -> Iterator[WindowedValue]:
        window = GlobalWindow()
        ts = window.max_timestamp()
        for key, acc in self._nodes.items():
            yield WindowedValue((key, tuple(acc)), ts, [window])
        for key, acc in self._edges.items():
            yield pvalue.TaggedOutput(EDGES, WindowedValue((key, tuple(acc)), ts, [window]))
        self._nodes, self._edges = {}, {}


class ExtractGraph(beam.PTransform):
    """Clean events → node facts (main, ``nodes``) and relationship facts (``edges``)."""

    def expand(self, events: beam.PCollection) -> pvalue.DoOutputsTuple:
        return events | "Facts" >> beam.ParDo(_FactsFn()).with_outputs(EDGES, main=NODES)
