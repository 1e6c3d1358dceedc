"""Invalid records and duplicate deliveries, so the pipeline's dead-letter path gets exercised.

Records are picked uniformly at random, whoever the user is, so neither kind of noise says
anything about fraud. Every invalid record fails ``graphrisk.events.parse_event``.
"""

from __future__ import annotations

import numpy as np

from graphrisk.synthetic.model import LOGIN, ONBOARDING, PAYMENT, EventBlock

INVALID_KINDS = (
    "missing_user_id",
    "time_in_seconds",
    "unknown_event_type",
    "non_positive_amount",
    "lowercase_currency",
    "two_destinations",
    "blank_email",
)
MISSING_USER_ID, TIME_IN_SECONDS, UNKNOWN_EVENT_TYPE = 1, 2, 3
NON_POSITIVE_AMOUNT, LOWERCASE_CURRENCY, TWO_DESTINATIONS, BLANK_EMAIL = 4, 5, 6, 7
# Which kinds (1-based codes into INVALID_KINDS) make sense for each event type.
_APPLIES = {
    ONBOARDING: (MISSING_USER_ID, TIME_IN_SECONDS, UNKNOWN_EVENT_TYPE, BLANK_EMAIL),
    LOGIN: (MISSING_USER_ID, TIME_IN_SECONDS, UNKNOWN_EVENT_TYPE),
    PAYMENT: (
        MISSING_USER_ID,
        TIME_IN_SECONDS,
        UNKNOWN_EVENT_TYPE,
        NON_POSITIVE_AMOUNT,
        LOWERCASE_CURRENCY,
        TWO_DESTINATIONS,
    ),
}
N_CURRENCIES = 4


def choose_invalid(rng: np.random.Generator, etype: np.ndarray, rate: float) -> np.ndarray:
    """An invalid-kind code per event (0 = valid), a share ``rate`` of them non-zero."""
    kinds = np.zeros(len(etype), dtype=np.int8)
    hit = rng.random(len(etype)) < rate
    for t, options in _APPLIES.items():
        rows = np.flatnonzero(hit & (etype == t))
        kinds[rows] = np.asarray(options, dtype=np.int8)[rng.integers(0, len(options), len(rows))]
    return kinds


def corrupt(
    rng: np.random.Generator, events: EventBlock, kinds: np.ndarray, n_users: int, n_merchants: int
) -> None:
    """Break the chosen events in place (a blank email is applied when the email is written)."""
    rows = np.flatnonzero(kinds == MISSING_USER_ID)
    events.user[rows] = -1
    rows = np.flatnonzero(kinds == TIME_IN_SECONDS)
    # The classic unit mistake: epoch seconds where milliseconds are expected.
    events.time[rows] //= 1000
    rows = np.flatnonzero(kinds == UNKNOWN_EVENT_TYPE)
    events.etype[rows] = 3
    rows = np.flatnonzero(kinds == NON_POSITIVE_AMOUNT)
    events.amount[rows] = np.where(rng.random(len(rows)) < 0.2, 0.0, -events.amount[rows])
    rows = np.flatnonzero(kinds == LOWERCASE_CURRENCY)
    events.currency[rows] += N_CURRENCIES
    rows = np.flatnonzero(kinds == TWO_DESTINATIONS)
    to_merchant = rows[events.merchant[rows] < 0]
    events.merchant[to_merchant] = rng.integers(0, n_merchants, len(to_merchant))
    to_user = rows[events.counterparty[rows] < 0]
    events.counterparty[to_user] = (events.user[to_user] + rng.integers(1, n_users, len(to_user))) % n_users


def choose_duplicates(rng: np.random.Generator, kinds: np.ndarray, rate: float) -> np.ndarray:
    """Which valid events are delivered twice (same event id, same content)."""
    return (rng.random(len(kinds)) < rate) & (kinds == 0)
