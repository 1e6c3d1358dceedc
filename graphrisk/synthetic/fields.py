"""Vectorised builders of string columns: ids, phones, emails, documents, cards, IPs, addresses.

Everything works on whole numpy/Arrow arrays: a million users means millions of strings, and a
Python loop over them would dominate the generator's run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from graphrisk.synthetic import vocab

DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)
UPPER = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
LOWER = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Document alphabets leave out letters that read as digits (I, O, Q), as issuers do.
DOC_ALNUM = np.frombuffer(b"0123456789CFGHJKLMNPRTVWXYZ", dtype=np.uint8)


def from_chars(chars: np.ndarray) -> pa.Array:
    """Rows of a fixed-width ASCII matrix ``(n, w)`` as Arrow strings, built from buffers."""
    n, width = chars.shape
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(width)
    data = np.ascontiguousarray(chars, dtype=np.uint8).tobytes()
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


def random_chars(rng: np.random.Generator, n: int, width: int, alphabet: np.ndarray) -> np.ndarray:
    """An ``(n, width)`` matrix of characters drawn uniformly from ``alphabet``."""
    return alphabet[rng.integers(0, len(alphabet), size=(n, width), dtype=np.uint8)]


def concat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise string concatenation; a null part makes the result null."""
    return pc.binary_join_element_wise(*parts, "")


def to_str(values: np.ndarray) -> pa.Array:
    """Integers as decimal strings."""
    return pc.cast(pa.array(values), pa.string())


def zfill(values: np.ndarray, width: int) -> pa.Array:
    """Integers as zero-padded decimal strings."""
    return pc.utf8_lpad(to_str(values), width=width, padding="0")


def take(options: Sequence[str] | pa.Array, idx: np.ndarray) -> pa.Array:
    """``options[idx]`` as Arrow strings; a negative index gives null."""
    table = options if isinstance(options, pa.Array) else pa.array(list(options), pa.string())
    mask = idx < 0
    indices = pa.array(np.where(mask, 0, idx), mask=mask if mask.any() else None)
    return table.take(indices)


def pick(
    rng: np.random.Generator, options: Sequence[str], n: int, p: Sequence[float] | None = None
) -> pa.Array:
    """``n`` strings drawn from ``options`` (with probabilities ``p``)."""
    probs = None if p is None else np.asarray(p, dtype=float) / np.sum(p)
    return take(options, rng.choice(len(options), size=n, p=probs))


def scatter(parts: list[tuple[np.ndarray, pa.Array]], n: int) -> pa.Array:
    """Put each part's values at its row indices; together the parts must cover ``0..n-1`` once."""
    order = np.concatenate([idx for idx, _ in parts])
    values = pa.concat_arrays([arr for _, arr in parts])
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(len(order))
    return values.take(pa.array(inverse))


def replace_at(column: pa.Array, idx: np.ndarray, values: pa.Array | Sequence[str | None]) -> pa.Array:
    """A copy of ``column`` with the rows ``idx`` replaced by ``values``."""
    values = values if isinstance(values, pa.Array) else pa.array(list(values), column.type)
    mapping = np.arange(len(column), dtype=np.int64)
    mapping[idx] = len(column) + np.arange(len(idx))
    return pa.concat_arrays([column, values.cast(column.type)]).take(pa.array(mapping))


def duplicated(values: pa.Array) -> np.ndarray:
    """Row indices whose value already occurred earlier in ``values`` (nulls count as values)."""
    codes = pc.dictionary_encode(values, null_encoding="encode").indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    seen_first = np.zeros(len(codes), dtype=bool)
    seen_first[first] = True
    return np.flatnonzero(~seen_first)


def dedupe(
    values: pa.Array,
    regenerate: Callable[[np.ndarray], pa.Array],
    key: Callable[[pa.Array, np.ndarray], pa.Array] | None = None,
) -> pa.Array:
    """Redraw repeated values until all are distinct.

    Two honest users never hold the same phone, email or document, and an accidental repeat
    would plant a shared identifier that looks like fraud. ``regenerate(rows)`` draws new values
    for those rows; ``key(values, rows)`` gives what must be distinct (default: the value).
    """

    def keys(vals: pa.Array, rows: np.ndarray) -> pa.Array:
        return vals if key is None else key(vals, rows)

    everyone = np.arange(len(values))
    all_keys = keys(values, everyone)
    dup = duplicated(all_keys)
    if len(dup) == 0:
        return values
    # Redraws are few: check them against a set of the kept keys instead of re-hashing all.
    kept = np.ones(len(values), dtype=bool)
    kept[dup] = False
    seen = set(all_keys.filter(pa.array(kept)).to_pylist())
    chosen: dict[int, str] = {}
    pending = dup
    for _ in range(100):
        fresh = regenerate(pending)
        retry = []
        for row, k, v in zip(
            pending.tolist(), keys(fresh, pending).to_pylist(), fresh.to_pylist(), strict=True
        ):
            if k in seen:
                retry.append(row)
            else:
                seen.add(k)
                chosen[row] = v
        if not retry:
            return replace_at(values, dup, [chosen[r] for r in dup.tolist()])
        pending = np.asarray(retry, dtype=np.int64)
    raise RuntimeError("could not draw distinct values; the value space is too small")


def scramble(idx: np.ndarray, bits: int, key: int) -> np.ndarray:
    """A keyed bijection on ``[0, 2**bits)``: ids look random yet never collide.

    Multiplying by an odd number, adding, and xor-shifting are each invertible modulo a power of
    two, so the composition is too. It also hides which ids were added last (the fraud ones).
    """
    mask = np.uint64((1 << bits) - 1)
    mul1 = np.uint64((key * 2 + 1) & ((1 << bits) - 1) | 1)
    mul2 = np.uint64(((key >> 7) * 2 + 0x9E3779B97F4A7C15) & ((1 << bits) - 1) | 1)
    add = np.uint64((key * 0x632BE59BD9B4E019) & ((1 << bits) - 1))
    x = idx.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x * mul1 + add) & mask
        x ^= x >> np.uint64(bits // 2)
        x = (x * mul2) & mask
    return x


def hex_ids(prefix: str, idx: np.ndarray, bits: int, key: int) -> pa.Array:
    """Distinct opaque ids ``prefix`` + ``bits/4`` hex digits, one per index."""
    x = scramble(idx, bits, key)
    width = bits // 4
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = (x[:, None] >> shifts[None, :]) & np.uint64(15)
    return concat(prefix, from_chars(HEX[nibbles.astype(np.int64)]))


def luhn_check_digits(payload: np.ndarray) -> np.ndarray:
    """The Luhn check digit for each row of a digit matrix (values 0-9, most significant first)."""
    # Counting from the check digit (position 0), every odd position is doubled: that is the
    # payload's last digit and every second one before it.
    width = payload.shape[1]
    doubled = (np.arange(width)[::-1] % 2) == 0
    d = payload.astype(np.int64)
    d = np.where(doubled, d * 2, d)
    d = np.where(d > 9, d - 9, d)
    return (10 - d.sum(axis=1) % 10) % 10


def card_numbers(rng: np.random.Generator, first: int, n: int, key: int) -> pa.Array:
    """Luhn-valid 16-digit Visa/Mastercard numbers for card indices ``first .. first+n-1``.

    The nine account digits are a keyed bijection of the card index, so numbers never repeat
    (up to 2**29 cards) without any duplicate check; the issuer BIN is drawn at random.
    """
    bins = np.array([[int(c) for c in b] for b in vocab.CARD_BINS], dtype=np.int64)
    account = scramble(np.arange(first, first + n), 29, key).astype(np.int64)
    powers = 10 ** np.arange(8, -1, -1, dtype=np.int64)
    account_digits = (account[:, None] // powers[None, :]) % 10
    payload = np.concatenate([bins[rng.integers(0, len(bins), n)], account_digits], axis=1)
    digits = np.concatenate([payload, luhn_check_digits(payload)[:, None]], axis=1)
    return from_chars(DIGITS[digits])


def _from_pattern(rng: np.random.Generator, pattern: str, n: int) -> pa.Array:
    # D digit, A letter, X document letter-or-digit; anything else is literal.
    cols = []
    for ch in pattern:
        if ch == "D":
            cols.append(DIGITS[rng.integers(0, 10, n)])
        elif ch == "A":
            cols.append(UPPER[rng.integers(0, 26, n)])
        elif ch == "X":
            cols.append(DOC_ALNUM[rng.integers(0, len(DOC_ALNUM), n)])
        else:
            cols.append(np.full(n, ord(ch), dtype=np.uint8))
    return from_chars(np.stack(cols, axis=1))


# Number formats per (country, document type); shaped like the real ones, not checksummed.
DOC_PATTERNS: dict[tuple[str, str], str] = {
    ("GB", "passport"): "DDDDDDDDD",
    ("GB", "driving_licence"): "AAAAADDDDDDAADAA",
    ("GB", "residence_permit"): "AADDDDDDD",
    ("GB", "national_id"): "AADDDDDDD",
    ("DE", "passport"): "CXXXXXXXX",
    ("DE", "national_id"): "LXXXXXXXX",
    ("DE", "driving_licence"): "XDDDXXXXDDX",
    ("DE", "residence_permit"): "YXXXXXXXX",
    ("FR", "passport"): "DDAADDDDD",
    ("FR", "national_id"): "DDDDDDDDDDDD",
    ("FR", "driving_licence"): "DDAADDDDDDDD",
    ("FR", "residence_permit"): "DDDDDDDDDD",
    ("PL", "passport"): "AADDDDDDD",
    ("PL", "national_id"): "AAADDDDDD",
    ("PL", "driving_licence"): "DDDDD/DD/DDDD",
    ("PL", "residence_permit"): "RPDDDDDDD",
}
DOC_TYPES = ("passport", "national_id", "driving_licence", "residence_permit")
# Document type mix per country: the UK has no identity card, so licences stand in for it.
DOC_TYPE_WEIGHTS = {
    "GB": (0.55, 0.0, 0.40, 0.05),
    "DE": (0.25, 0.65, 0.06, 0.04),
    "FR": (0.25, 0.62, 0.10, 0.03),
    "PL": (0.20, 0.70, 0.07, 0.03),
}


def documents(rng: np.random.Generator, country: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Document (type, number) per holder, for holders' country indices; numbers distinct."""
    n = len(country)
    dtype = np.zeros(n, dtype=np.int64)
    for c, code in enumerate(vocab.COUNTRIES):
        rows = np.flatnonzero(country == c)
        dtype[rows] = rng.choice(4, size=len(rows), p=DOC_TYPE_WEIGHTS[code])

    def draw(rows: np.ndarray) -> pa.Array:
        parts = []
        for c, code in enumerate(vocab.COUNTRIES):
            for t, tname in enumerate(DOC_TYPES):
                sel = np.flatnonzero((country[rows] == c) & (dtype[rows] == t))
                if len(sel):
                    parts.append((sel, _from_pattern(rng, DOC_PATTERNS[code, tname], len(sel))))
        return scatter(parts, len(rows))

    numbers = draw(np.arange(n))
    numbers = dedupe(numbers, draw)
    return take(DOC_TYPES, dtype), numbers


def phone_nsn(rng: np.random.Generator, country: np.ndarray) -> pa.Array:
    """Distinct mobile national significant numbers (digits only) for country indices."""

    def draw(rows: np.ndarray) -> pa.Array:
        parts = []
        for c, code in enumerate(vocab.COUNTRIES):
            sel = np.flatnonzero(country[rows] == c)
            if len(sel) == 0:
                continue
            _, prefixes, width = vocab.PHONE_PLANS[code]
            pre = pick(rng, prefixes, len(sel))
            parts.append((sel, concat(pre, from_chars(random_chars(rng, len(sel), width, DIGITS)))))
        return scatter(parts, len(rows))

    # Distinct per country: the calling code is part of the identity.
    def key(values: pa.Array, rows: np.ndarray) -> pa.Array:
        return concat(take(vocab.COUNTRIES, country[rows]), values)

    return dedupe(draw(np.arange(len(country))), draw, key=key)


def format_phones(country: np.ndarray, nsn: pa.Array, style: np.ndarray) -> pa.Array:
    """Phones as text: style 0 E.164, 1 spaced international, 2 dashed, 3 dotted."""
    parts = []
    for c, code in enumerate(vocab.COUNTRIES):
        rows = np.flatnonzero(country == c)
        if len(rows) == 0:
            continue
        cc = vocab.PHONE_PLANS[code][0]
        sub = nsn.take(pa.array(rows))
        groups, pos = [], 0
        for g in vocab.PHONE_GROUPS[code]:
            groups.append(pc.utf8_slice_codeunits(sub, pos, pos + g))
            pos += g
        groups[-1] = pc.utf8_slice_codeunits(sub, pos - vocab.PHONE_GROUPS[code][-1])
        by_style = [
            concat(f"+{cc}", sub),
            pc.binary_join_element_wise(f"+{cc}", *groups, " "),
            concat(f"+{cc} ", pc.binary_join_element_wise(*groups, "-")),
            concat(f"+{cc}.", pc.binary_join_element_wise(*groups, ".")),
        ]
        st = style[rows]
        text = by_style[0]
        for s in (1, 2, 3):
            if (st == s).any():
                text = pc.if_else(pa.array(st == s), by_style[s], text)
        parts.append((rows, text))
    return scatter(parts, len(country))


def ipv4(rng: np.random.Generator, n: int, first_octets: Sequence[int]) -> pa.Array:
    """Public-looking IPv4 addresses whose first octet comes from ``first_octets``."""
    a = np.asarray(first_octets)[rng.integers(0, len(first_octets), n)]
    b, c = rng.integers(0, 256, n), rng.integers(0, 256, n)
    d = rng.integers(1, 255, n)
    return pc.binary_join_element_wise(to_str(a), to_str(b), to_str(c), to_str(d), ".")


def ipv6(rng: np.random.Generator, n: int) -> pa.Array:
    """Residential IPv6 addresses (a /64 from a 2a0x:: allocation plus a short host part)."""
    groups = [concat("2a0", to_str(rng.integers(0, 10, n)))]
    for _ in range(3):
        nib = rng.integers(0, 16, size=(n, 4))
        groups.append(from_chars(HEX[nib]))
    host = pc.utf8_ltrim(from_chars(HEX[rng.integers(0, 16, size=(n, 4))]), characters="0")
    host = pc.if_else(pc.equal(host, ""), "1", host)
    return concat(pc.binary_join_element_wise(*groups, ":"), "::", host)


def _postcodes(rng: np.random.Generator, code: str, n: int) -> pa.Array:
    if code == "GB":
        area = pick(rng, vocab.GB_POSTCODE_AREAS, n)
        inward_letters = np.frombuffer(b"ABDEFGHJLNPQRSTUWXYZ", dtype=np.uint8)
        outward = to_str(rng.integers(1, 20, n))
        inward = concat(to_str(rng.integers(0, 10, n)), from_chars(random_chars(rng, n, 2, inward_letters)))
        return concat(area, outward, " ", inward)
    if code == "PL":
        return concat(zfill(rng.integers(0, 100, n), 2), "-", zfill(rng.integers(0, 1000, n), 3))
    return zfill(rng.integers(1000, 96000, n), 5)


def addresses(rng: np.random.Generator, country: np.ndarray) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(line1, city, postcode) per country index, in each country's usual street format."""
    n = len(country)
    parts_line, parts_city, parts_pc = [], [], []
    for c, code in enumerate(vocab.COUNTRIES):
        rows = np.flatnonzero(country == c)
        m = len(rows)
        if m == 0:
            continue
        street = pick(rng, vocab.STREETS[code], m)
        suffixes = vocab.STREET_SUFFIX[code]
        sfx_idx = rng.integers(0, len(suffixes), m)
        # Most people spell the street type out; some abbreviate it.
        abbrev = rng.random(m) < 0.2
        suffix = pc.if_else(
            pa.array(abbrev), take([s[1] for s in suffixes], sfx_idx), take([s[0] for s in suffixes], sfx_idx)
        )
        num = to_str(np.minimum(rng.geometric(0.05, m), 300))
        if code == "GB":
            line = concat(num, " ", street, " ", suffix)
            flat = rng.random(m) < 0.15
            line = pc.if_else(
                pa.array(flat), concat("Flat ", to_str(rng.integers(1, 30, m)), ", ", line), line
            )
        elif code == "DE":
            line = concat(street, pc.utf8_lower(suffix), " ", num)
        elif code == "FR":
            line = concat(num, " ", suffix, " ", street)
        else:
            line = concat(suffix, " ", street, " ", num)
            flat = rng.random(m) < 0.5
            line = pc.if_else(pa.array(flat), concat(line, "/", to_str(rng.integers(1, 80, m))), line)
        weights = 1.0 / np.arange(1, len(vocab.CITIES[code]) + 1)
        parts_line.append((rows, line))
        parts_city.append((rows, pick(rng, vocab.CITIES[code], m, weights)))
        parts_pc.append((rows, _postcodes(rng, code, m)))
    return scatter(parts_line, n), scatter(parts_city, n), scatter(parts_pc, n)


def emails(rng: np.random.Generator, country: np.ndarray) -> pa.Array:
    """Distinct personal emails in the usual shapes (first.last, initials, handles + digits)."""

    def draw(rows: np.ndarray, retry: bool = True) -> pa.Array:
        parts = []
        for c, code in enumerate(vocab.COUNTRIES):
            sel = np.flatnonzero(country[rows] == c)
            m = len(sel)
            if m == 0:
                continue
            first = pick(rng, vocab.words(vocab.FIRST_NAMES[code]), m)
            last = pick(rng, vocab.words(vocab.LAST_NAMES[code]), m)
            doms, wts = zip(*vocab.EMAIL_DOMAINS[code], strict=True)
            domain = pick(rng, doms, m, wts)
            year = to_str(rng.integers(60, 106, m) % 100)
            num = to_str(rng.integers(1, 1000, m))
            shapes = [
                concat(first, ".", last),
                concat(first, ".", last, num),
                concat(first, last, year),
                concat(pc.utf8_slice_codeunits(first, 0, 1), last),
                concat(first, "_", last, num),
                concat(pick(rng, vocab.HANDLE_WORDS, m), pick(rng, vocab.HANDLE_WORDS, m), num),
                concat(last, ".", pc.utf8_slice_codeunits(first, 0, 1), year),
            ]
            # A taken address gets digits added, as the provider's sign-up page would suggest.
            p = [0, 0.4, 0, 0, 0.3, 0.3, 0] if retry else [0.22, 0.22, 0.16, 0.1, 0.1, 0.1, 0.1]
            shape = rng.choice(len(shapes), size=m, p=p)
            local = shapes[0]
            for s in range(1, len(shapes)):
                local = pc.if_else(pa.array(shape == s), shapes[s], local)
            parts.append((sel, concat(local, "@", domain)))
        return scatter(parts, len(rows))

    return dedupe(draw(np.arange(len(country)), retry=False), draw, key=lambda v, _: pc.utf8_lower(v))
