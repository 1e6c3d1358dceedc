"""Deprecated: graphs of event files come from :mod:`pipelines.event_tables` (the pipeline's code).

This module used to build snapshot tables with pandas and its own identifier canonicalisation,
a second graph builder that benchmarks and tests measured instead of the production path. What
is left forwards to the pipeline path for callers not yet moved; import
:func:`pipelines.event_tables.snapshot_tables` and :func:`pipelines.event_tables.write_snapshot`
instead.
"""

from __future__ import annotations

from pathlib import Path

from graphrisk.config import load_settings
from pipelines.event_log import EdgeTables, NodeTables
from pipelines.event_tables import snapshot_tables, write_snapshot

__all__ = ["snapshot_from_events", "write_snapshot"]


def snapshot_from_events(events_dir: Path, exact: bool = True) -> tuple[NodeTables, EdgeTables]:
    """:func:`pipelines.event_tables.snapshot_tables` with the current settings.

    ``exact`` is ignored: identifiers always go through the pipeline's normalisers and keyed
    pseudonymisation (there is no cheaper canonical form any more).
    """
    del exact
    return snapshot_tables(Path(events_dir), load_settings())
