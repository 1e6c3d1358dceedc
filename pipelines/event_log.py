"""The pipeline's stages run in-process, without Beam: event files → one clean event log.

The Beam graph build (:class:`pipelines.graph_build.BuildEntityGraph`) aggregates events into
per-batch totals, which is all the store and the snapshot need. Scoring *as of a moment* needs
more: which facts existed before that moment. This module runs the very same stage functions
the Beam transforms call (:func:`pipelines.read.read_chunks`, :func:`pipelines.parse.parse_chunk`,
:func:`pipelines.pseudonymise.pseudonymise_batch`, :func:`pipelines.dedupe.dedupe_table`,
:mod:`pipelines.extract`'s fact specs) and keeps one row per fact with its time, so a replay can
fold any prefix of history into snapshot tables with the pipeline's own merges
(:func:`pipelines.aggregate.merge_node_tables`, :func:`pipelines.aggregate.merge_edge_tables`).

``tests/test_event_log.py`` holds the tables this path folds equal to the snapshot the Beam
pipeline writes for the same files. Nothing here holds raw personal data: the log is the
pseudonymised clean table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from graphrisk.arrow import arrow_to_pandas
from graphrisk.clean_event import RepeatedIdentifiers
from graphrisk.config import Settings
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel, RelType
from graphrisk.pseudonymise import Pseudonymiser
from pipelines.aggregate import edge_fact_schema, merge_edge_tables, merge_node_tables, node_fact_schema
from pipelines.clean_batch import CLEAN_SCHEMA
from pipelines.dedupe import dedupe_table
from pipelines.extract import EDGE_FACTS, NODE_FACTS, edge_facts, node_facts
from pipelines.parse import FutureEventLimit, parse_chunk
from pipelines.pseudonymise import pseudonymise_batch
from pipelines.read import read_chunks
from pipelines.records import DeadLetter
from pipelines.snapshot import edge_schema, node_schema

NodeTables = dict[NodeLabel, pd.DataFrame]
EdgeTables = dict[RelType, pd.DataFrame]


@dataclass
class EventLog:
    """Unique clean events of some files, in time order, and how every record was accounted for.

    ``read == accepted + rejected + duplicates`` (checked by :meth:`reconcile`).
    """

    clean: pa.Table
    read: int = 0
    rejected: int = 0
    duplicates: int = 0
    dead: list[DeadLetter] = field(default_factory=list, repr=False)

    @property
    def accepted(self) -> int:
        """Unique events kept."""
        return len(self.clean)

    def reconcile(self) -> None:
        """Raise when a record was neither accepted, rejected nor a duplicate."""
        if self.read != self.accepted + self.rejected + self.duplicates:
            raise ValueError(
                f"event log does not reconcile: read {self.read} != accepted {self.accepted} + "
                f"rejected {self.rejected} + duplicates {self.duplicates}"
            )


def read_event_log(
    input_root: Path,
    relpaths: Iterable[str],
    settings: Settings,
    progress: Callable[[int], None] | None = None,
    future: FutureEventLimit | None = None,
) -> EventLog:
    """Read, validate, pseudonymise and deduplicate event files, as one Beam batch would.

    Args:
        input_root: Folder the ``relpaths`` are relative to.
        relpaths: Event files (JSONL, CSV, Parquet).
        settings: Pseudonymisation key, exchange rates and phone region.
        progress: Called with 1 after each file.
        future: Events dated past this limit are rejected, as a batch ingested at its
            ``ingested_at_ms`` rejects them (``None``: no check, for history already vetted).
    """
    ids = RepeatedIdentifiers(Pseudonymiser(settings.pseudonymisation_key.get_secret_value().encode()))
    parts: list[pa.Table] = []
    log = EventLog(CLEAN_SCHEMA.empty_table())
    for rel in sorted(relpaths):
        for chunk in read_chunks(input_root, rel):
            log.read += chunk.read_count
            batch, dead = parse_chunk(chunk, future)
            log.dead += dead
            if not len(batch.table):
                continue
            clean, dead = pseudonymise_batch(batch, ids, settings.fx_rates, settings.default_phone_region)
            log.dead += dead
            parts.append(clean)
        if progress is not None:
            progress(1)
    unique, log.duplicates, conflicts = dedupe_table(pa.concat_tables(parts) if parts else log.clean)
    log.dead += conflicts
    log.rejected = len(log.dead)
    log.clean = unique.sort_by([("time", "ascending"), ("event_id", "ascending")])
    log.reconcile()
    return log


@dataclass
class FactLog:
    """Every node and relationship fact of an event log, one row per event, in time order.

    Node facts keep the pipeline's ``props_time`` column, so folding a prefix picks properties
    exactly as the batch merge does. ``*_times`` are the facts' times as NumPy arrays, for
    slicing a prefix with a binary search.
    """

    nodes: dict[NodeLabel, pa.Table]
    edges: dict[RelType, pa.Table]

    def __post_init__(self) -> None:
        self.node_times = {k: t.column("first_seen").to_numpy() for k, t in self.nodes.items()}
        self.edge_times = {k: t.column("first_seen").to_numpy() for k, t in self.edges.items()}

    @property
    def start(self) -> int | None:
        """Time of the first fact (epoch ms), ``None`` for an empty log."""
        firsts = [int(t[0]) for t in [*self.node_times.values(), *self.edge_times.values()] if len(t)]
        return min(firsts) if firsts else None

    @staticmethod
    def of(clean: pa.Table) -> FactLog:
        """Facts of a clean event table (any order), by the pipeline's fact specs."""
        nodes: dict[NodeLabel, list[pa.Table]] = {label: [] for label in NodeLabel}
        for spec in NODE_FACTS:
            nodes[spec.label].append(node_facts(clean, spec))
        node_tables = {
            label: _by_time(pa.concat_tables(parts) if parts else node_fact_schema(label).empty_table())
            for label, parts in nodes.items()
        }
        edge_tables: dict[RelType, pa.Table] = {}
        for rel in EDGE_TYPES:
            parts = [edge_facts(clean, spec) for spec in EDGE_FACTS if spec.rel == rel]
            edge_tables[rel] = _by_time(
                pa.concat_tables(parts) if parts else edge_fact_schema().empty_table()
            )
        return FactLog(node_tables, edge_tables)

    def between(self, start_ms: int | None, end_ms: int) -> FactLog:
        """Facts with ``start_ms <= time < end_ms`` (``None``: from the beginning)."""

        def cut(table: pa.Table, times: np.ndarray) -> pa.Table:
            lo = 0 if start_ms is None else int(np.searchsorted(times, start_ms, side="left"))
            hi = int(np.searchsorted(times, end_ms, side="left"))
            return table.slice(lo, hi - lo)

        return FactLog(
            {k: cut(t, self.node_times[k]) for k, t in self.nodes.items()},
            {k: cut(t, self.edge_times[k]) for k, t in self.edges.items()},
        )


def _by_time(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, [("first_seen", "ascending")]))


class GraphTimeline:
    """Snapshot tables of the graph as of successive moments, each folded from the previous one.

    ``advance(t)`` adds the facts in ``[previous t, t)`` with the pipeline's merges, so an
    hourly replay costs one hour's facts plus a merge per table, not a rebuild of history.
    The tables have the snapshot's columns (:func:`pipelines.snapshot.load_snapshot`).
    """

    def __init__(self, facts: FactLog) -> None:
        self.facts = facts
        self.as_of: int | None = None
        self._nodes = {label: node_fact_schema(label).empty_table() for label in NodeLabel}
        self._edges = {rel: edge_schema().empty_table() for rel in EDGE_TYPES}

    def advance(self, t_ms: int) -> None:
        """Fold in every fact before ``t_ms`` not yet folded.

        Raises:
            ValueError: ``t_ms`` is earlier than the current moment (a timeline only moves on).
        """
        if self.as_of is not None and t_ms < self.as_of:
            raise ValueError(f"timeline is at {self.as_of}; cannot go back to {t_ms}")
        delta = self.facts.between(self.as_of, t_ms)
        for label, table in delta.nodes.items():
            if len(table):
                kept, touched = _split_touched(self._nodes[label], table, ["id"])
                merged = _merge_nodes(label, [touched, table])
                self._nodes[label] = pa.concat_tables([kept, merged]).sort_by("id")
        for rel, table in delta.edges.items():
            if len(table):
                kept, touched = _split_touched(self._edges[rel], table, ["src", "dst"])
                merged = merge_edge_tables([touched, table]).cast(kept.schema)
                self._edges[rel] = pa.concat_tables([kept, merged]).sort_by(
                    [("src", "ascending"), ("dst", "ascending")]
                )
        self.as_of = t_ms

    def tables(self) -> tuple[NodeTables, EdgeTables]:
        """The graph as of :attr:`as_of`, as pandas tables in the snapshot's columns."""
        nodes = {
            label: arrow_to_pandas(t.drop_columns(["props_time"]).cast(node_schema(label)))
            for label, t in self._nodes.items()
        }
        edges = {rel: arrow_to_pandas(t.cast(edge_schema())) for rel, t in self._edges.items()}
        return nodes, edges


def _key(table: pa.Table, columns: list[str]) -> pa.Array:
    if len(columns) == 1:
        return table.column(columns[0])
    return pc.binary_join_element_wise(*(table.column(c) for c in columns), "\x1f")


def _split_touched(state: pa.Table, delta: pa.Table, columns: list[str]) -> tuple[pa.Table, pa.Table]:
    """``state``'s rows whose key the delta does not touch, and those it does.

    Only touched rows need the merge: an hour's facts touch a few thousand of a graph's rows,
    and merging the whole state each hour made the fold quadratic in the replay's length.
    """
    hit = pc.is_in(_key(state, columns), value_set=pc.unique(_key(delta, columns)))
    return state.filter(pc.invert(hit)), state.filter(hit)


def _merge_nodes(label: NodeLabel, parts: list[pa.Table]) -> pa.Table:
    """:func:`merge_node_tables`, keeping each node's ``props_time`` for the next fold."""
    schema = node_fact_schema(label)
    merged = merge_node_tables(label, [p.cast(schema) for p in parts])
    # props_time = the latest time any fact carried properties: the max over the parts.
    key = pa.schema([schema.field("id"), schema.field("props_time")])
    pt = pa.concat_tables([p.select(key.names).cast(key) for p in parts])
    latest = pt.group_by("id", use_threads=False).aggregate([("props_time", "max")])
    order = pc.index_in(merged.column("id"), value_set=latest.column("id"))
    props_time = latest.column("props_time_max").take(order)
    return merged.add_column(4, "props_time", props_time).cast(schema)


def tables_as_of(facts: FactLog, t_ms: int) -> tuple[NodeTables, EdgeTables]:
    """The graph from every fact before ``t_ms``, folded at once (what a timeline reaches)."""
    timeline = GraphTimeline(facts)
    timeline.advance(t_ms)
    return timeline.tables()
