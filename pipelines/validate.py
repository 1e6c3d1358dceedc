"""Vectorised validation of flat event columns: which rows the v1 schema surely accepts.

:func:`graphrisk.events.parse_event` (pydantic) is the definition of a valid event. Running it
per record is most of the cost of parsing, and nearly every record is valid, so a chunk is
checked column by column first. The check is *sound, not complete*: a row it accepts is one
pydantic accepts with the very same values (no whitespace to strip, no coercion that changes
a value), and anything it is unsure about (a rejection, a blank, an unusual type, an unknown
column) goes through ``parse_event``, which gives the exact field and reason for the dead letter.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from graphrisk.events import (
    _MAX_MS,
    _MIN_MS,
    CONTROL_CLASS,
    MAX_FREE_TEXT,
    DocumentType,
    EventType,
    LoginEvent,
    OnboardingEvent,
    PaymentEvent,
)

# The canonical flat columns of a validated event, with their types.
EVENT_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("event_type", pa.string()), ("user_id", pa.string()),
    ("time", pa.int64()),
    ("document.type", pa.string()), ("document.number", pa.string()),
    ("document.issuing_country", pa.string()),
    ("device.id", pa.string()), ("device.fingerprint", pa.string()),
    ("email", pa.string()), ("phone", pa.string()), ("ip", pa.string()),
    ("address.line1", pa.string()), ("address.city", pa.string()), ("address.postcode", pa.string()),
    ("address.country", pa.string()),
    ("amount", pa.float64()), ("currency", pa.string()), ("merchant_id", pa.string()),
    ("counterparty_id", pa.string()), ("card_number", pa.string()), ("merchant_category", pa.string()),
])  # fmt: skip
_BASE = ("event_id", "event_type", "user_id", "time", "schema_version")
_KNOWN = frozenset(EVENT_SCHEMA.names) | {"schema_version"}

# Per event type: the fields it must have and may have (beyond the base ones); every other
# known field must be absent (the models forbid extra fields).
_REQUIRED: dict[str, tuple[str, ...]] = {
    EventType.ONBOARDING: ("document.type", "document.number", "document.issuing_country", "device.id",
                           "email", "phone", "ip", "address.line1", "address.city", "address.country"),
    EventType.LOGIN: ("device.id", "ip"),
    EventType.PAYMENT: ("amount", "currency"),
}  # fmt: skip
_OPTIONAL: dict[str, tuple[str, ...]] = {
    EventType.ONBOARDING: ("device.fingerprint", "address.postcode"),
    EventType.LOGIN: ("device.fingerprint",),
    EventType.PAYMENT: ("merchant_id", "counterparty_id", "card_number", "merchant_category"),
}

# Field rules, mirroring the constraints in graphrisk.events. Columns checked with the same rule
# are checked in one call: a compute call costs more to set up (a regex to compile) than to run
# on a file's worth of rows.
_ID_FIELDS = ("event_id", "user_id", "device.id", "merchant_id", "counterparty_id")
_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
_COUNTRY_FIELDS = ("document.issuing_country", "address.country")
_LENGTHS: dict[str, tuple[int, int]] = {
    "document.number": (3, 64), "email": (3, 320), "phone": (4, 32), "ip": (2, 64),
    "address.line1": (1, 256), "address.city": (1, 128),
    "device.fingerprint": (1, 512), "address.postcode": (1, 32),
    "card_number": (1, 64), "merchant_category": (1, MAX_FREE_TEXT),
    "document.type": (1, sys.maxsize),
}  # fmt: skip
_DOC_TYPES = pa.array([d.value for d in DocumentType])


def _is_string(col: pa.Array) -> bool:
    return pa.types.is_string(col.type) or pa.types.is_large_string(col.type)


def _bools(cond: pa.Array) -> np.ndarray:
    """A per-row condition as a numpy mask; null (unknown) counts as not satisfied."""
    return pc.fill_null(cond, False).to_numpy(zero_copy_only=False)


def _per_column(cols: dict[str, pa.Array], names: tuple[str, ...], check: Any) -> dict[str, np.ndarray]:
    """``check`` run once over the string columns ``names`` laid end to end, split back per column."""
    present = [n for n in names if n in cols and _is_string(cols[n])]
    if not present:
        return {}
    n = len(cols[present[0]])
    joined = pa.concat_arrays([cols[name].cast(pa.string()) for name in present])
    flat = _bools(check(joined))
    return {name: flat[i * n : (i + 1) * n] for i, name in enumerate(present)}


def _trimmed(values: pa.Array) -> pa.Array:
    # Arrow trims every character Python's str.strip() does (tested), so an unchanged value
    # has nothing pydantic's strip would remove either.
    return pc.equal(pc.utf8_trim_whitespace(values), values)


def _field_checks(cols: dict[str, pa.Array], n: int) -> dict[str, np.ndarray]:
    """Per known field: present and valid as it is. Absent columns and wrong types give False."""
    ok: dict[str, np.ndarray] = {}
    ok |= _per_column(
        cols,
        _ID_FIELDS,
        lambda v: pc.and_(pc.match_substring_regex(v, _ID_PATTERN), pc.less_equal(pc.utf8_length(v), 128)),
    )
    ok |= _per_column(cols, _COUNTRY_FIELDS, lambda v: pc.match_substring_regex(v, r"^[A-Z]{2}$"))
    ok |= _per_column(cols, ("currency",), lambda v: pc.match_substring_regex(v, r"^[A-Z]{3}$"))
    # Text with a control character is left to the model, which removes them (a changed value).
    ok |= _per_column(
        cols,
        tuple(_LENGTHS),
        lambda v: pc.and_(_trimmed(v), pc.invert(pc.match_substring_regex(v, CONTROL_CLASS))),
    )
    for name, (lo, hi) in _LENGTHS.items():
        if name in ok:
            length = pc.utf8_length(cols[name])
            ok[name] &= _bools(pc.and_(pc.greater_equal(length, lo), pc.less_equal(length, hi)))
    if "document.type" in ok:
        ok["document.type"] &= _bools(pc.is_in(cols["document.type"], value_set=_DOC_TYPES))
    time = cols.get("time")
    if time is not None and pa.types.is_integer(time.type):
        ok["time"] = _bools(pc.and_(pc.greater_equal(time, _MIN_MS), pc.less(time, _MAX_MS)))
    amount = cols.get("amount")
    if amount is not None and (pa.types.is_floating(amount.type) or pa.types.is_integer(amount.type)):
        as_float = pc.cast(amount, pa.float64())
        ok["amount"] = _bools(pc.and_(pc.greater(as_float, 0.0), pc.less(as_float, 1e9)))  # NaN fails
    version = cols.get("schema_version")
    if version is None or pa.types.is_null(version.type):
        ok["schema_version"] = np.ones(n, dtype=bool)
    elif pa.types.is_integer(version.type):
        ok["schema_version"] = _bools(pc.or_kleene(pc.is_null(version), pc.equal(version, 1)))
    return ok


# Text a number column may hold (CSV holds only text) that Arrow's cast and the event model read
# as the same number: plain ASCII digits, no sign where none is valid, no exponent or padding.
_NUMERIC_TEXT: dict[str, tuple[str, pa.DataType]] = {
    "time": (r"^-?[0-9]{1,18}$", pa.int64()),
    "amount": (r"^[0-9]{1,15}(\.[0-9]{1,15})?$", pa.float64()),
    "schema_version": (r"^[0-9]{1,9}$", pa.int64()),
}


def typed_view(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """``table`` as the fast path reads it, and the rows it must leave to ``parse_event``.

    Text files carry blanks for absent fields and numbers as text. Blank text becomes null
    (``parse_event`` drops blank values: the same event). A number column held as text is cast
    row by row where the text is plain digits; a row with other text there (an ISO time,
    ``"1e3"``) is returned as unsure, so it is parsed per record from the record as read. The view serves
    the vectorised check only; dead letters and the per-record path never see it.
    """
    unsure = np.zeros(len(table), dtype=bool)
    cols: dict[str, pa.Array] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if _is_string(col):
            blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0)
            col = pc.if_else(blank, pa.scalar(None, col.type), col)
            if name in _NUMERIC_TEXT:
                pattern, kind = _NUMERIC_TEXT[name]
                plain = pc.match_substring_regex(col, pattern)
                unsure |= _bools(pc.and_kleene(pc.is_valid(col), pc.invert(plain)))
                col = pc.cast(pc.if_else(plain, col, pa.scalar(None, col.type)), kind)
        cols[name] = col
    return pa.table(cols), unsure


def surely_valid(table: pa.Table) -> np.ndarray:
    """Per row of flat event columns: whether ``parse_event`` surely accepts it unchanged.

    ``False`` means "not sure", never "invalid": those rows go through ``parse_event``.
    """
    n = len(table)
    no = np.zeros(n, dtype=bool)
    cols = {name: table.column(name).combine_chunks() for name in table.column_names}
    kind = cols.get("event_type")
    if not n or kind is None or not _is_string(kind):
        return no
    absent = {name: col.is_null().to_numpy(zero_copy_only=False) for name, col in cols.items()}
    ok = _field_checks(cols, n)
    valid = ok.get("schema_version", no).copy()
    for name in ("event_id", "user_id", "time"):
        valid &= ok.get(name, no)
    for name in cols:
        if name not in _KNOWN:
            valid &= absent[name]
    by_type = np.zeros(n, dtype=bool)
    for event_type in EventType:
        this = _bools(pc.equal(kind, event_type.value))
        for name in _REQUIRED[event_type]:
            this &= ok.get(name, no)
        for name in _OPTIONAL[event_type]:
            this &= absent.get(name, ~no) | ok.get(name, no)
        allowed = {*_BASE, *_REQUIRED[event_type], *_OPTIONAL[event_type]}
        for name in _KNOWN - allowed:
            this &= absent.get(name, ~no)
        if event_type is EventType.PAYMENT:
            # Exactly one destination, and no transfer to oneself.
            this &= absent.get("merchant_id", ~no) != absent.get("counterparty_id", ~no)
            cp, user = cols.get("counterparty_id"), cols.get("user_id")
            if cp is not None and user is not None and _is_string(cp) and _is_string(user):
                this &= ~_bools(pc.equal(cp, user))
        by_type |= this
    return valid & by_type


def event_columns(event: OnboardingEvent | LoginEvent | PaymentEvent) -> dict[str, Any]:
    """A parsed event as one row of :data:`EVENT_SCHEMA` (absent fields are ``None``)."""
    row: dict[str, Any] = dict.fromkeys(EVENT_SCHEMA.names)
    row |= {"event_id": event.event_id, "event_type": event.event_type.value, "user_id": event.user_id,
            "time": event.time}  # fmt: skip
    if isinstance(event, OnboardingEvent | LoginEvent):
        row |= {"device.id": event.device.id, "device.fingerprint": event.device.fingerprint, "ip": event.ip}
    if isinstance(event, OnboardingEvent):
        d, a = event.document, event.address
        row |= {
            "document.type": d.type.value, "document.number": d.number,
            "document.issuing_country": d.issuing_country, "email": event.email, "phone": event.phone,
            "address.line1": a.line1, "address.city": a.city, "address.postcode": a.postcode,
            "address.country": a.country,
        }  # fmt: skip
    elif isinstance(event, PaymentEvent):
        row |= {
            "amount": event.amount, "currency": event.currency, "merchant_id": event.merchant_id,
            "counterparty_id": event.counterparty_id, "card_number": event.card_number,
            "merchant_category": event.merchant_category,
        }  # fmt: skip
    return row


def fast_rows(table: pa.Table, mask: np.ndarray) -> pa.Table:
    """The rows ``mask`` selects, as :data:`EVENT_SCHEMA` columns (missing ones all null)."""
    picked = table.filter(pa.array(mask))
    cols = []
    for f in EVENT_SCHEMA:
        col = picked.column(f.name) if f.name in picked.column_names else None
        cols.append(pa.nulls(len(picked), f.type) if col is None else pc.cast(col, f.type))
    return pa.Table.from_arrays(cols, schema=EVENT_SCHEMA)
