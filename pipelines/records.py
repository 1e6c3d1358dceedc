"""Plain records passed between pipeline stages, and the dead-letter record.

Elements are dicts and tuples rather than classes: Beam encodes those with its fast
primitive coder, while arbitrary classes fall back to pickle at every shuffle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RawRecord:
    """One input record and where it came from (``line`` is 1-based; a row number for Parquet)."""

    source: str
    line: int
    record: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A rejected record with the reason, enough to find, fix and replay it.

    Dead letters keep the raw record (that is what makes a replay possible), so the dead-letter
    directory holds personal data: keep it under the same access control as the input files.
    """

    source: str
    line: int
    stage: str
    field: str
    reason: str
    record: dict[str, Any] | None

    def to_json(self) -> str:
        """One JSONL line."""
        return json.dumps(asdict(self), default=str, sort_keys=True)


# Stage names used in dead letters and run reports.
STAGE_READ = "read"
STAGE_PARSE = "parse"
STAGE_PSEUDONYMISE = "pseudonymise"
STAGE_DEDUPE = "dedupe"
