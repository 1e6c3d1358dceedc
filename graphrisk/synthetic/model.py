"""The generator's in-memory model: events as integer columns that point into entity tables.

An event row holds indices (user, device, IP, merchant, card) rather than strings, so ten
million events cost a few hundred MB and sorting them is one ``argsort``; the strings are only
looked up per hourly partition when it is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000

ONBOARDING, LOGIN, PAYMENT = 0, 1, 2
# Index 3 is only ever written by the invalid-record injector.
EVENT_TYPE_NAMES = ("onboarding", "login", "payment", "logout")


@dataclass
class EventBlock:
    """A batch of events as parallel arrays; ``-1`` (or NaN for amounts) means absent."""

    etype: np.ndarray  # int8, index into EVENT_TYPE_NAMES
    user: np.ndarray  # int32 user index
    time: np.ndarray  # int64 epoch ms
    device: np.ndarray  # int32 device index
    ip: np.ndarray  # int32 IP index
    merchant: np.ndarray  # int32 merchant index
    counterparty: np.ndarray  # int32 user index
    card: np.ndarray  # int32 card index
    amount: np.ndarray  # float64
    currency: np.ndarray  # int8 index into vocab.CURRENCIES

    @classmethod
    def make(cls, etype: int, user: np.ndarray, time: np.ndarray, **columns: np.ndarray) -> EventBlock:
        """A block of ``len(user)`` events of one type; columns not given are absent."""
        n = len(user)
        dtypes = {f.name: _DTYPES[f.name] for f in fields(cls)}
        values: dict[str, np.ndarray] = {}
        for name, dtype in dtypes.items():
            if name == "etype":
                values[name] = np.full(n, etype, dtype=dtype)
            elif name == "user":
                values[name] = np.asarray(user, dtype=dtype)
            elif name == "time":
                values[name] = np.asarray(time, dtype=dtype)
            elif name in columns:
                values[name] = np.broadcast_to(np.asarray(columns[name], dtype=dtype), (n,)).copy()
            else:
                values[name] = np.full(n, np.nan if name == "amount" else -1, dtype=dtype)
        unknown = set(columns) - set(dtypes)
        if unknown:
            raise TypeError(f"unknown event columns: {sorted(unknown)}")
        return cls(**values)

    @classmethod
    def concat(cls, blocks: list[EventBlock]) -> EventBlock:
        """All rows of ``blocks``, in order."""
        return cls(**{f.name: np.concatenate([getattr(b, f.name) for b in blocks]) for f in fields(cls)})

    def take(self, idx: np.ndarray) -> EventBlock:
        """The rows ``idx``."""
        return EventBlock(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def __len__(self) -> int:
        return len(self.user)


_DTYPES = {
    "etype": np.int8,
    "user": np.int32,
    "time": np.int64,
    "device": np.int32,
    "ip": np.int32,
    "merchant": np.int32,
    "counterparty": np.int32,
    "card": np.int32,
    "amount": np.float64,
    "currency": np.int8,
}


@dataclass
class StringTable:
    """An append-only table of string columns whose rows events refer to by index."""

    names: tuple[str, ...]
    _chunks: dict[str, list[pa.Array]] = field(default_factory=dict)
    _cache: dict[str, pa.Array] = field(default_factory=dict)
    size: int = 0

    def add(self, **columns: pa.Array) -> np.ndarray:
        """Append rows; returns their indices."""
        if set(columns) != set(self.names):
            raise TypeError(f"expected columns {self.names}, got {sorted(columns)}")
        n = len(next(iter(columns.values())))
        for name, values in columns.items():
            if len(values) != n:
                raise ValueError("columns differ in length")
            self._chunks.setdefault(name, []).append(values.cast(pa.string()))
        self._cache.clear()
        idx = np.arange(self.size, self.size + n, dtype=np.int32)
        self.size += n
        return idx

    def column(self, name: str) -> pa.Array:
        """One column as a single Arrow array."""
        if name not in self._cache:
            chunks = self._chunks.get(name, [])
            self._cache[name] = pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())
        return self._cache[name]
