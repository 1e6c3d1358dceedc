"""Property tests for the normalisers: canonical, idempotent, separator- and case-insensitive."""

from __future__ import annotations

import pytest
from email_validator import validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrisk.errors import NormalisationError
from graphrisk.graph_schema import NodeLabel
from graphrisk.normalise import (
    _PLAIN_EMAIL,
    _plain_email,
    luhn_valid,
    normalise_address,
    normalise_card,
    normalise_document,
    normalise_email,
    normalise_ip,
    normalise_phone,
)
from graphrisk.pseudonymise import Pseudonymiser
from tests.factories import luhn_complete

local_parts = st.from_regex(r"[a-z][a-z0-9._]{0,10}[a-z0-9]", fullmatch=True).filter(lambda s: ".." not in s)
domains = st.sampled_from(["example.org", "mail.example.com", "bank.co.uk"])


@given(local_parts, domains, st.booleans())
def test_email_case_and_space_insensitive(local: str, domain: str, upper: bool) -> None:
    raw = f"{local}@{domain}"
    variant = f"  {raw.upper() if upper else raw.title()} "
    assert normalise_email(variant).value == normalise_email(raw).value == raw.lower()
    norm = normalise_email(raw).value
    assert normalise_email(norm).value == norm
    # The masked local part keeps the first character only (the domain may contain the local part).
    assert local not in normalise_email(raw).masked.split("@")[0] or len(local) == 1


@given(st.integers(min_value=0, max_value=99_999))
def test_uk_mobile_formats_agree(n: int) -> None:
    sub = f"{n:05d}"
    forms = [f"+44 7700 9{sub[:2]} {sub[2:]}", f"+4477009{sub}", f"+44-7700-9{sub}"]
    values = {normalise_phone(f).value for f in forms}
    assert values == {f"+4477009{sub}"}
    assert normalise_phone(f"07700 9{sub}", "GB").value == f"+4477009{sub}"
    e164 = values.pop()
    assert normalise_phone(e164).value == e164
    assert sub not in normalise_phone(e164).masked[:-2]


@given(
    st.from_regex(r"[A-Za-z0-9]{3,12}", fullmatch=True),
    st.lists(st.sampled_from([" ", "-", ".", "/"]), max_size=3),
)
def test_document_ignores_separators_and_case(number: str, seps: list[str]) -> None:
    variant = number.lower()
    for i, sep in enumerate(seps):
        pos = min(i + 1, len(variant))
        variant = variant[:pos] + sep + variant[pos:]
    a = normalise_document("passport", number, "gb")
    b = normalise_document("passport", variant, "GB")
    assert a.value == b.value
    # Idempotent on the number part.
    assert normalise_document("passport", a.value.split("|")[2], "GB").value == a.value
    # Type and country are part of the identity.
    assert normalise_document("national_id", number, "GB").value != a.value


@given(st.ip_addresses())
def test_ip_canonical(ip) -> None:  # type: ignore[no-untyped-def]
    norm = normalise_ip(str(ip)).value
    assert normalise_ip(norm).value == norm
    if ip.version == 4:
        assert normalise_ip(f"::ffff:{ip}").value == norm


@given(st.from_regex(r"[0-9]{11,17}", fullmatch=True))
def test_card_luhn_and_spacing(prefix: str) -> None:
    pan = luhn_complete(prefix)
    assert luhn_valid(pan)
    spaced = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
    assert normalise_card(spaced).value == pan == normalise_card(pan).value
    wrong = pan[:-1] + str((int(pan[-1]) + 1) % 10)
    with pytest.raises(NormalisationError, match="Luhn"):
        normalise_card(wrong)


@given(st.text(alphabet="abcdefgh 12,.", min_size=1).filter(lambda s: any(c.isalnum() for c in s)))
def test_address_idempotent_and_case_insensitive(line1: str) -> None:
    a = normalise_address(line1, "Leeds", "ls1 1aa", "GB")
    b = normalise_address(line1.upper() + " ,", "LEEDS ", "LS11AA", "gb")
    assert a.value == b.value


@settings(max_examples=50)
@given(st.text(min_size=1, max_size=40))
def test_pseudonymiser_keyed_stable_and_label_separated(value: str) -> None:
    h1 = Pseudonymiser(b"k" * 32)
    h2 = Pseudonymiser(b"j" * 32)
    assert h1.token(NodeLabel.EMAIL, value) == Pseudonymiser(b"k" * 32).token(NodeLabel.EMAIL, value)
    assert h1.token(NodeLabel.EMAIL, value) != h2.token(NodeLabel.EMAIL, value)
    assert h1.token(NodeLabel.EMAIL, value) != h1.token(NodeLabel.PHONE, value)
    assert value not in h1.token(NodeLabel.EMAIL, value) or len(value) < 3


@pytest.mark.parametrize(
    ("fn", "arg", "field"),
    [(normalise_email, "nope", "email"), (normalise_phone, "12", "phone"), (normalise_ip, "300.1.1.1", "ip")],
)
def test_errors_name_the_field(fn, arg, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NormalisationError) as info:
        fn(arg)
    assert info.value.field == field


def test_short_key_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonymiser(b"short")


_EMAILS = st.one_of(
    st.from_regex(_PLAIN_EMAIL, fullmatch=True),
    st.from_regex(
        r"[a-zA-Z0-9.\-_+]{1,8}@[a-zA-Z0-9.\-]{1,12}\.(com|org|test|local|c1|xn--p1ai|arpa)", fullmatch=True
    ),
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_EMAILS)
def test_plain_email_shortcut_agrees_with_email_validator(address: str) -> None:
    """Addresses the shortcut takes normalise exactly as email_validator normalises them."""
    if _plain_email(address) is None:
        return
    local, domain = validate_email(address, check_deliverability=False).normalized.rsplit("@", 1)
    assert normalise_email(address) == (
        f"{local.lower()}@{domain.lower()}",
        f"{local[0].lower()}***@{domain.lower()}",
    )
