"""Small, deterministic event files for tests, with the raw sensitive values they contain."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOUR_MS = 3_600_000
START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z


def luhn_complete(prefix: str) -> str:
    """``prefix`` plus the Luhn check digit."""
    digits = [int(c) for c in prefix + "0"]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return prefix + str((10 - total % 10) % 10)


@dataclass
class EventSet:
    """Events per hour and every raw sensitive string in them."""

    hours: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    sensitive: set[str] = field(default_factory=set)

    def write(self, root: Path, hours: list[int] | None = None) -> list[Path]:
        """Write the chosen hours as ``dt=.../hr=HH/part-00000.jsonl`` files."""
        paths = []
        for h in hours if hours is not None else sorted(self.hours):
            path = root / "dt=2026-01-05" / f"hr={h:02d}" / "part-00000.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(e) + "\n" for e in self.hours[h]))
            paths.append(path)
        return paths

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.hours.values())


def make_events(users: int = 40, hours: int = 3, seed: int = 0) -> EventSet:
    """Onboardings, logins and payments over ``hours`` hours; a few users share identifiers."""
    rng = random.Random(seed)
    out = EventSet()
    n = 0

    def add(hour: int, event: dict[str, Any]) -> None:
        nonlocal n
        n += 1
        event |= {"event_id": f"t{seed}-{n}", "time": START_MS + hour * HOUR_MS + rng.randrange(HOUR_MS)}
        out.hours.setdefault(hour, []).append(event)

    for u in range(users):
        hour = u % hours
        shared = u % 5 == 0  # every fifth user re-uses the phone and device of user 0
        email = f"User.{u}@Example.org"
        phone = "+44 7700 900000" if shared else f"+44 7700 9{u:05d}"
        doc = f"P{seed}{u:06d}"
        card = luhn_complete(f"4000{seed:02d}{u:09d}")
        ip = f"10.{seed}.{u // 250}.{u % 250}"
        address = f"{u} Test Street"
        out.sensitive |= {email, email.lower(), phone, phone.replace(" ", ""), doc, card, ip, address}
        user = f"user{u}"
        add(
            hour,
            {
                "event_type": "onboarding",
                "user_id": user,
                "document": {"type": "passport", "number": doc, "issuing_country": "GB"},
                "device": {"id": "dev0" if shared else f"dev{u}", "fingerprint": f"fp{u}"},
                "email": email,
                "phone": phone,
                "ip": ip,
                "address": {"line1": address, "city": "Leeds", "postcode": "LS1 1AA", "country": "GB"},
            },
        )
        add(hour, {"event_type": "login", "user_id": user, "device": {"id": f"dev{u}"}, "ip": ip})
        add(
            hour,
            {
                "event_type": "payment",
                "user_id": user,
                "amount": round(rng.uniform(1, 200), 2),
                "currency": "GBP",
                "merchant_id": f"m{u % 7}",
                "card_number": card,
            },
        )
        if u > 0:
            add(
                hour,
                {
                    "event_type": "payment",
                    "user_id": user,
                    "amount": 25.0,
                    "currency": "EUR",
                    "counterparty_id": f"user{u - 1}",
                },
            )
    return out


def add_bad_records(events: EventSet, hour: int) -> dict[str, str]:
    """Append invalid and duplicate records to ``hour``; returns event_id → expected bad field."""
    bad = {
        "bad-amount": ("amount", {"event_type": "payment", "user_id": "user1", "amount": -3, "currency": "EUR",
                                  "merchant_id": "m1", "time": START_MS}),
        "bad-time": ("time", {"event_type": "login", "user_id": "user1", "device": {"id": "d"}, "ip": "1.1.1.1",
                              "time": "yesterday"}),
        "bad-email": ("email", {"event_type": "onboarding", "user_id": "userX", "time": START_MS,
                                "document": {"type": "passport", "number": "ZZ1234", "issuing_country": "GB"},
                                "device": {"id": "dx"}, "email": "no-at-sign", "phone": "+447700900999",
                                "ip": "1.1.1.1",
                                "address": {"line1": "x", "city": "y", "country": "GB"}}),
        "bad-currency": ("currency", {"event_type": "payment", "user_id": "user1", "amount": 3, "currency": "XXX",
                                      "merchant_id": "m1", "time": START_MS}),
        "missing-ip": ("ip", {"event_type": "login", "user_id": "user1", "device": {"id": "d"}, "time": START_MS}),
    }  # fmt: skip
    for event_id, (_, record) in bad.items():
        events.hours[hour].append({"event_id": event_id, **record})
    events.hours[hour].append(dict(events.hours[hour][0]))  # an exact replay: a duplicate
    return {k: v[0] for k, v in bad.items()}
