"""Normalisers for sensitive identifiers.

Two spellings of the same identifier must give the same node, so each value is put in a
canonical form before it is hashed: lower-case emails, E.164 phones, upper-case document
numbers without separators, compressed IPs, digits-only card numbers. Each normaliser is
idempotent (``f(f(x)) == f(x)``), which the property tests check.

Each also returns a masked form that an investigator may see without the raw value.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import NamedTuple

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from graphrisk.errors import NormalisationError

_DOC_STRIP = re.compile(r"[\s\-./]")
_SPACES = re.compile(r"\s+")
_ADDR_PUNCT = re.compile(r"[^\w\s]")


class Normalised(NamedTuple):
    """A canonical value (to hash, never to store) and a masked form (safe to store)."""

    value: str
    masked: str


# Plain ASCII addresses that email_validator surely accepts unchanged (dot-atom local part,
# letter-only top-level domain, no punycode label, not a special-use name): the common case,
# normalised without the validator, which costs ~60 µs an address. Tests check the two agree.
_PLAIN_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9_+\-]{1,64}(?:\.[A-Za-z0-9_+\-]+)*)@"
    r"(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")


def _plain_email(text: str) -> tuple[str, str] | None:
    m = _PLAIN_EMAIL.fullmatch(text)
    if m is None or len(text) > 254 or len(m["local"]) > 64 or "--" in m["domain"]:
        return None
    domain = m["domain"].lower()
    if domain.rsplit(".", 1)[1] in _SPECIAL_USE:
        return None
    return m["local"], domain


def normalise_email(raw: str) -> Normalised:
    """Lower-case, IDNA-normalised email; the mask keeps the first letter and the domain."""
    plain = _plain_email(raw.strip())
    if plain is not None:
        local, domain = plain
        return Normalised(f"{local.lower()}@{domain}", f"{local[0].lower()}***@{domain}")
    try:
        info = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise NormalisationError("email", str(exc)) from None
    local, domain = info.normalized.rsplit("@", 1)
    value = f"{local.lower()}@{domain.lower()}"
    return Normalised(value, f"{local[0].lower()}***@{domain.lower()}")


def email_domain(normalised_email: str) -> str:
    """The domain of a normalised email (not sensitive on its own, useful as a feature)."""
    return normalised_email.rsplit("@", 1)[1]


class NormalisedPhone(NamedTuple):
    """An E.164 number, its masked form and its calling code (parsed once: parsing is the cost)."""

    value: str
    masked: str
    country_code: int


def normalise_phone(raw: str, default_region: str | None = None) -> NormalisedPhone:
    """E.164 phone number; numbers without a ``+`` prefix are read in ``default_region``."""
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise NormalisationError("phone", str(exc)) from None
    if not phonenumbers.is_possible_number(parsed):
        raise NormalisationError("phone", f"not a possible phone number for +{parsed.country_code}")
    value = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return NormalisedPhone(value, f"+{parsed.country_code}***{value[-2:]}", int(parsed.country_code))


def normalise_document(doc_type: str, number: str, issuing_country: str) -> Normalised:
    """Document identity ``type|country|NUMBER`` with separators and case removed."""
    cleaned = _DOC_STRIP.sub("", unicodedata.normalize("NFKC", number)).upper()
    if len(cleaned) < 3 or not cleaned.isalnum():
        raise NormalisationError("document.number", "needs at least 3 letters or digits and nothing else")
    value = f"{doc_type}|{issuing_country.upper()}|{cleaned}"
    return Normalised(value, f"{doc_type}/{issuing_country.upper()}/***{cleaned[-2:]}")


def normalise_ip(raw: str) -> Normalised:
    """Compressed IPv4/IPv6 text; IPv4-mapped IPv6 addresses become plain IPv4."""
    try:
        addr = ipaddress.ip_address(raw.strip())
    except ValueError as exc:
        raise NormalisationError("ip", str(exc)) from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    value = addr.compressed
    if addr.version == 4:
        masked = ".".join(value.split(".")[:2]) + ".*.*"
    else:
        masked = ":".join(addr.exploded.split(":")[:2]) + ":*"
    return Normalised(value, masked)


def ip_version(normalised_ip: str) -> int:
    """4 or 6."""
    return ipaddress.ip_address(normalised_ip).version


def normalise_card(raw: str) -> Normalised:
    """Digits-only card number (PAN), checked with the Luhn algorithm."""
    digits = re.sub(r"[\s\-]", "", raw)
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise NormalisationError("card_number", "must be 12 to 19 digits")
    if not luhn_valid(digits):
        raise NormalisationError("card_number", "fails the Luhn check")
    return Normalised(digits, f"****{digits[-4:]}")


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def normalise_address(line1: str, city: str, postcode: str | None, country: str) -> Normalised:
    """Case-folded, punctuation-free, single-spaced ``line1|city|POSTCODE|CC``."""

    def clean(text: str) -> str:
        text = unicodedata.normalize("NFKC", text).casefold()
        return _SPACES.sub(" ", _ADDR_PUNCT.sub(" ", text)).strip()

    pc = _SPACES.sub("", (postcode or "")).upper()
    value = f"{clean(line1)}|{clean(city)}|{pc}|{country.upper()}"
    if not clean(line1):
        raise NormalisationError("address.line1", "is empty after normalisation")
    return Normalised(value, f"***, {clean(city).title()}, {country.upper()}")
