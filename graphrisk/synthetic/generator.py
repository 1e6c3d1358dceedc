"""``generate``: draw a population with planted fraud rings and write it as hourly event files.

Output::

    out_dir/events/dt=YYYY-MM-DD/hr=HH/part-00000.<ext>   events of that hour, sorted by time
    out_dir/labels/users.parquet      user_id, is_fraud, ring_id, typology
    out_dir/labels/rings.parquet      ring_id, typology, size, burst_start (bust-outs)
    out_dir/labels/merchants.parquet  merchant_id, merchant_category, is_fraud, ring_id
    out_dir/manifest.json             parameters and counts

Events live in memory as integer columns (about 45 bytes an event); their strings are looked
up one day at a time as that day's partitions are written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from graphrisk.eventfiles import EVENT_SCHEMA, Fmt, write_partitioned
from graphrisk.synthetic import fields, noise, vocab
from graphrisk.synthetic.activity import everyday_events
from graphrisk.synthetic.model import DAY_MS, EVENT_TYPE_NAMES, ONBOARDING, EventBlock
from graphrisk.synthetic.population import World, build_world, child_rng
from graphrisk.synthetic.rings import TYPOLOGIES, PlantedRings, plant_rings

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
_CURRENCY_NAMES = list(vocab.CURRENCIES) + [c.lower() for c in vocab.CURRENCIES]


@dataclass(frozen=True)
class GenerationReport:
    """What ``generate`` wrote.

    ``events`` counts generated events by type (invalid ones under their original type);
    ``rows_written`` adds the duplicate deliveries.
    """

    out_dir: Path
    users: int
    events: dict[str, int]
    rings: dict[str, int]
    fraud_users: int
    fraud_merchants: int
    invalid_records: int
    invalid_by_kind: dict[str, int]
    duplicate_records: int
    partitions: int
    files: list[Path] = field(repr=False)

    @property
    def total_events(self) -> int:
        """Distinct events (event ids)."""
        return sum(self.events.values())

    @property
    def rows_written(self) -> int:
        """Rows in the event files, duplicates included."""
        return self.total_events + self.duplicate_records


def generate(
    out_dir: Path,
    users: int,
    seed: int,
    days: int = 14,
    start: datetime = DEFAULT_START,
    fmt: Fmt = "parquet",
    progress: Callable[[int], None] | None = None,
    *,
    fraud_rate: float = 0.02,
    invalid_rate: float = 0.001,
    duplicate_rate: float = 0.001,
    overwrite: bool = False,
) -> GenerationReport:
    """Generate ``users`` users' events over ``days`` days from ``start`` into ``out_dir``.

    The same arguments give byte-identical output. ``progress`` is called after each day is
    written with how many users' worth of events are written so far (rows written scaled to
    ``users``, ending at ``users``). ``fraud_rate`` is the target share of users in rings
    (about 2 %; small populations get at least one ring of each typology). An earlier output of
    ``generate`` in ``out_dir`` is replaced.

    Raises:
        FileExistsError: if ``out_dir`` holds other events and ``overwrite`` is false.
        ValueError: on out-of-range arguments.
    """
    out_dir = Path(out_dir)
    _check(users, seed, days, start, fmt, fraud_rate, invalid_rate, duplicate_rate)
    _prepare(out_dir, overwrite)
    start_ms = int(start.timestamp() * 1000)

    world = build_world(seed, users, start_ms, days)
    planted = plant_rings(world, fraud_rate)
    events = EventBlock.concat([everyday_events(world), planted.events])
    events = events.take(np.argsort(events.time, kind="stable"))
    by_type = {name: int(np.sum(events.etype == i)) for i, name in enumerate(EVENT_TYPE_NAMES[:3])}

    rng = child_rng(seed, "noise")
    kinds = noise.choose_invalid(rng, events.etype, invalid_rate)
    arrival = events.time.copy()
    noise.corrupt(rng, events, kinds, users, world.merchant_table.size)
    duplicate = noise.choose_duplicates(rng, kinds, duplicate_rate)

    lookup = _Lookup.of(world)
    files: list[Path] = []
    written = 0
    total_rows = len(events) + int(duplicate.sum())
    day_starts = start_ms + np.arange(days + 1) * DAY_MS
    bounds = np.searchsorted(arrival, day_starts)
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        rows = np.repeat(np.arange(a, b), 1 + duplicate[a:b])
        if len(rows) == 0:
            continue
        table = _assemble(events, rows, lookup, seed, kinds)
        files += write_partitioned(table, out_dir, fmt, partition_time=arrival[rows])
        written += len(rows)
        if progress is not None:
            progress(users * written // total_rows)

    _write_labels(out_dir, world, planted)
    report = GenerationReport(
        out_dir=out_dir,
        users=users,
        events=by_type,
        rings={t: sum(r.typology == t for r in planted.rings) for t in TYPOLOGIES},
        fraud_users=int(sum(len(r.members) for r in planted.rings)),
        fraud_merchants=int(sum(len(r.merchants) for r in planted.rings)),
        invalid_records=int(np.count_nonzero(kinds)),
        invalid_by_kind={k: int(np.sum(kinds == i + 1)) for i, k in enumerate(noise.INVALID_KINDS)},
        duplicate_records=int(duplicate.sum()),
        partitions=len(files),
        files=files,
    )
    _write_manifest(out_dir, report, seed, days, start, fmt, fraud_rate, invalid_rate, duplicate_rate)
    return report


def _check(
    users: int, seed: int, days: int, start: datetime, fmt: str, fraud_rate: float, invalid_rate: float,
    duplicate_rate: float,
) -> None:  # fmt: skip
    if users < 100:
        raise ValueError("users must be at least 100 (rings need honest users around them)")
    if seed < 0:
        raise ValueError("seed must be non-negative")
    if not 1 <= days <= 366:
        raise ValueError("days must be between 1 and 366")
    if start.tzinfo is None:
        raise ValueError("start must be time-zone aware")
    if fmt not in ("parquet", "jsonl", "csv"):
        raise ValueError(f"unknown format {fmt!r}")
    for name, value, hi in (("fraud_rate", fraud_rate, 0.2), ("invalid_rate", invalid_rate, 0.5),
                            ("duplicate_rate", duplicate_rate, 0.5)):  # fmt: skip
        if not 0 <= value <= hi:
            raise ValueError(f"{name} must be between 0 and {hi}")


def _prepare(out_dir: Path, overwrite: bool) -> None:
    events_dir = out_dir / "events"
    if events_dir.exists() and any(events_dir.iterdir()):
        if not (overwrite or _is_own_output(out_dir)):
            raise FileExistsError(
                f"{events_dir} holds events not written by the generator; pass overwrite=True"
            )
        # Stale hours from a longer earlier run would otherwise survive next to the new ones.
        shutil.rmtree(events_dir)
        shutil.rmtree(out_dir / "labels", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _is_own_output(out_dir: Path) -> bool:
    # An earlier run's output is ours to replace; anything else is someone's data.
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == "graphrisk.synthetic"


@dataclass(frozen=True)
class _Lookup:
    # The string tables events point into, each as one Arrow array.
    user_ids: pa.Array
    identity: dict[str, pa.Array]
    device_ids: pa.Array
    fingerprints: pa.Array
    ips: pa.Array
    merchant_ids: pa.Array
    merchant_categories: pa.Array
    cards: pa.Array

    @classmethod
    def of(cls, world: World) -> _Lookup:
        return cls(
            user_ids=world.user_ids,
            identity=world.identity,
            device_ids=world.device_table.column("id"),
            fingerprints=world.device_table.column("fingerprint"),
            ips=world.ip_table.column("ip"),
            merchant_ids=world.merchant_table.column("id"),
            merchant_categories=world.merchant_table.column("category"),
            cards=world.card_table.column("number"),
        )


def _assemble(ev: EventBlock, rows: np.ndarray, lk: _Lookup, seed: int, kinds: np.ndarray) -> pa.Table:
    etype = ev.etype[rows]
    user = ev.user[rows]
    onboarding_user = np.where(etype == ONBOARDING, user, -1)
    ident = {name: fields.take(col, onboarding_user) for name, col in lk.identity.items()}
    blank = kinds[rows] == noise.BLANK_EMAIL
    if blank.any():
        ident["email"] = pc.if_else(pa.array(blank), "", ident["email"])
    device = ev.device[rows]
    merchant = ev.merchant[rows]
    amount = ev.amount[rows]
    columns = {
        # Event ids number events in time order; a duplicate delivery repeats its original's id.
        "event_id": fields.concat(f"e{seed}-", fields.to_str(rows)),
        "event_type": fields.take(EVENT_TYPE_NAMES, etype.astype(np.int64)),
        "schema_version": pa.array(np.ones(len(rows), dtype=np.int64)),
        "user_id": fields.take(lk.user_ids, user),
        "time": pa.array(ev.time[rows]),
        "device.id": fields.take(lk.device_ids, device),
        "device.fingerprint": fields.take(lk.fingerprints, device),
        "ip": fields.take(lk.ips, ev.ip[rows]),
        "amount": pa.array(amount, mask=np.isnan(amount)),
        "currency": fields.take(_CURRENCY_NAMES, ev.currency[rows].astype(np.int64)),
        "merchant_id": fields.take(lk.merchant_ids, merchant),
        "counterparty_id": fields.take(lk.user_ids, ev.counterparty[rows]),
        "card_number": fields.take(lk.cards, ev.card[rows]),
        "merchant_category": fields.take(lk.merchant_categories, merchant),
        **ident,
    }
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)


def _write_labels(out_dir: Path, world: World, planted: PlantedRings) -> None:
    labels = out_dir / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    rings = planted.rings
    ring_of = planted.user_ring(world.n).astype(np.int64)
    ring_ids = [r.ring_id for r in rings]
    typologies = [r.typology for r in rings]
    users = pa.table(
        {
            "user_id": world.user_ids,
            "is_fraud": pa.array((ring_of >= 0).astype(np.int8)),
            "ring_id": fields.take(ring_ids, ring_of),
            "typology": fields.take(typologies, ring_of),
        }
    )
    pq.write_table(users, labels / "users.parquet", compression="zstd")
    pq.write_table(
        pa.table(
            {
                "ring_id": pa.array(ring_ids, pa.string()),
                "typology": pa.array(typologies, pa.string()),
                "size": pa.array([len(r.members) for r in rings], pa.int64()),
                "burst_start": pa.array(
                    [r.burst_start if r.burst_start >= 0 else None for r in rings], pa.int64()
                ),
            }
        ),
        labels / "rings.parquet",
    )
    merchant_ring = np.full(world.merchant_table.size, -1, dtype=np.int64)
    for i, r in enumerate(rings):
        merchant_ring[r.merchants] = i
    pq.write_table(
        pa.table(
            {
                "merchant_id": world.merchant_table.column("id"),
                "merchant_category": world.merchant_table.column("category"),
                "is_fraud": pa.array((merchant_ring >= 0).astype(np.int8)),
                "ring_id": fields.take(ring_ids, merchant_ring),
            }
        ),
        labels / "merchants.parquet",
    )


def _write_manifest(
    out_dir: Path, report: GenerationReport, seed: int, days: int, start: datetime, fmt: str,
    fraud_rate: float, invalid_rate: float, duplicate_rate: float,
) -> None:  # fmt: skip
    counts = {k: v for k, v in asdict(report).items() if k not in ("out_dir", "files", "users")}
    counts["rows_written"] = report.rows_written
    manifest = {
        "generator": "graphrisk.synthetic",
        "schema_version": 1,
        "seed": seed,
        "users": report.users,
        "days": days,
        "start": start.astimezone(UTC).isoformat(),
        "format": fmt,
        "fraud_rate": fraud_rate,
        "invalid_rate": invalid_rate,
        "duplicate_rate": duplicate_rate,
        "counts": counts,
        "files": [p.relative_to(out_dir).as_posix() for p in report.files],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
