"""What a converter wrote, and the output checks shared by the converters."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True)
class ConversionReport:
    """Counts of a conversion.

    ``expected_invalid`` counts rows that were written unchanged although they will fail
    validation (and be dead-lettered), by reason.
    """

    source: Path
    out_dir: Path
    rows: int
    events: int
    expected_invalid: dict[str, int]
    labels: dict[str, int]
    partitions: int
    files: list[Path] = field(repr=False)


def prepare_out_dir(out_dir: Path, overwrite: bool, converter: str) -> None:
    """Create ``out_dir``, replacing an earlier output of ``converter`` there.

    Raises:
        FileExistsError: if ``out_dir`` holds other events and ``overwrite`` is false.
    """
    events = out_dir / "events"
    if events.exists() and any(events.iterdir()):
        if not (overwrite or _written_by(out_dir) == converter):
            raise FileExistsError(f"{events} holds events not written by this converter; pass overwrite=True")
        # Stale partitions of an earlier, longer conversion would otherwise stay behind.
        shutil.rmtree(events)
        shutil.rmtree(out_dir / "labels", ignore_errors=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)


def _written_by(out_dir: Path) -> str | None:
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest.get("converter") if isinstance(manifest, dict) else None


def check_start(start: datetime) -> int:
    """``start`` in epoch milliseconds; it must carry a time zone."""
    if start.tzinfo is None:
        raise ValueError("start must be time-zone aware")
    return int(start.timestamp() * 1000)


def write_manifest(report: ConversionReport, converter: str, start: datetime, **extra: object) -> None:
    """``out_dir/manifest.json``: where the data came from and the counts."""
    manifest = {
        "converter": converter,
        "source": str(report.source),
        "start": start.astimezone(UTC).isoformat(),
        "rows": report.rows,
        "events": report.events,
        "expected_invalid": report.expected_invalid,
        "labels": report.labels,
        "partitions": report.partitions,
        **extra,
        "files": [p.relative_to(report.out_dir).as_posix() for p in report.files],
    }
    (report.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
