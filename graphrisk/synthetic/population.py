"""The honest population: users, households, their identifiers and the places they share.

Sharing is skewed the way real data is: most users own one or two devices, one phone, one
email and one document; households of two to five share an address, a home IP and sometimes a
family tablet; carrier NAT gateways, cafés and universities put hundreds of users behind one
IP; and a few thousand merchants take payments with Zipf popularity.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from graphrisk.synthetic import fields, vocab
from graphrisk.synthetic.model import DAY_MS, HOUR_MS, StringTable

IDENTITY_COLUMNS = (
    "document.type",
    "document.number",
    "document.issuing_country",
    "email",
    "phone",
    "address.line1",
    "address.city",
    "address.postcode",
    "address.country",
)
CARRIERS_PER_COUNTRY = 3
# Weights of each hour of the day (UTC) for human activity: quiet nights, busy evenings.
DIURNAL = np.array(
    [
        0.25,
        0.15,
        0.1,
        0.08,
        0.08,
        0.12,
        0.3,
        0.6,
        0.85,
        1.0,
        1.0,
        1.0,
        1.1,
        1.05,
        1.0,
        1.0,
        1.05,
        1.15,
        1.3,
        1.4,
        1.35,
        1.1,
        0.8,
        0.45,
    ]
)
DIURNAL_P = DIURNAL / DIURNAL.sum()


def child_rng(seed: int, name: str) -> np.random.Generator:
    """An independent generator per component, so one component's draws never shift another's.

    ``zlib.crc32`` rather than ``hash()``: string hashes are salted per process.
    """
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Milliseconds after midnight, following the diurnal curve."""
    hour = rng.choice(24, size=n, p=DIURNAL_P)
    return hour * HOUR_MS + rng.integers(0, HOUR_MS, n)


def daytime(
    rng: np.random.Generator, t: np.ndarray, lo: np.ndarray | int, hi: np.ndarray | int
) -> np.ndarray:
    """Move each time to a diurnal time of the same day, where that stays inside ``[lo, hi)``."""
    moved = t - t % DAY_MS + time_of_day(rng, len(t))
    return np.where((moved >= lo) & (moved < hi), moved, t)


@dataclass
class World:
    """Everything events are drawn from: per-user attributes plus the entity tables.

    Per-user arrays are indexed by user number; ``-1`` means none. Rings overwrite the rows of
    their members before activity is drawn, so fraud users get the same kind of camouflage
    activity as everyone else, only from their ring's devices and IPs.
    """

    seed: int
    n: int
    start_ms: int
    end_ms: int
    user_ids: pa.Array
    country: np.ndarray
    currency: np.ndarray
    household: np.ndarray
    household_size: np.ndarray
    onboard: np.ndarray
    activity: np.ndarray
    spend_scale: np.ndarray
    devices: np.ndarray  # (n, 3) personal devices, the first one primary
    shared_device: np.ndarray
    shared_device_p: np.ndarray
    onboard_device: np.ndarray
    home_ip: np.ndarray
    onboard_ip: np.ndarray
    carrier: np.ndarray
    cards: np.ndarray  # (n, 2)
    friends: np.ndarray  # (n, 4) user indices
    favourite: np.ndarray
    phone_country: np.ndarray
    phone_nsn: pa.Array
    identity: dict[str, pa.Array]
    device_table: StringTable
    ip_table: StringTable
    merchant_table: StringTable
    merchant_category: np.ndarray
    card_table: StringTable
    carrier_ips: np.ndarray  # (carriers, pool)
    public_ips: np.ndarray
    public_p: np.ndarray
    kiosk_devices: np.ndarray
    kiosk_ips: np.ndarray
    honest_merchants: np.ndarray
    honest_merchant_p: np.ndarray
    id_key: int

    def new_devices(
        self, rng: np.random.Generator, n: int, fingerprints: pa.Array | None = None
    ) -> np.ndarray:
        """Append ``n`` devices with fresh ids (and fresh fingerprints unless given)."""
        idx = np.arange(self.device_table.size, self.device_table.size + n)
        if fingerprints is None:
            fingerprints = fields.from_chars(fields.random_chars(rng, n, 32, fields.HEX))
        return self.device_table.add(id=fields.hex_ids("d", idx, 64, self.id_key), fingerprint=fingerprints)

    def new_ips(self, values: pa.Array) -> np.ndarray:
        """Append IP addresses."""
        return self.ip_table.add(ip=values)

    def new_merchants(self, categories: np.ndarray) -> np.ndarray:
        """Append merchants of the given category indices."""
        idx = np.arange(self.merchant_table.size, self.merchant_table.size + len(categories))
        names = [c[0] for c in vocab.CATEGORIES]
        self.merchant_category = np.concatenate([self.merchant_category, categories]).astype(np.int16)
        return self.merchant_table.add(
            id=fields.hex_ids("m", idx, 40, self.id_key ^ 0x5A5A), category=fields.take(names, categories)
        )

    def new_cards(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Append ``n`` cards with numbers no other card has."""
        numbers = fields.card_numbers(rng, self.card_table.size, n, self.id_key ^ 0xC4D)
        return self.card_table.add(number=numbers)


def _households(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Mostly singles and couples; a few shared flats of 6-12 that share one computer, the honest
    # look-alikes of a device farm.
    values = np.arange(1, 13)
    p = np.array([0.50, 0.25, 0.11, 0.09, 0.045] + [0.005 / 7] * 7)
    sizes = rng.choice(values, size=n, p=p / p.sum())
    cum = np.cumsum(sizes)
    h = int(np.searchsorted(cum, n)) + 1
    sizes = sizes[:h].copy()
    sizes[-1] -= cum[h - 1] - n
    household = np.empty(n, dtype=np.int32)
    household[rng.permutation(n)] = np.repeat(np.arange(h, dtype=np.int32), sizes)
    return household, sizes


def _slots(counts: np.ndarray, first: int, width: int) -> np.ndarray:
    # Rows of consecutive indices starting at ``first``: user u gets counts[u] of them.
    out = np.full((len(counts), width), -1, dtype=np.int32)
    starts = first + np.cumsum(counts) - counts
    for j in range(width):
        has = counts > j
        out[has, j] = starts[has] + j
    return out


def build_world(seed: int, n: int, start_ms: int, days: int) -> World:
    """Draw the honest population of ``n`` users active from ``start_ms`` for ``days`` days."""
    rng = child_rng(seed, "population")
    end_ms = start_ms + days * DAY_MS
    id_key = int(child_rng(seed, "ids").integers(1, 2**62))

    household, hh_sizes = _households(rng, n)
    h = len(hh_sizes)
    hh_country = rng.choice(len(vocab.COUNTRIES), size=h, p=vocab.COUNTRY_WEIGHTS).astype(np.int8)
    country = hh_country[household]
    household_size = hh_sizes[household].astype(np.int16)
    currency = np.asarray(vocab.HOME_CURRENCY, dtype=np.int8)[country]

    device_table = StringTable(("id", "fingerprint"))
    ip_table = StringTable(("ip",))
    world = World(
        seed=seed, n=n, start_ms=start_ms, end_ms=end_ms,
        user_ids=fields.concat("u", fields.zfill(np.arange(n), max(7, len(str(n - 1))))),
        country=country, currency=currency, household=household, household_size=household_size,
        onboard=np.zeros(n, np.int64), activity=np.zeros(n), spend_scale=np.ones(n), devices=np.zeros((n, 3), np.int32),
        shared_device=np.full(n, -1, np.int32), shared_device_p=np.zeros(n, np.float32),
        onboard_device=np.zeros(n, np.int32), home_ip=np.zeros(n, np.int32), onboard_ip=np.zeros(n, np.int32),
        carrier=np.zeros(n, np.int16), cards=np.full((n, 2), -1, np.int32), friends=np.full((n, 4), -1, np.int32),
        favourite=np.zeros(n, np.int32), phone_country=country.copy(), phone_nsn=pa.array([], pa.string()),
        identity={}, device_table=device_table, ip_table=ip_table,
        merchant_table=StringTable(("id", "category")), merchant_category=np.zeros(0, np.int16),
        card_table=StringTable(("number",)), carrier_ips=np.zeros((0, 0), np.int32),
        public_ips=np.zeros(0, np.int32), public_p=np.zeros(0), kiosk_devices=np.zeros(0, np.int32),
        kiosk_ips=np.zeros(0, np.int32), honest_merchants=np.zeros(0, np.int32),
        honest_merchant_p=np.zeros(0), id_key=id_key,
    )  # fmt: skip

    _identities(world, rng, hh_country)
    _places(world, rng, hh_country, hh_sizes)
    _devices(world, rng, hh_sizes)
    _merchants_and_cards(world, rng)
    _social(world, rng)

    # Onboarding: any day of the window, at a human time of day.
    day = rng.integers(0, days, n)
    world.onboard = start_ms + day * DAY_MS + time_of_day(rng, n)
    # Activity level: most users are occasional, a few are very active (gamma, mean 1).
    world.activity = rng.gamma(0.9, 1 / 0.9, n)
    # Some spend a lot more per purchase than others.
    world.spend_scale = rng.lognormal(0.0, 0.6, n)
    return world


def _identities(world: World, rng: np.random.Generator, hh_country: np.ndarray) -> None:
    n, country = world.n, world.country
    codes = fields.take(vocab.COUNTRIES, country.astype(np.int64))
    # Some people hold another country's passport or phone (expats, cross-border workers).
    doc_country = np.where(rng.random(n) < 0.04, rng.integers(0, 4, n), country)
    phone_country = np.where(rng.random(n) < 0.05, rng.integers(0, 4, n), country)
    doc_type, doc_number = fields.documents(rng, doc_country)
    nsn = fields.phone_nsn(rng, phone_country)
    style = rng.choice(4, size=n, p=[0.6, 0.3, 0.07, 0.03])
    line1, city, postcode = fields.addresses(rng, hh_country)
    hh = pa.array(world.household)
    world.phone_country = phone_country.astype(np.int8)
    world.phone_nsn = nsn
    world.identity = {
        "document.type": doc_type,
        "document.number": doc_number,
        "document.issuing_country": fields.take(vocab.COUNTRIES, doc_country),
        "email": fields.emails(rng, country),
        "phone": fields.format_phones(phone_country, nsn, style),
        "address.line1": line1.take(hh),
        "address.city": city.take(hh),
        "address.postcode": postcode.take(hh),
        "address.country": codes,
    }


def _places(world: World, rng: np.random.Generator, hh_country: np.ndarray, hh_sizes: np.ndarray) -> None:
    n, h = world.n, len(hh_sizes)
    # Home broadband: one public IP per household, IPv6 for some.
    v6 = np.flatnonzero(rng.random(h) < 0.15)
    v4 = np.setdiff1d(np.arange(h), v6)
    home = fields.scatter(
        [(v4, fields.ipv4(rng, len(v4), vocab.ISP_FIRST_OCTETS)), (v6, fields.ipv6(rng, len(v6)))], h
    )
    hh_ip = world.new_ips(home)
    world.home_ip = hh_ip[world.household]

    # Mobile carriers put users behind carrier-grade NAT: a small pool of IPs per carrier, each
    # seen from hundreds of users over two weeks.
    n_carriers = len(vocab.COUNTRIES) * CARRIERS_PER_COUNTRY
    pool = max(2, n // 3600)
    world.carrier_ips = world.new_ips(fields.ipv4(rng, n_carriers * pool, vocab.ISP_FIRST_OCTETS)).reshape(
        n_carriers, pool
    )
    share = rng.choice(CARRIERS_PER_COUNTRY, size=n, p=[0.45, 0.35, 0.2])
    world.carrier = (world.country.astype(np.int16) * CARRIERS_PER_COUNTRY + share).astype(np.int16)

    # Cafés, universities, stations: Zipf popularity, the biggest seen from thousands.
    n_public = max(10, n // 2000)
    world.public_ips = world.new_ips(fields.ipv4(rng, n_public, vocab.ISP_FIRST_OCTETS))
    p = 1.0 / np.arange(1, n_public + 1) ** 0.8
    world.public_p = p / p.sum()

    # Onboarding usually from home, else on mobile data, rarely on public wifi.
    r = rng.random(n)
    carrier_pick = world.carrier_ips[world.carrier, rng.integers(0, pool, n)]
    public_pick = world.public_ips[rng.choice(n_public, size=n, p=world.public_p)]
    world.onboard_ip = np.where(r < 0.7, world.home_ip, np.where(r < 0.95, carrier_pick, public_pick))


def _devices(world: World, rng: np.random.Generator, hh_sizes: np.ndarray) -> None:
    n, h = world.n, len(hh_sizes)
    counts = rng.choice([1, 2, 3], size=n, p=[0.62, 0.31, 0.07])
    total = int(counts.sum())
    # A share of devices report one of a few common fingerprints (same phone model, same
    # browser defaults), so a shared fingerprint alone does not mean a shared device.
    n_common = max(20, n // 2000)
    common = fields.from_chars(fields.random_chars(rng, n_common, 32, fields.HEX))
    fp = fields.from_chars(fields.random_chars(rng, total, 32, fields.HEX))
    r = rng.random(total)
    fp = pc.if_else(pa.array(r < 0.05), common.take(pa.array(rng.integers(0, n_common, total))), fp)
    # Some apps and browsers block fingerprinting entirely.
    fp = pc.if_else(pa.array(r > 0.96), pa.scalar(None, pa.string()), fp)
    first = world.new_devices(rng, total, fp)[0]
    world.devices = _slots(counts, int(first), 3)
    world.onboard_device = world.devices[:, 0].copy()

    # A family tablet or PC, used by everyone in the household now and then; shared flats of
    # six or more always have one and use it a lot.
    has_shared = (hh_sizes >= 2) & (rng.random(h) < 0.35) | (hh_sizes >= 6)
    hh_dev = np.full(h, -1, np.int32)
    hh_dev[has_shared] = world.new_devices(rng, int(has_shared.sum()))
    world.shared_device = hh_dev[world.household]
    world.shared_device_p = np.where(
        world.shared_device < 0, 0.0, np.where(world.household_size >= 6, 0.5, 0.15)
    ).astype(np.float32)

    # Library and internet-café computers, each with the venue's IP.
    n_kiosk = max(2, n // 8000)
    world.kiosk_devices = world.new_devices(rng, n_kiosk)
    world.kiosk_ips = world.new_ips(fields.ipv4(rng, n_kiosk, vocab.ISP_FIRST_OCTETS))


def _merchants_and_cards(world: World, rng: np.random.Generator) -> None:
    n = world.n
    m = int(np.clip(n // 40, 150, 5000))
    shares = np.array([c[1] for c in vocab.CATEGORIES])
    cats = rng.choice(len(shares), size=m, p=shares / shares.sum())
    names = [c[0] for c in vocab.CATEGORIES]
    giants = [names.index(g) for g in vocab.GIANT_CATEGORIES]
    cats[: len(giants)] = giants
    world.honest_merchants = world.new_merchants(cats.astype(np.int16))
    # Zipf over merchants, with a handful of giants well above the curve.
    p = 1.0 / np.arange(1, m + 1) ** 1.05
    p[: len(giants)] *= 3.0
    world.honest_merchant_p = p / p.sum()
    # Each user has a local favourite (their supermarket, their café).
    world.favourite = world.honest_merchants[rng.choice(m, size=n, p=world.honest_merchant_p)]

    counts = rng.choice([0, 1, 2], size=n, p=[0.05, 0.75, 0.2])
    first = world.new_cards(rng, int(counts.sum()))[0]
    world.cards = _slots(counts, int(first), 2)
    # Some couples use each other's card.
    order = np.argsort(world.household, kind="stable")
    _, first_pos = np.unique(world.household[order], return_index=True)
    hh_head = order[first_pos][world.household]
    share = (hh_head != np.arange(n)) & (world.household_size >= 2) & (rng.random(n) < 0.08)
    share &= world.cards[hh_head, 0] >= 0
    world.cards[share, 1] = world.cards[hh_head[share], 0]


def _social(world: World, rng: np.random.Generator) -> None:
    # A sparse friendship graph with locality: users laid out by country and household, and
    # friends drawn from nearby positions, so households and circles of friends overlap.
    n = world.n
    hh_key = rng.random(int(world.household.max()) + 1)[world.household]
    order = np.lexsort((hh_key, world.country))
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    n_friends = rng.choice(5, size=n, p=[0.2, 0.3, 0.25, 0.15, 0.1])
    offsets = rng.integers(1, 30, size=(n, 4)) * rng.choice([-1, 1], size=(n, 4))
    target = np.clip(pos[:, None] + offsets, 0, n - 1)
    friends = order[target].astype(np.int32)
    friends[friends == np.arange(n)[:, None]] = -1
    friends[np.arange(4)[None, :] >= n_friends[:, None]] = -1
    world.friends = friends
