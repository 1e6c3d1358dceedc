"""Normalisation and keyed hashing of sensitive fields: the last stage that sees raw values.

Out of here come clean event tables in which every sensitive identifier is a keyed hash and
everything an investigator may see is masked. Nothing downstream (the store, the snapshot,
logs) can leak what it never receives.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue

from graphrisk.clean_event import RepeatedIdentifiers, clean_event
from graphrisk.pseudonymise import Pseudonymiser
from graphrisk.secrets import SecretRef
from pipelines.clean_batch import clean_batch
from pipelines.parse import EventBatch
from pipelines.records import STAGE_PSEUDONYMISE, DeadLetter

DEAD = "dead"


def pseudonymise_batch(
    batch: EventBatch, ids: RepeatedIdentifiers, fx_rates: dict[str, float], default_phone_region: str | None
) -> tuple[pa.Table, list[DeadLetter]]:
    """A batch's clean table, and a dead letter (with the record as read) per row that cannot be cleaned."""
    clean, errors = clean_batch(batch.table, batch.source, ids, fx_rates, default_phone_region)
    lines = batch.table.column("line").to_pylist() if errors else []
    rows = batch.table.column("row").to_pylist() if errors else []
    dead = [
        DeadLetter(
            batch.source, lines[i], STAGE_PSEUDONYMISE, exc.field, exc.reason, batch.chunk.record(rows[i])
        )
        for i, exc in sorted(errors.items())
    ]
    return clean, dead


class _PseudonymiseFn(beam.DoFn):
    def __init__(self, key: SecretRef, fx_rates: dict[str, float], default_phone_region: str | None) -> None:
        # A reference, not the key: the DoFn is pickled into the pipeline the runner keeps.
        self._key = key
        self._fx = fx_rates
        self._region = default_phone_region
        self._ids: RepeatedIdentifiers | None = None

    def setup(self) -> None:
        self._ids = RepeatedIdentifiers(Pseudonymiser(self._key.resolve().encode()))

    def process(self, batch: EventBatch) -> Iterator[Any]:
        assert self._ids is not None
        clean, dead = pseudonymise_batch(batch, self._ids, self._fx, self._region)
        for letter in dead:
            yield pvalue.TaggedOutput(DEAD, letter)
        # The raw records stay behind; only their origin travels on, for duplicate reports.
        if len(clean):
            yield clean


class PseudonymiseEvents(beam.PTransform):
    """:class:`EventBatch` → clean event tables (``CLEAN_SCHEMA``); unnormalisable records → ``dead``.

    ``key`` says where each worker reads the pseudonymisation key (:mod:`graphrisk.secrets`).
    """

    def __init__(
        self, key: SecretRef, fx_rates: dict[str, float], default_phone_region: str | None = None
    ) -> None:
        super().__init__()
        self._fn = _PseudonymiseFn(key, fx_rates, default_phone_region)

    def expand(self, events: beam.PCollection) -> pvalue.DoOutputsTuple:
        return events | "NormaliseAndHash" >> beam.ParDo(self._fn).with_outputs(DEAD, main="events")


__all__ = ["PseudonymiseEvents", "RepeatedIdentifiers", "clean_event"]
