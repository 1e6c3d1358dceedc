"""The raw event schema, version 1.

Three event types arrive as JSONL, CSV or Parquet files. Nested objects (``document``,
``device``, ``address``) may be given nested (JSON, Parquet structs) or flattened with dotted
column names (``document.number``), which is how they appear in CSV.

Times are ISO-8601 strings with a time zone, or integers of epoch milliseconds; both become
epoch milliseconds (UTC), because the graph store returns aware datetimes as naive ones.

Sensitive fields (document numbers, emails, phones, card numbers, IPs, addresses) are raw here
and exist only inside the pipeline process; ``graphrisk.pseudonymise`` hashes them before any
write.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

SCHEMA_VERSION = 1

# Free text stored as given (a merchant's category) is bounded: one 1 MB category would ride along
# in every store write and snapshot file that touches its merchant.
MAX_FREE_TEXT = 128

# Characters removed from free text before it is validated: the control (Cc) and format (Cf)
# characters of Unicode 14: C0 and C1 controls, DEL, and the invisible characters that reorder or
# hide text (bidi overrides, zero-width marks, tags, the BOM). Whitespace controls (tab, line
# breaks) become a space, so words stay apart. Written out, not looked up by category, so the
# columnar check (pipelines/validate.py, RE2) and the model use the very same set.
CONTROL_RANGES: tuple[tuple[int, int], ...] = (
    (0x0, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD),
    (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F),
    (0x202A, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)  # fmt: skip
# The same set as a character class for RE2 (Arrow's compute functions) and for Python's re.
CONTROL_CLASS = "[" + "".join(f"\\x{{{lo:x}}}-\\x{{{hi:x}}}" for lo, hi in CONTROL_RANGES) + "]"
_CONTROL = re.compile("[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in CONTROL_RANGES) + "]")

# 2000-01-01 .. 2100-01-01: anything outside is a unit mistake (seconds vs ms) or garbage.
_MIN_MS = 946_684_800_000
_MAX_MS = 4_102_444_800_000


class EventType(StrEnum):
    """The kinds of raw event graphrisk ingests."""

    ONBOARDING = "onboarding"
    LOGIN = "login"
    PAYMENT = "payment"


class DocumentType(StrEnum):
    """Identity document kinds accepted at onboarding."""

    PASSPORT = "passport"
    NATIONAL_ID = "national_id"
    DRIVING_LICENCE = "driving_licence"
    RESIDENCE_PERMIT = "residence_permit"


def _to_epoch_ms(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, int | float):
        ms = int(value)
    elif isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetime has no time zone")
        ms = int(value.timestamp() * 1000)
    elif isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            ms = int(text)
        else:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError as exc:
                raise ValueError(f"not an ISO-8601 time or epoch milliseconds: {value!r}") from exc
            if parsed.tzinfo is None:
                raise ValueError("ISO-8601 time has no time zone")
            ms = int(parsed.astimezone(UTC).timestamp() * 1000)
    else:
        raise ValueError(f"unsupported time value of type {type(value).__name__}")
    if not _MIN_MS <= ms < _MAX_MS:
        raise ValueError(f"time {ms} is outside 2000..2100 in epoch milliseconds")
    return ms


def _blank_to_none(value: Any) -> Any:
    # CSV and Parquet give empty strings / NaN where JSON would omit the field.
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _without_controls(value: Any) -> Any:
    # Whitespace controls become a space (then leading and trailing ones are stripped as before).
    if isinstance(value, str) and _CONTROL.search(value):
        return _CONTROL.sub(lambda m: " " if m.group().isspace() else "", value)
    return value


def _amount(value: Any) -> Any:
    # Strict where lax parsing misleads: true would read as 1.00, and NaN / Infinity would be
    # reported as out of range (or, NaN, as missing) instead of as what they are.
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return value  # pydantic names it: not a valid number
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(
            f"{'NaN' if number != number else 'Infinity'} is not an amount: it must be a finite number"
        )
    return value


EpochMs = Annotated[int, BeforeValidator(_to_epoch_ms)]
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


_BLANK = BeforeValidator(_blank_to_none)
_NO_CONTROLS = BeforeValidator(_without_controls)
# Optional free text, bounded. Before-validators run right to left: controls go first, so text
# of controls alone is blank, and blank is absent.
Fingerprint = Annotated[Annotated[str, Field(max_length=512)] | None, _BLANK, _NO_CONTROLS]
Postcode = Annotated[Annotated[str, Field(max_length=32)] | None, _BLANK, _NO_CONTROLS]
CardNumber = Annotated[Annotated[str, Field(max_length=64)] | None, _BLANK, _NO_CONTROLS]
Category = Annotated[Annotated[str, Field(max_length=MAX_FREE_TEXT)] | None, _BLANK, _NO_CONTROLS]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class IdentityDocument(_Model):
    """An identity document presented at onboarding."""

    type: DocumentType
    number: Annotated[str, _NO_CONTROLS, Field(min_length=3, max_length=64)]
    issuing_country: Country


class DeviceInfo(_Model):
    """The device an event came from: our device id plus its browser/app fingerprint."""

    id: Id
    fingerprint: Fingerprint = None


class PostalAddress(_Model):
    """A postal address as entered by the applicant."""

    line1: Annotated[str, _NO_CONTROLS, Field(min_length=1, max_length=256)]
    city: Annotated[str, _NO_CONTROLS, Field(min_length=1, max_length=128)]
    postcode: Postcode = None
    country: Country


def _as_int(value: Any) -> Any:
    # CSV gives "1"; a Literal[1] does not coerce strings.
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class _EventBase(_Model):
    event_id: Id
    schema_version: Annotated[Literal[1], BeforeValidator(_as_int)] = SCHEMA_VERSION
    user_id: Id
    time: EpochMs


class OnboardingEvent(_EventBase):
    """A completed onboarding application."""

    event_type: Literal[EventType.ONBOARDING] = EventType.ONBOARDING
    document: IdentityDocument
    device: DeviceInfo
    email: Annotated[str, _NO_CONTROLS, Field(min_length=3, max_length=320)]
    phone: Annotated[str, _NO_CONTROLS, Field(min_length=4, max_length=32)]
    ip: Annotated[str, Field(min_length=2, max_length=64)]
    address: PostalAddress


class LoginEvent(_EventBase):
    """A successful login."""

    event_type: Literal[EventType.LOGIN] = EventType.LOGIN
    device: DeviceInfo
    ip: Annotated[str, Field(min_length=2, max_length=64)]


class PaymentEvent(_EventBase):
    """A card payment to a merchant, or a P2P transfer to another user.

    Exactly one of ``merchant_id`` and ``counterparty_id`` is set.
    """

    event_type: Literal[EventType.PAYMENT] = EventType.PAYMENT
    amount: Annotated[float, BeforeValidator(_amount), Field(gt=0, lt=1e9)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    merchant_id: Annotated[Id | None, BeforeValidator(_blank_to_none)] = None
    counterparty_id: Annotated[Id | None, BeforeValidator(_blank_to_none)] = None
    card_number: CardNumber = None
    merchant_category: Category = None

    @model_validator(mode="after")
    def _one_destination(self) -> PaymentEvent:
        if (self.merchant_id is None) == (self.counterparty_id is None):
            raise ValueError("exactly one of merchant_id and counterparty_id must be set")
        if self.counterparty_id is not None and self.counterparty_id == self.user_id:
            raise ValueError("a transfer to oneself is not a P2P transfer")
        return self


Event = Annotated[OnboardingEvent | LoginEvent | PaymentEvent, Field(discriminator="event_type")]
_EVENT_ADAPTER: TypeAdapter[OnboardingEvent | LoginEvent | PaymentEvent] = TypeAdapter(Event)


def unflatten(record: dict[str, Any]) -> dict[str, Any]:
    """Turn dotted keys (``document.number``) into nested dicts, dropping empty values.

    Columnar formats (CSV, Parquet) hold every event type's columns in one table, so a login
    row carries an empty ``amount``; empty means absent.
    """
    out: dict[str, Any] = {}
    # A payment's amount given as NaN is a value to reject as such, not a blank column.
    nan_is_value = record.get("event_type") == EventType.PAYMENT
    for key, value in record.items():
        if value is None or (_blank_to_none(value) is None and not (nan_is_value and key == "amount")):
            continue
        if "." not in key:
            out[key] = value
            continue
        head, _, tail = key.partition(".")
        sub = out.setdefault(head, {})
        if isinstance(sub, dict):
            sub[tail] = value
    return out


class FieldError(ValueError):
    """One invalid field of a record, with a dotted path and a reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_event(record: dict[str, Any]) -> OnboardingEvent | LoginEvent | PaymentEvent:
    """Validate one raw record into a typed event.

    Raises:
        FieldError: naming the first offending field (dotted path) and why.
    """
    try:
        return _EVENT_ADAPTER.validate_python(unflatten(record))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        # The discriminator's branch name ("payment") is noise in the path.
        if loc and loc[0] in EventType.__members__.values():
            loc = loc[1:]
        field = ".".join(loc) or "event_type"
        raise FieldError(field, first["msg"]) from None


def event_json_schema() -> dict[str, Any]:
    """The JSON schema of version 1 events, for documentation and producers."""
    return _EVENT_ADAPTER.json_schema()
