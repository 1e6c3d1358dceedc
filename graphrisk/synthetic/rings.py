"""Planted fraud rings, four typologies, each ring with an id and a typology label.

* ``device_farm``: accounts onboarded within hours from a few phones and IPs, templated emails,
  SIMs from one number block; small transfers to a collector account.
* ``synthetic_identity``: accounts re-using a few document numbers and phones written with small
  variations (separators, case, a changed last digit) and variants of one address.
* ``mule_ring``: recruited real customers passing money along chains and cycles within minutes,
  fed by scam victims (honest users) and fanned out, amounts just under round thresholds.
* ``bust_out``: customers who build a normal history, sharing some cards and a device, then burst
  large payments to one to three colluding merchants near the end.

Rings overwrite their members' attributes in the ``World`` before everyday activity is drawn,
so members also log in from public IPs and pay the big honest merchants like everyone else.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from graphrisk.synthetic import fields, vocab
from graphrisk.synthetic.activity import merchant_amounts
from graphrisk.synthetic.model import DAY_MS, HOUR_MS, LOGIN, MINUTE_MS, PAYMENT, EventBlock
from graphrisk.synthetic.population import World, child_rng, daytime

TYPOLOGIES = ("device_farm", "synthetic_identity", "mule_ring", "bust_out")
# Members per ring: (smallest, largest, geometric p of the excess over the smallest).
SIZES = {
    "device_farm": (5, 40, 0.08),
    "synthetic_identity": (3, 15, 0.2),
    "mule_ring": (4, 20, 0.15),
    "bust_out": (5, 25, 0.12),
}
SHARES = {"device_farm": 0.3, "synthetic_identity": 0.2, "mule_ring": 0.25, "bust_out": 0.25}
# Typologies whose accounts are invented identities rather than recruited customers.
FAKE_IDENTITY = frozenset({"device_farm", "synthetic_identity"})
# Reporting thresholds mules stay just under, in EUR.
THRESHOLDS = (500.0, 1000.0, 2000.0, 3000.0, 5000.0, 10000.0)
_CATEGORY_NAMES = [c[0] for c in vocab.CATEGORIES]


@dataclass
class Ring:
    """One planted ring: its members (user indices) and, for bust-outs, colluding merchants."""

    ring_id: str
    typology: str
    members: np.ndarray
    merchants: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    # Bust-outs: when the first member starts the burst (epoch ms; -1 for other typologies).
    # Written to the labels so a replay measures "flagged before the burst" from the truth.
    burst_start: int = -1


@dataclass
class PlantedRings:
    """The rings and the events specific to them (transfers, bursts, cash-outs)."""

    rings: list[Ring]
    events: EventBlock

    def user_ring(self, n_users: int) -> np.ndarray:
        """Index into ``rings`` per user, ``-1`` for honest users."""
        out = np.full(n_users, -1, dtype=np.int32)
        for i, ring in enumerate(self.rings):
            out[ring.members] = i
        return out


# Scalars or arrays, as ``EventBlock.make`` broadcasts them.
ArrayLike = np.ndarray | list | int | float


class _Events:
    """Ring events, collected in small batches and joined into one block at the end."""

    def __init__(self) -> None:
        self.blocks: list[EventBlock] = []

    def payments(
        self,
        user: ArrayLike,
        time: ArrayLike,
        *,
        merchant: ArrayLike = -1,
        counterparty: ArrayLike = -1,
        card: ArrayLike = -1,
        amount: ArrayLike,
        currency: ArrayLike,
    ) -> None:
        self.blocks.append(
            EventBlock.make(
                PAYMENT,
                np.atleast_1d(np.asarray(user)),
                np.atleast_1d(np.asarray(time, dtype=np.int64)),
                merchant=np.asarray(merchant),
                counterparty=np.asarray(counterparty),
                card=np.asarray(card),
                amount=np.round(np.asarray(amount, dtype=float), 2),
                currency=np.asarray(currency),
            )
        )

    def logins(self, user: ArrayLike, time: ArrayLike, *, device: ArrayLike, ip: ArrayLike) -> None:
        self.blocks.append(
            EventBlock.make(
                LOGIN, np.atleast_1d(user), np.atleast_1d(time), device=np.asarray(device), ip=np.asarray(ip)
            )
        )

    def block(self) -> EventBlock:
        if not self.blocks:
            return EventBlock.make(PAYMENT, np.zeros(0, np.int32), np.zeros(0, np.int64))
        return EventBlock.concat(self.blocks)


class _Taken:
    """Identifiers already held by someone, so a ring never shares one with an honest user by accident."""

    def __init__(self, world: World) -> None:
        ident = world.identity
        self.emails = set(pc.utf8_lower(ident["email"]).to_pylist())
        codes = fields.take(
            [vocab.PHONE_PLANS[c][0] for c in vocab.COUNTRIES], world.phone_country.astype(np.int64)
        )
        self.phones = set(fields.concat(codes, world.phone_nsn).to_pylist())
        self.docs = set(
            pc.utf8_upper(pc.replace_substring_regex(ident["document.number"], r"[\s\-./]", "")).to_pylist()
        )

    def claim(self, kind: str, value: str) -> bool:
        """Reserve ``value``; False if someone already holds it."""
        taken: set[str] = getattr(self, kind)
        key = value.lower() if kind == "emails" else value
        if key in taken:
            return False
        taken.add(key)
        return True


class _FreshPool:
    """Fresh identifiers per country, drawn in batches: one vectorised draw serves many rings."""

    BATCH = 256

    def __init__(self, rng: np.random.Generator, taken: _Taken) -> None:
        self.rng = rng
        self.taken = taken
        self.buffers: dict[tuple[str, int], list] = defaultdict(list)

    def take(self, kind: str, country: int, n: int) -> list:
        buf = self.buffers[kind, country]
        while len(buf) < n:
            buf.extend(self._draw(kind, country, max(self.BATCH, n)))
        out = buf[:n]
        del buf[:n]
        return out

    def _draw(self, kind: str, country: int, k: int) -> list:
        rng, claim, where = self.rng, self.taken.claim, np.full(k, country)
        if kind == "email":
            return [e for e in fields.emails(rng, where).to_pylist() if claim("emails", e)]
        if kind == "doc":
            t, num = fields.documents(rng, where)
            pairs = zip(t.to_pylist(), num.to_pylist(), strict=True)
            return [(ti, ni) for ti, ni in pairs if claim("docs", ni.replace("/", "").upper())]
        if kind == "nsn":
            cc = vocab.PHONE_PLANS[vocab.COUNTRIES[country]][0]
            return [x for x in fields.phone_nsn(rng, where).to_pylist() if claim("phones", cc + x)]
        line, city, postcode = fields.addresses(rng, where)
        return list(zip(line.to_pylist(), city.to_pylist(), postcode.to_pylist(), strict=True))


class _Context:
    def __init__(self, world: World, rng: np.random.Generator, honest: np.ndarray) -> None:
        self.world = world
        self.rng = rng
        self.honest = honest
        self.events = _Events()
        self.edits: dict[str, dict[int, str]] = defaultdict(dict)
        self._taken: _Taken | None = None
        self._pool: _FreshPool | None = None

    @property
    def taken(self) -> _Taken:
        if self._taken is None:
            self._taken = _Taken(self.world)
        return self._taken

    def fresh(self, kind: str, country: int, n: int) -> list:
        """``n`` unused values: "email", "doc" (type, number), "nsn", "address" (line1, city, postcode)."""
        if self._pool is None:
            self._pool = _FreshPool(child_rng(self.world.seed, "ring-identities"), self.taken)
        return self._pool.take(kind, country, n)

    def set_identity(self, column: str, users: np.ndarray, values: list[str]) -> None:
        for u, v in zip(users.tolist(), values, strict=True):
            self.edits[column][u] = v

    def window_point(self, lo: float, hi: float, n: int = 1) -> np.ndarray:
        """``n`` times between fractions ``lo`` and ``hi`` of the window."""
        w = self.world
        span = w.end_ms - w.start_ms
        return (w.start_ms + self.rng.uniform(lo, hi, n) * span).astype(np.int64)


def plant_rings(world: World, fraud_rate: float) -> PlantedRings:
    """Choose ring members, rewrite their attributes and draw the ring-specific events."""
    rng = child_rng(world.seed, "rings")
    plan = _plan(rng, world.n, fraud_rate)
    members = _choose_members(rng, world, plan)
    honest = np.ones(world.n, dtype=bool)
    for m in members:
        honest[m] = False
    ctx = _Context(world, rng, np.flatnonzero(honest))
    # Ring ids in a shuffled order, so an id says nothing about the typology.
    order = rng.permutation(len(plan))
    rings: list[Ring] = []
    for k, i in enumerate(order):
        ring = Ring(f"ring-{k:05d}", plan[i][0], np.sort(members[i]))
        _PLANTERS[ring.typology](ctx, ring)
        rings.append(ring)
    _apply_identity_edits(world, ctx.edits)
    return PlantedRings(rings, ctx.events.block())


def _plan(rng: np.random.Generator, n: int, fraud_rate: float) -> list[tuple[str, int]]:
    # Rings per typology until its share of the fraud budget is filled; the last ring of a
    # typology is cut to what is left (never below the smallest size).
    plan: list[tuple[str, int]] = []
    budget = fraud_rate * n
    for typology in TYPOLOGIES:
        lo, hi, p = SIZES[typology]
        target = max(budget * SHARES[typology], 1.0)
        total = 0
        while total < target:
            size = min(lo + int(rng.geometric(p)) - 1, hi)
            size = min(size, max(lo, round(target - total)))
            plan.append((typology, size))
            total += size
    return plan


def _choose_members(rng: np.random.Generator, world: World, plan: list[tuple[str, int]]) -> list[np.ndarray]:
    sizes = np.array([s for _, s in plan], dtype=np.int64)
    fake = np.array([t in FAKE_IDENTITY for t, _ in plan])
    if sizes.sum() > world.n // 4:
        raise ValueError(f"{world.n} users are too few for rings of {int(sizes.sum())} members")
    # Invented identities live alone: take them from single-person households, so that no
    # honest relative shares their address by construction.
    singles = np.flatnonzero(world.household_size == 1)
    n_fake = int(sizes[fake].sum())
    pool_fake = singles if len(singles) >= n_fake else np.arange(world.n)
    fake_users = rng.choice(pool_fake, size=n_fake, replace=False)
    free = np.ones(world.n, dtype=bool)
    free[fake_users] = False
    real_users = rng.choice(np.flatnonzero(free), size=int(sizes[~fake].sum()), replace=False)
    out: list[np.ndarray] = []
    fi = ri = 0
    for (_, size), is_fake in zip(plan, fake, strict=True):
        if is_fake:
            out.append(fake_users[fi : fi + size].astype(np.int64))
            fi += size
        else:
            out.append(real_users[ri : ri + size].astype(np.int64))
            ri += size
    return out


def _apply_identity_edits(world: World, edits: dict[str, dict[int, str]]) -> None:
    # One rewrite per column: each rewrite copies the whole column.
    for column, by_user in edits.items():
        users = np.fromiter(by_user.keys(), dtype=np.int64, count=len(by_user))
        world.identity[column] = fields.replace_at(world.identity[column], users, list(by_user.values()))


# --- shared helpers -------------------------------------------------------------------------


def _ring_country(ctx: _Context, members: np.ndarray) -> int:
    c = int(ctx.rng.choice(len(vocab.COUNTRIES), p=vocab.COUNTRY_WEIGHTS))
    w = ctx.world
    w.country[members] = c
    w.currency[members] = vocab.HOME_CURRENCY[c]
    w.phone_country[members] = c
    w.carrier[members] = c * 3 + int(ctx.rng.integers(0, 3))
    codes = [vocab.COUNTRIES[c]] * len(members)
    ctx.set_identity("address.country", members, codes)
    return c


def _fresh_docs(ctx: _Context, country: int, n: int) -> tuple[list[str], list[str]]:
    pairs = ctx.fresh("doc", country, n)
    return [t for t, _ in pairs], [num for _, num in pairs]


def _fresh_nsn(ctx: _Context, country: int) -> str:
    return ctx.fresh("nsn", country, 1)[0]


def _format_phone(country: int, nsns: list[str], style: np.ndarray) -> list[str]:
    return fields.format_phones(np.full(len(nsns), country), pa.array(nsns), style).to_pylist()


def _fresh_addresses(ctx: _Context, country: int, n: int) -> tuple[list[str], list[str], list[str]]:
    rows = ctx.fresh("address", country, n)
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def _set_address(
    ctx: _Context, members: np.ndarray, line: list[str], city: list[str], pcode: list[str]
) -> None:
    ctx.set_identity("address.line1", members, line)
    ctx.set_identity("address.city", members, city)
    ctx.set_identity("address.postcode", members, pcode)


def _onboard_at(ctx: _Context, members: np.ndarray, times: np.ndarray) -> None:
    w = ctx.world
    w.onboard[members] = np.clip(times, w.start_ms, w.end_ms - HOUR_MS)


def _carrier_ip(ctx: _Context, users: np.ndarray) -> np.ndarray:
    w = ctx.world
    return w.carrier_ips[w.carrier[users], ctx.rng.integers(0, w.carrier_ips.shape[1], len(users))]


def _honest_customers(ctx: _Context, k: int, before: int) -> np.ndarray:
    # Random honest users who were customers before ``before``.
    w = ctx.world
    cand = ctx.honest[ctx.rng.integers(0, len(ctx.honest), 4 * k + 8)]
    cand = np.unique(cand[w.onboard[cand] < before - HOUR_MS])
    return ctx.rng.permutation(cand)[:k]


# --- typologies ------------------------------------------------------------------------------


def _device_farm(ctx: _Context, ring: Ring) -> None:
    w, rng, members = ctx.world, ctx.rng, ring.members
    m = len(members)
    c = _ring_country(ctx, members)
    code = vocab.COUNTRIES[c]

    # A batch of accounts opened within a few hours.
    t0 = int(ctx.window_point(0.02, 0.7)[0])
    span = rng.uniform(1, 8) * HOUR_MS
    _onboard_at(ctx, members, t0 + np.sort(rng.uniform(0, span, m)).astype(np.int64))

    # A handful of phones; an app reset gives a fresh device id but the same fingerprint.
    n_phys = int(min(m, rng.integers(2, 7)))
    fps = fields.from_chars(fields.random_chars(rng, n_phys, 32, fields.HEX))
    farm_dev = w.new_devices(rng, n_phys, fps)
    phys = rng.integers(0, n_phys, m)
    dev = farm_dev[phys].copy()
    reset = np.flatnonzero(rng.random(m) < 0.4)
    if len(reset):
        dev[reset] = w.new_devices(rng, len(reset), fps.take(pa.array(phys[reset])))
    w.devices[members] = -1
    w.devices[members, 0] = dev
    w.onboard_device[members] = dev
    w.shared_device[members] = -1
    w.shared_device_p[members] = 0.0

    # One to three proxy or hosting IPs stand in for "home"; some sign-ups go out on mobile data.
    n_ip = int(rng.integers(1, 4))
    farm_ips = w.new_ips(fields.ipv4(rng, n_ip, vocab.HOSTING_FIRST_OCTETS + vocab.ISP_FIRST_OCTETS))
    w.home_ip[members] = farm_ips[rng.integers(0, n_ip, m)]
    w.onboard_ip[members] = np.where(rng.random(m) < 0.85, w.home_ip[members], _carrier_ip(ctx, members))

    # Templated emails, SIMs from one number block, bought or forged documents.
    ctx.set_identity("email", members, _templated_emails(ctx, c, m))
    base = int(_fresh_nsn(ctx, c))
    step = int(rng.integers(1, 4))
    nsns: list[str] = []
    k = 1
    while len(nsns) < m:
        candidate = str(base + k * step)
        if ctx.taken.claim("phones", vocab.PHONE_PLANS[code][0] + candidate):
            nsns.append(candidate)
        k += 1
    style = np.full(m, int(rng.integers(0, 2)))
    ctx.set_identity("phone", members, _format_phone(c, nsns, style))
    types, numbers = _fresh_docs(ctx, c, m)
    ctx.set_identity("document.type", members, types)
    ctx.set_identity("document.number", members, numbers)
    ctx.set_identity("document.issuing_country", members, [code] * m)
    # Half use one of two drop addresses, the rest made-up ones.
    line, city, pcode = _fresh_addresses(ctx, c, m)
    drops = rng.integers(0, 2, m)
    use_drop = rng.random(m) < 0.5
    for i in np.flatnonzero(use_drop):
        line[i], city[i], pcode[i] = line[drops[i]], city[drops[i]], pcode[drops[i]]
    _set_address(ctx, members, line, city, pcode)

    # Fake accounts know each other rather than honest friends.
    _ring_friends(ctx, members)

    # Cash-out: every account passes small amounts (sign-up bonuses) to one or two collectors.
    n_col = 1 if m < 12 else 2
    collectors, others = members[:n_col], members[n_col:]
    n_tx = rng.integers(1, 4, len(others))
    sender = np.repeat(others, n_tx)
    receiver = collectors[rng.integers(0, n_col, len(sender))]
    t = w.onboard[sender] + rng.uniform(2 * HOUR_MS, 5 * DAY_MS, len(sender)).astype(np.int64)
    t = np.maximum(t, w.onboard[receiver] + MINUTE_MS)
    keep = t < w.end_ms
    cur = w.currency[sender[keep]]
    amount = np.round(rng.lognormal(np.log(40), 0.5, int(keep.sum())) * np.asarray(vocab.EUR_RATE)[cur])
    ctx.events.payments(
        sender[keep], t[keep], counterparty=receiver[keep], amount=np.maximum(amount, 1), currency=cur
    )


def _templated_emails(ctx: _Context, country: int, m: int) -> list[str]:
    rng = ctx.rng
    code = vocab.COUNTRIES[country]
    doms, wts = zip(*vocab.EMAIL_DOMAINS[code], strict=True)
    p = np.asarray(wts) / np.sum(wts)
    ring_domain = doms[rng.choice(len(doms), p=p)]
    first = str(rng.choice(vocab.words(vocab.FIRST_NAMES[code])))
    last = str(rng.choice(vocab.words(vocab.LAST_NAMES[code])))
    word = str(rng.choice(vocab.HANDLE_WORDS))
    template = int(rng.integers(0, 3))
    k = int(rng.integers(1, 90))
    out: list[str] = []
    while len(out) < m:
        domain = ring_domain if rng.random() < 0.7 else doms[rng.choice(len(doms), p=p)]
        if template == 0:
            local = f"{first}.{last}{k}"
        elif template == 1:
            letters = "".join(chr(97 + x) for x in rng.integers(0, 26, int(rng.integers(6, 9))))
            local = f"{letters}{rng.integers(10, 10000)}"
        else:
            local = f"{word}_{rng.choice(vocab.HANDLE_WORDS)}{k}"
        k += 1
        email = f"{local}@{domain}"
        if ctx.taken.claim("emails", email):
            out.append(email)
    return out


def _ring_friends(ctx: _Context, members: np.ndarray) -> None:
    w = ctx.world
    w.friends[members] = -1
    if len(members) > 1:
        for j in range(2):
            w.friends[members, j] = np.roll(members, j + 1)


def _synthetic_identity(ctx: _Context, ring: Ring) -> None:
    w, rng, members = ctx.world, ctx.rng, ring.members
    m = len(members)
    c = _ring_country(ctx, members)
    code = vocab.COUNTRIES[c]
    # Applications trickle in over days, so the burst signal of a farm is absent.
    _onboard_at(ctx, members, daytime(rng, np.sort(ctx.window_point(0.0, 0.75, m)), w.start_ms, w.end_ms))

    n_docs = int(rng.integers(1, min(3, m) + 1))
    base_types, base_numbers = _fresh_docs(ctx, c, n_docs)
    pick = rng.integers(0, n_docs, m)
    ctx.set_identity("document.type", members, [base_types[i] for i in pick])
    ctx.set_identity("document.number", members, [_doc_variant(rng, base_numbers[i]) for i in pick])
    ctx.set_identity("document.issuing_country", members, [code] * m)

    n_phones = int(rng.integers(1, 3))
    base_nsn = [_fresh_nsn(ctx, c) for _ in range(n_phones)]
    nsns = []
    for i in rng.integers(0, n_phones, m):
        nsn = base_nsn[i]
        if rng.random() < 0.3:  # a changed last digit: a different number, one keystroke away
            nsn = nsn[:-1] + str((int(nsn[-1]) + int(rng.integers(1, 10))) % 10)
        nsns.append(nsn)
    ctx.set_identity("phone", members, _format_phone(c, nsns, rng.integers(0, 4, m)))
    ctx.set_identity("email", members, ctx.fresh("email", c, m))
    lines, cities, codes = _address_variants(rng, c, m, ctx.fresh("address", c, 1)[0][2])
    _set_address(ctx, members, lines, cities, codes)

    # Mostly their own devices and home IPs, a few shared.
    ring_dev = w.new_devices(rng, int(rng.integers(1, 3)))
    own = w.new_devices(rng, m)
    dev = np.where(rng.random(m) < 0.6, own, ring_dev[rng.integers(0, len(ring_dev), m)])
    w.devices[members] = -1
    w.devices[members, 0] = dev
    w.onboard_device[members] = dev
    w.shared_device[members] = -1
    w.shared_device_p[members] = 0.0
    ring_ip = w.new_ips(fields.ipv4(rng, 1, vocab.ISP_FIRST_OCTETS))
    own_ip = w.new_ips(fields.ipv4(rng, m, vocab.ISP_FIRST_OCTETS))
    w.home_ip[members] = np.where(rng.random(m) < 0.5, ring_ip[0], own_ip)
    w.onboard_ip[members] = w.home_ip[members]
    _ring_friends(ctx, members)


def _doc_variant(rng: np.random.Generator, number: str) -> str:
    kind = rng.choice(5, p=[0.35, 0.15, 0.15, 0.1, 0.25])
    if kind == 1:
        return " ".join(number[i : i + 3] for i in range(0, len(number), 3))
    if kind == 2:
        return "-".join(number[i : i + 4] for i in range(0, len(number), 4))
    if kind == 3:
        return number.lower()
    if kind == 4:
        last = number[-1]
        if last.isdigit():
            return number[:-1] + str((int(last) + int(rng.integers(1, 10))) % 10)
        return number[:-1] + ("A" if last != "A" else "B")
    return number


def _address_variants(
    rng: np.random.Generator, country: int, m: int, postcode: str
) -> tuple[list[str], list[str], list[str]]:
    # One real-looking address written several ways.
    code = vocab.COUNTRIES[country]
    street = str(rng.choice(vocab.STREETS[code]))
    full, short = vocab.STREET_SUFFIX[code][int(rng.integers(0, len(vocab.STREET_SUFFIX[code])))]
    num = int(rng.integers(1, 120))
    city = str(rng.choice(vocab.CITIES[code]))
    if code == "GB":
        forms = [
            f"{num} {street} {full}",
            f"{num} {street} {short}",
            f"{num}, {street} {full}".upper(),
            f"Flat {rng.integers(1, 9)}, {num} {street} {full}",
        ]
    elif code == "DE":
        forms = [
            f"{street}{full.lower()} {num}",
            f"{street}{short} {num}",
            f"{street}{full.lower()} {num}".replace("ß", "ss"),
            f"{street}{full.lower()} {num} a",
        ]
    elif code == "FR":
        forms = [
            f"{num} {full} {street}",
            f"{num}, {full} {street}",
            f"{num} {short} {street}",
            f"{num} {full} {street}".upper(),
        ]
    else:
        forms = [
            f"{full} {street} {num}",
            f"{street} {num}",
            f"{short} {street} {num}/{rng.integers(1, 40)}",
            f"{full} {street.upper()} {num}",
        ]
    lines = [forms[i] for i in rng.choice(len(forms), size=m, p=[0.4, 0.25, 0.2, 0.15])]
    codes = [postcode.replace(" ", "") if rng.random() < 0.3 else postcode for _ in range(m)]
    return lines, [city] * m, codes


def _mule_ring(ctx: _Context, ring: Ring) -> None:
    w, rng, members = ctx.world, ctx.rng, ring.members
    m = len(members)
    # Recruited customers keep their own identities; they join early and stay active.
    _onboard_at(ctx, members, daytime(rng, ctx.window_point(0.0, 0.5, m), w.start_ms, w.end_ms))
    order = rng.permutation(members)
    n_entry = 1 if m < 8 else 2
    n_exit = 1 if m < 6 else 2
    entry, exits, middle = order[:n_entry], order[m - n_exit :], order[n_entry : m - n_exit]
    cur = int(w.currency[entry[0]])
    rate = vocab.EUR_RATE[cur]
    earliest = int(w.onboard[members].max()) + HOUR_MS
    latest = w.end_ms - 12 * HOUR_MS
    if earliest >= latest:
        earliest = latest - HOUR_MS
    for _ in range(int(rng.integers(2, 7))):
        tw = int(rng.integers(earliest, latest))
        head = int(rng.choice(entry))
        # Scam victims pay the entry account.
        victims = _honest_customers(ctx, int(rng.integers(2, 7)), tw)
        if len(victims):
            vt = tw - rng.integers(10 * MINUTE_MS, 12 * HOUR_MS, len(victims))
            vt = np.maximum(vt, w.onboard[victims] + MINUTE_MS)
            amount = np.round(rng.lognormal(np.log(350), 0.6, len(victims)) * rate)
            ctx.events.payments(victims, vt, counterparty=head, amount=amount, currency=w.currency[victims])
        # Layering: a chain of hops minutes apart, each keeping a small commission, every amount
        # just under a reporting threshold.
        threshold = float(rng.choice(THRESHOLDS)) * rate
        amount = threshold * (1 - rng.uniform(0.005, 0.04))
        if rng.random() < 0.5:
            amount = float(np.floor(amount / 10) * 10)
        hops = int(rng.integers(1, len(middle) + 1)) if len(middle) else 0
        path = [head, *rng.permutation(middle)[:hops].tolist(), int(rng.choice(exits))]
        t = tw
        senders, receivers, times, amounts = [], [], [], []
        for a, b in itertools.pairwise(path):
            t += int(rng.exponential(20 * MINUTE_MS)) + MINUTE_MS
            amount *= rng.uniform(0.96, 0.995)
            senders.append(a)
            receivers.append(b)
            times.append(t)
            amounts.append(amount)
        last = path[-1]
        if rng.random() < 0.55 and last != head:
            # Close the cycle back to the entry account.
            t += int(rng.exponential(30 * MINUTE_MS)) + MINUTE_MS
            senders.append(last)
            receivers.append(head)
            times.append(t)
            amounts.append(amount * rng.uniform(0.9, 0.98))
        else:
            # Fan out to several members in pieces, each under a smaller threshold.
            others = [int(x) for x in members if x != last]
            k = int(min(len(others), rng.integers(2, 5)))
            for b in rng.permutation(others)[:k]:
                t += int(rng.exponential(10 * MINUTE_MS)) + MINUTE_MS
                senders.append(last)
                receivers.append(int(b))
                times.append(t)
                amounts.append(min(amount / k, 1000.0 * rate * (1 - rng.uniform(0.005, 0.03))))
        times_arr = np.minimum(np.asarray(times, dtype=np.int64), w.end_ms - 1)
        ctx.events.payments(
            senders, times_arr, counterparty=np.asarray(receivers), amount=amounts, currency=cur
        )


def _bust_out(ctx: _Context, ring: Ring) -> None:
    w, rng, members = ctx.world, ctx.rng, ring.members
    m = len(members)
    cats = [_CATEGORY_NAMES.index(c) for c in vocab.BUST_OUT_CATEGORIES]
    ring.merchants = w.new_merchants(rng.choice(cats, size=int(rng.integers(1, 4))).astype(np.int16))
    _onboard_at(ctx, members, daytime(rng, ctx.window_point(0.0, 0.5, m), w.start_ms, w.end_ms))

    # Everyone has a card of their own; some also use one of the ring's shared cards.
    no_card = members[w.cards[members, 0] < 0]
    if len(no_card):
        w.cards[no_card, 0] = w.new_cards(rng, len(no_card))
    ring_cards = w.new_cards(rng, int(rng.integers(1, 3)))
    sharing = members[rng.random(m) < 0.45]
    w.cards[sharing, 1] = ring_cards[rng.integers(0, len(ring_cards), len(sharing))]
    ring_dev = w.new_devices(rng, 1)[0]
    dev_share = members[rng.random(m) < 0.35]
    w.devices[dev_share, np.where(w.devices[dev_share, 1] < 0, 1, 2)] = ring_dev

    burst_start = w.end_ms - int(rng.uniform(6, 60) * HOUR_MS)
    # Build-up: modest purchases at the colluding merchants, spread over the weeks.
    n_small = rng.integers(1, 5, m)
    user = np.repeat(members, n_small)
    lo = w.onboard[user] + 12 * HOUR_MS
    t = lo + (rng.random(len(user)) * np.maximum(burst_start - lo, HOUR_MS)).astype(np.int64)
    t = daytime(rng, t, lo, burst_start)
    merchant = ring.merchants[rng.integers(0, len(ring.merchants), len(user))]
    cur = w.currency[user]
    amount = merchant_amounts(rng, w.merchant_category[merchant], cur, scale=0.5)
    keep = t < w.end_ms
    ctx.events.payments(
        user[keep],
        t[keep],
        merchant=merchant[keep],
        card=w.cards[user[keep], 0],
        amount=amount[keep],
        currency=cur[keep],
    )

    # The bust: rapid large purchases in the last hours, mostly at the colluding merchants.
    n_big = rng.integers(2, 9, m)
    user = np.repeat(members, n_big)
    gaps = rng.exponential(15 * MINUTE_MS, len(user)).astype(np.int64) + MINUTE_MS
    first = burst_start + rng.integers(0, 6 * HOUR_MS, m)
    ring.burst_start = int(first.min())
    starts = np.repeat(first, n_big)
    # Running sum of the gaps within each member's run of purchases.
    cs = np.cumsum(gaps)
    head = np.cumsum(n_big) - n_big
    t = starts + cs - np.repeat(cs[head] - gaps[head], n_big)
    big_honest = w.honest_merchants[np.isin(w.merchant_category[w.honest_merchants], cats)][:50]
    colluding = rng.random(len(user)) < 0.8
    merchant = np.where(
        colluding,
        ring.merchants[rng.integers(0, len(ring.merchants), len(user))],
        big_honest[rng.integers(0, len(big_honest), len(user))] if len(big_honest) else ring.merchants[0],
    )
    shared_card = w.cards[user, 1]
    card = np.where((shared_card >= 0) & (rng.random(len(user)) < 0.5), shared_card, w.cards[user, 0])
    cur = w.currency[user]
    amount = np.minimum(rng.lognormal(np.log(600), 0.6, len(user)), 9000) * np.asarray(vocab.EUR_RATE)[cur]
    keep = t < w.end_ms
    ctx.events.payments(
        user[keep], t[keep], merchant=merchant[keep], card=card[keep], amount=amount[keep], currency=cur[keep]
    )
    ctx.events.logins(
        members,
        np.minimum(first - rng.integers(MINUTE_MS, 30 * MINUTE_MS, m), w.end_ms - 1),
        device=w.devices[members, 0],
        ip=w.home_ip[members],
    )

    # The merchants also have some honest customers, as a real shop would.
    buyers = _honest_customers(ctx, int(rng.integers(10, 40)), w.end_ms - DAY_MS)
    if len(buyers):
        lo = w.onboard[buyers] + HOUR_MS
        t = lo + (rng.random(len(buyers)) * (w.end_ms - lo)).astype(np.int64)
        merchant = ring.merchants[rng.integers(0, len(ring.merchants), len(buyers))]
        cur = w.currency[buyers]
        card = w.cards[buyers, 0]
        ctx.events.payments(
            buyers,
            np.minimum(t, w.end_ms - 1),
            merchant=merchant,
            card=card,
            amount=merchant_amounts(rng, w.merchant_category[merchant], cur),
            currency=cur,
        )


_PLANTERS = {
    "device_farm": _device_farm,
    "synthetic_identity": _synthetic_identity,
    "mule_ring": _mule_ring,
    "bust_out": _bust_out,
}
