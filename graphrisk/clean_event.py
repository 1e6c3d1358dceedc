"""Normalisation and keyed hashing of one event: the per-record form of the clean event.

:func:`clean_event` defines the clean event. It lives here, with the other shared
pseudonymisation code, because two stages need it: the pipeline (:mod:`pipelines.clean_batch`
computes the same thing for whole batches, and tests check they agree) and online scoring of a
single applicant (:mod:`gnn.online`, through the API).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from graphrisk.errors import NormalisationError
from graphrisk.events import LoginEvent, OnboardingEvent, PaymentEvent
from graphrisk.graph_schema import NodeLabel
from graphrisk.normalise import (
    email_domain,
    ip_version,
    normalise_address,
    normalise_card,
    normalise_document,
    normalise_email,
    normalise_ip,
    normalise_phone,
)
from graphrisk.pseudonymise import Pseudonymiser


class CurrencyError(ValueError):
    """A payment's currency has no configured exchange rate."""


class RepeatedIdentifiers:
    """Tokens for identifiers that recur across a user's events (IPs, cards, fingerprints), memoised.

    Logins and payments repeat the same few values per user, and parsing plus HMAC is most
    of the per-event cost. Failures are not cached: they raise every time.
    """

    def __init__(self, hasher: Pseudonymiser, size: int = 1 << 18) -> None:
        self.hasher = hasher
        self.ip = lru_cache(maxsize=size)(self._ip)
        self.card = lru_cache(maxsize=size)(self._card)
        self.fingerprint = lru_cache(maxsize=size)(self._fingerprint)

    def _ip(self, raw: str) -> tuple[str, str, int]:
        ip = normalise_ip(raw)
        return self.hasher.token(NodeLabel.IP, ip.value), ip.masked, ip_version(ip.value)

    def _card(self, raw: str) -> tuple[str, str]:
        card = normalise_card(raw)
        return self.hasher.token(NodeLabel.CARD, card.value), card.masked

    def _fingerprint(self, raw: str) -> str:
        return self.hasher.token(NodeLabel.DEVICE, raw)


def clean_event(
    event: OnboardingEvent | LoginEvent | PaymentEvent,
    ids: RepeatedIdentifiers,
    fx_rates: dict[str, float],
    default_phone_region: str | None = None,
) -> dict[str, Any]:
    """The pseudonymised, normalised form of one event.

    Raises:
        NormalisationError: a sensitive field cannot be normalised (names the field).
    """
    hasher = ids.hasher
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "event_type": event.event_type.value,
        "user_id": event.user_id,
        "time": event.time,
    }
    if isinstance(event, OnboardingEvent | LoginEvent):
        ip_token, ip_masked, ip_v = ids.ip(event.ip)
        fp = event.device.fingerprint
        out |= {
            "device_id": event.device.id,
            "device_fp": ids.fingerprint(fp) if fp else None,
            "ip": ip_token,
            "ip_masked": ip_masked,
            "ip_version": ip_v,
        }
    if isinstance(event, OnboardingEvent):
        doc = normalise_document(
            event.document.type.value, event.document.number, event.document.issuing_country
        )
        email = normalise_email(event.email)
        phone = normalise_phone(event.phone, default_phone_region)
        a = event.address
        addr = normalise_address(a.line1, a.city, a.postcode, a.country)
        out |= {
            "doc": hasher.token(NodeLabel.DOCUMENT, doc.value),
            "doc_masked": doc.masked,
            "doc_type": event.document.type.value,
            "doc_country": event.document.issuing_country,
            "email": hasher.token(NodeLabel.EMAIL, email.value),
            "email_masked": email.masked,
            "email_domain": email_domain(email.value),
            "phone": hasher.token(NodeLabel.PHONE, phone.value),
            "phone_masked": phone.masked,
            "phone_cc": phone.country_code,
            "address": hasher.token(NodeLabel.ADDRESS, addr.value),
            "address_masked": addr.masked,
            "country": a.country,
        }
    elif isinstance(event, PaymentEvent):
        rate = fx_rates.get(event.currency)
        if rate is None:
            raise NormalisationError("currency", f"no exchange rate configured for {event.currency}")
        out |= {
            "amount": round(event.amount * rate, 4),
            "merchant_id": event.merchant_id,
            "merchant_category": event.merchant_category,
            "counterparty_id": event.counterparty_id,
        }
        if event.card_number:
            card_token, card_masked = ids.card(event.card_number)
            out |= {"card": card_token, "card_masked": card_masked}
    return out
