"""Normalisation and keyed hashing of a batch of events, column by column.

The columnar form of :func:`pipelines.pseudonymise.clean_event`: the same normalisers and
the same keyed hash, but each distinct value of a batch is normalised and hashed once, and the
results are spread back to the rows with a vectorised ``take``. Rows whose value cannot be
normalised are reported with the field and reason ``clean_event`` would raise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from graphrisk.clean_event import RepeatedIdentifiers
from graphrisk.errors import NormalisationError
from graphrisk.graph_schema import NodeLabel
from graphrisk.normalise import (
    email_domain,
    normalise_address,
    normalise_document,
    normalise_email,
    normalise_phone,
)

# The clean event as columns: clean_event's keys (null where an event type has none), plus origin.
CLEAN_SCHEMA = pa.schema([
    ("source", pa.string()), ("line", pa.int64()),
    ("event_id", pa.string()), ("event_type", pa.string()), ("user_id", pa.string()), ("time", pa.int64()),
    ("device_id", pa.string()), ("device_fp", pa.string()),
    ("ip", pa.string()), ("ip_masked", pa.string()), ("ip_version", pa.int64()),
    ("doc", pa.string()), ("doc_masked", pa.string()), ("doc_type", pa.string()), ("doc_country", pa.string()),
    ("email", pa.string()), ("email_masked", pa.string()), ("email_domain", pa.string()),
    ("phone", pa.string()), ("phone_masked", pa.string()), ("phone_cc", pa.int64()),
    ("address", pa.string()), ("address_masked", pa.string()), ("country", pa.string()),
    ("amount", pa.float64()), ("merchant_id", pa.string()), ("merchant_category", pa.string()),
    ("counterparty_id", pa.string()), ("card", pa.string()), ("card_masked", pa.string()),
])  # fmt: skip
# Clean columns copied from the validated event columns unchanged.
_COPIED = {
    "event_id": "event_id", "event_type": "event_type", "user_id": "user_id", "time": "time",
    "device_id": "device.id", "doc_type": "document.type", "doc_country": "document.issuing_country",
    "country": "address.country", "merchant_id": "merchant_id", "merchant_category": "merchant_category",
    "counterparty_id": "counterparty_id",
}  # fmt: skip

Outputs = tuple[Any, ...]


class _Errors:
    """The first normalisation error of each row, in the order ``clean_event`` meets them."""

    def __init__(self) -> None:
        self.by_row: dict[int, NormalisationError] = {}

    def add(self, rows: np.ndarray, exc: NormalisationError) -> None:
        for row in rows.tolist():
            self.by_row.setdefault(row, exc)


def _distinct(values: pa.Array, fn: Callable[[Any], Outputs], width: int, errors: _Errors) -> list[pa.Array]:
    """``fn`` once per distinct non-null value; its ``width`` outputs spread back to the rows."""
    encoded = values.dictionary_encode()
    results: list[Outputs] = []
    indices = encoded.indices
    for code, value in enumerate(encoded.dictionary.to_pylist()):
        try:
            results.append(fn(value))
        except NormalisationError as exc:
            results.append((None,) * width)
            errors.add(
                np.flatnonzero(pc.fill_null(pc.equal(indices, code), False).to_numpy(zero_copy_only=False)),
                exc,
            )
    return [pa.array([r[k] for r in results]).take(indices) for k in range(width)]


def _per_row(
    columns: Sequence[pa.Array],
    rows: np.ndarray,
    n: int,
    fn: Callable[..., Outputs],
    width: int,
    errors: _Errors,
) -> list[pa.Array]:
    """``fn`` over the selected rows' values of several columns, memoised on the values."""
    out: list[list[Any]] = [[None] * n for _ in range(width)]
    memo: dict[tuple[Any, ...], Outputs | NormalisationError] = {}
    taken = [col.take(pa.array(rows)).to_pylist() for col in columns]
    for row, key in zip(rows.tolist(), zip(*taken, strict=True), strict=True):
        if key not in memo:
            try:
                memo[key] = fn(*key)
            except NormalisationError as exc:
                memo[key] = exc
        result = memo[key]
        if isinstance(result, NormalisationError):
            errors.add(np.array([row]), result)
            continue
        for k in range(width):
            out[k][row] = result[k]
    return [pa.array(o) for o in out]


def clean_batch(
    events: pa.Table,
    source: str,
    ids: RepeatedIdentifiers,
    fx_rates: dict[str, float],
    default_phone_region: str | None = None,
) -> tuple[pa.Table, dict[int, NormalisationError]]:
    """Clean events of a batch of valid event columns, and the rows that cannot be cleaned.

    Returns the :data:`CLEAN_SCHEMA` table of the cleanable rows and, per row index of
    ``events`` that cannot be cleaned, the error naming the field.
    """
    n = len(events)
    col = {name: events.column(name).combine_chunks() for name in events.column_names}
    errors = _Errors()
    hasher = ids.hasher
    out: dict[str, pa.Array] = {name: col[src] for name, src in _COPIED.items()}
    out["source"] = pa.array([source] * n, pa.string())
    out["line"] = col["line"]

    out["ip"], out["ip_masked"], out["ip_version"] = _distinct(col["ip"], ids.ip, 3, errors)
    (out["device_fp"],) = _distinct(col["device.fingerprint"], lambda v: (ids.fingerprint(v),), 1, errors)

    onboarding = np.flatnonzero(pc.equal(col["event_type"], "onboarding").to_numpy(zero_copy_only=False))

    def document(doc_type: str, number: str, country: str) -> Outputs:
        doc = normalise_document(doc_type, number, country)
        return hasher.token(NodeLabel.DOCUMENT, doc.value), doc.masked

    out["doc"], out["doc_masked"] = _per_row(
        [col["document.type"], col["document.number"], col["document.issuing_country"]],
        onboarding, n, document, 2, errors,
    )  # fmt: skip

    def email(raw: str) -> Outputs:
        e = normalise_email(raw)
        return hasher.token(NodeLabel.EMAIL, e.value), e.masked, email_domain(e.value)

    out["email"], out["email_masked"], out["email_domain"] = _distinct(col["email"], email, 3, errors)

    def phone(raw: str) -> Outputs:
        p = normalise_phone(raw, default_phone_region)
        return hasher.token(NodeLabel.PHONE, p.value), p.masked, p.country_code

    out["phone"], out["phone_masked"], out["phone_cc"] = _distinct(col["phone"], phone, 3, errors)

    def address(line1: str, city: str, postcode: str | None, country: str) -> Outputs:
        a = normalise_address(line1, city, postcode, country)
        return hasher.token(NodeLabel.ADDRESS, a.value), a.masked

    out["address"], out["address_masked"] = _per_row(
        [col["address.line1"], col["address.city"], col["address.postcode"], col["address.country"]],
        onboarding, n, address, 2, errors,
    )  # fmt: skip

    def rate(currency: str) -> Outputs:
        if currency not in fx_rates:
            raise NormalisationError("currency", f"no exchange rate configured for {currency}")
        return (fx_rates[currency],)

    (rates,) = _distinct(col["currency"], rate, 1, errors)
    # Python's round on each product, exactly as clean_event does (numpy rounds differently).
    out["amount"] = pa.array(
        [None if a is None or r is None else round(a * r, 4)
         for a, r in zip(col["amount"].to_pylist(), rates.to_pylist(), strict=True)],
        pa.float64(),
    )  # fmt: skip
    out["card"], out["card_masked"] = _distinct(col["card_number"], ids.card, 2, errors)

    table = pa.Table.from_arrays([out[f.name].cast(f.type) for f in CLEAN_SCHEMA], schema=CLEAN_SCHEMA)
    if errors.by_row:
        keep = np.ones(n, dtype=bool)
        keep[list(errors.by_row)] = False
        table = table.filter(pa.array(keep))
    return table, errors.by_row
