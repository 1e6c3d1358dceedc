"""Everyday activity of every user: the onboarding event, logins and payments.

Fraud users get the same everyday activity (from their ring's devices and IPs, see
``rings``); that camouflage is what keeps the typologies from being separable by volume.
"""

from __future__ import annotations

import numpy as np

from graphrisk.synthetic import fields, vocab
from graphrisk.synthetic.model import DAY_MS, HOUR_MS, LOGIN, MINUTE_MS, ONBOARDING, PAYMENT, EventBlock
from graphrisk.synthetic.population import World, child_rng, daytime

LOGINS_PER_USER = 4.0
PAYMENTS_PER_USER = 5.0
P2P_SHARE = 0.12
ONLINE_CATEGORIES = frozenset({"online_retail", "electronics", "travel", "entertainment", "gift_cards"})

_CAT_MEDIAN = np.array([c[2] for c in vocab.CATEGORIES])
_CAT_SIGMA = np.array([c[3] for c in vocab.CATEGORIES])
_EUR_RATE = np.array(vocab.EUR_RATE)


def everyday_events(world: World) -> EventBlock:
    """Onboarding, logins and payments for all users, drawn from their current attributes."""
    rng = child_rng(world.seed, "activity")
    onboarding = EventBlock.make(
        ONBOARDING,
        np.arange(world.n),
        world.onboard,
        device=world.onboard_device,
        ip=world.onboard_ip,
    )
    logins = _logins(world, rng)
    payments = _payments(world, rng, logins)
    return EventBlock.concat([onboarding, logins, *payments])


def merchant_amounts(
    rng: np.random.Generator, category: np.ndarray, currency: np.ndarray, scale: float | np.ndarray = 1.0
) -> np.ndarray:
    """Lognormal amounts around each category's median, in the payment's currency."""
    eur = scale * _CAT_MEDIAN[category] * np.exp(_CAT_SIGMA[category] * rng.standard_normal(len(category)))
    return np.round(np.maximum(eur * _EUR_RATE[currency], 0.5), 2)


def p2p_amounts(rng: np.random.Generator, currency: np.ndarray) -> np.ndarray:
    """Transfers between friends: mostly small, often round, with the odd rent-sized one."""
    n = len(currency)
    eur = 25.0 * np.exp(1.0 * rng.standard_normal(n))
    r = rng.random(n)
    rent = r < 0.04
    eur[rent] = 700.0 * np.exp(0.35 * rng.standard_normal(int(rent.sum())))
    # A car, a deposit, a loan between relatives: rare, large, round.
    big = r > 0.99
    eur[big] = 1500.0 * np.exp(0.7 * rng.standard_normal(int(big.sum())))
    rent |= big
    amount = eur * _EUR_RATE[currency]
    r = rng.random(n)
    amount = np.where(r < 0.35, np.maximum(np.round(amount / 5) * 5, 5), amount)
    amount = np.where(rent, np.round(amount / 10) * 10, amount)
    return np.round(np.maximum(amount, 1.0), 2)


def _counts(world: World, rng: np.random.Generator, per_user: float) -> np.ndarray:
    # Poisson in the time a user has been a customer, scaled so the mean over users is
    # ``per_user``: someone onboarded an hour before the window ends has done little yet.
    exposure = world.activity * (world.end_ms - world.onboard) / DAY_MS
    rate = per_user * world.n / max(float(exposure.sum()), 1e-9)
    return rng.poisson(exposure * rate)


def _after_onboarding(rng: np.random.Generator, world: World, user: np.ndarray) -> np.ndarray:
    lo = world.onboard[user] + MINUTE_MS
    span = np.maximum(world.end_ms - lo, 1)
    t = lo + (rng.random(len(user)) * span).astype(np.int64)
    return np.minimum(daytime(rng, t, lo, world.end_ms), world.end_ms - 1)


def _logins(world: World, rng: np.random.Generator) -> EventBlock:
    counts = _counts(world, rng, LOGINS_PER_USER)
    user = np.repeat(np.arange(world.n), counts)
    m = len(user)
    t = _after_onboarding(rng, world, user)

    # Mostly the primary device, sometimes a second one, now and then the family tablet.
    n_dev = (world.devices[user] >= 0).sum(axis=1)
    r = rng.random(m)
    slot = np.minimum(np.where(r < 0.7, 0, np.where(r < 0.9, 1, 2)), n_dev - 1)
    device = world.devices[user, slot]
    shared = rng.random(m) < world.shared_device_p[user]
    device = np.where(shared, world.shared_device[user], device)

    # Home broadband, carrier NAT, public wifi, or a one-off (hotel, travel, VPN).
    r = rng.random(m)
    pool = world.carrier_ips.shape[1]
    ip = np.where(
        r < 0.55,
        world.home_ip[user],
        np.where(
            r < 0.88,
            world.carrier_ips[world.carrier[user], rng.integers(0, pool, m)],
            world.public_ips[rng.choice(len(world.public_ips), size=m, p=world.public_p)],
        ),
    )
    one_off = np.flatnonzero(r >= 0.96)
    octets = vocab.ISP_FIRST_OCTETS + vocab.HOSTING_FIRST_OCTETS
    ip[one_off] = world.new_ips(fields.ipv4(rng, len(one_off), octets))

    # A library or internet-café computer, which comes with the venue's IP.
    kiosk = np.flatnonzero(rng.random(m) < 0.002)
    k = rng.integers(0, len(world.kiosk_devices), len(kiosk))
    device[kiosk] = world.kiosk_devices[k]
    ip[kiosk] = world.kiosk_ips[k]
    return EventBlock.make(LOGIN, user, t, device=device, ip=ip)


def _payments(world: World, rng: np.random.Generator, logins: EventBlock) -> list[EventBlock]:
    counts = _counts(world, rng, PAYMENTS_PER_USER)
    user = np.repeat(np.arange(world.n), counts)
    m = len(user)
    t = _after_onboarding(rng, world, user)

    # Most payments follow a login within minutes (logins are grouped by user, in order).
    n_login = np.bincount(logins.user, minlength=world.n)
    login_start = np.cumsum(n_login) - n_login
    has_login = n_login[user] > 0
    near = has_login & (rng.random(m) < 0.6)
    j = login_start[user] + (rng.random(m) * n_login[user]).astype(np.int64)
    after = logins.time[np.minimum(j, max(len(logins) - 1, 0))] if len(logins) else t
    t = np.where(near, after + rng.exponential(4 * MINUTE_MS, m).astype(np.int64), t)
    t = np.minimum(t, world.end_ms - 1)

    # Transfers to friends, who must be customers by then.
    n_friends = (world.friends[user] >= 0).sum(axis=1)
    p2p = (n_friends > 0) & (rng.random(m) < P2P_SHARE)
    order = np.argsort(world.friends[user] < 0, axis=1, kind="stable")
    slot = np.minimum((rng.random(m) * n_friends).astype(np.int64), 3)
    friend = np.take_along_axis(world.friends[user], order, axis=1)[np.arange(m), slot]
    cp = np.where(p2p, friend, -1)
    late = (cp >= 0) & (t < world.onboard[np.maximum(cp, 0)] + MINUTE_MS)
    moved = world.onboard[np.maximum(cp, 0)] + MINUTE_MS + rng.integers(0, DAY_MS, m)
    # A friend who joins too late to be paid this way gets a card payment elsewhere instead.
    cp[late & (moved >= world.end_ms)] = -1
    t = np.where(late & (moved < world.end_ms), moved, t)
    p2p = cp >= 0
    t = np.minimum(np.maximum(t, world.onboard[user] + MINUTE_MS), world.end_ms - 1)

    currency = world.currency[user].copy()
    merchant = np.where(
        rng.random(m) < 0.35,
        world.favourite[user],
        world.honest_merchants[rng.choice(len(world.honest_merchants), size=m, p=world.honest_merchant_p)],
    )
    merchant = np.where(p2p, -1, merchant)
    category = world.merchant_category[np.maximum(merchant, 0)]
    online = np.isin(category, [i for i, c in enumerate(vocab.CATEGORIES) if c[0] in ONLINE_CATEGORIES])
    currency[online & (rng.random(m) < 0.08)] = vocab.CURRENCIES.index("USD")
    amount = np.where(
        p2p, p2p_amounts(rng, currency), merchant_amounts(rng, category, currency, world.spend_scale[user])
    )

    # P2P transfers come from the account balance; card payments use the main card mostly.
    card_slot = np.where(rng.random(m) < 0.85, 0, 1)
    card = world.cards[user, card_slot]
    card = np.where(card < 0, world.cards[user, 0], card)
    card = np.where(p2p, -1, card)
    blocks = [
        EventBlock.make(
            PAYMENT, user, t, merchant=merchant, counterparty=cp, card=card, amount=amount, currency=currency
        )
    ]

    # Splitting the bill: some transfers are paid back, a day or so later.
    back = np.flatnonzero(p2p & (rng.random(m) < 0.25))
    t_back = t[back] + rng.exponential(DAY_MS, len(back)).astype(np.int64) + MINUTE_MS
    keep = t_back < world.end_ms
    back, t_back = back[keep], t_back[keep]
    blocks.append(
        EventBlock.make(
            PAYMENT,
            cp[back],
            t_back,
            counterparty=user[back],
            amount=np.round(amount[back] * rng.uniform(0.3, 1.0, len(back)), 2),
            currency=world.currency[cp[back]],
        )
    )
    blocks.append(_big_days(world, rng))
    return blocks


def _big_days(world: World, rng: np.random.Generator) -> EventBlock:
    # Honest bursts of large purchases (a new laptop and a holiday booked in one evening), the
    # honest look-alike of a bust-out.
    names = [c[0] for c in vocab.CATEGORIES]
    big = [names.index(c) for c in ("electronics", "travel", "jewellery", "online_retail")]
    shoppers = np.flatnonzero(rng.random(world.n) < 0.015)
    n_buys = rng.integers(2, 6, len(shoppers))
    user = np.repeat(shoppers, n_buys)
    m = len(user)
    when = _after_onboarding(rng, world, shoppers)
    t = np.repeat(when, n_buys) + rng.integers(0, 3 * HOUR_MS, m)
    keep = t < world.end_ms
    user, t, m = user[keep], t[keep], int(keep.sum())
    candidates = world.honest_merchants[np.isin(world.merchant_category[world.honest_merchants], big)]
    p = world.honest_merchant_p[np.isin(world.merchant_category[world.honest_merchants], big)]
    merchant = candidates[rng.choice(len(candidates), size=m, p=p / p.sum())]
    currency = world.currency[user]
    amount = merchant_amounts(rng, world.merchant_category[merchant], currency, scale=3.0)
    card = world.cards[user, 0]
    return EventBlock.make(PAYMENT, user, t, merchant=merchant, card=card, amount=amount, currency=currency)
