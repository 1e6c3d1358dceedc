"""Events dated after the batch's ingestion time plus the tolerance go to the dead letters.

One event from a producer whose clock says 2099 would otherwise move every user's account age.
The limit is the batch's ingestion time as the ledger recorded it, so a resumed batch rejects
exactly what its first run did, whatever the clock says when it resumes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from graphrisk.config import Settings, load_settings
from graphrisk.errors import ConfigError
from graphrisk.store import GraphStore
from pipelines.parse import FutureEventLimit, iso_utc, parse_chunk
from pipelines.read import chunk_of_records
from pipelines.records import RawRecord
from pipelines.refresh import LedgerError, _started_at, discover_partitions, refresh
from pipelines.validate import surely_valid, typed_view
from tests.factories import HOUR_MS, START_MS, make_events

Y2099_MS = 4_070_908_800_000  # 2099-01-01T00:00:00Z


def _login(event_id: str, t: int | str, user: str = "user1") -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "login", "user_id": user, "time": t,
            "device": {"id": "d1"}, "ip": "192.0.2.1"}  # fmt: skip


def _dead_letters(settings: Settings, seq: int) -> list[dict[str, Any]]:
    path = settings.dead_letter_dir / f"batch-{seq:06d}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_setting_defaults_to_300_s_reads_the_environment_and_refuses_negatives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GRAPHRISK_FUTURE_EVENT_TOLERANCE_S", raising=False)
    assert load_settings(environment="test").future_event_tolerance_s == 300
    monkeypatch.setenv("GRAPHRISK_FUTURE_EVENT_TOLERANCE_S", "60")
    assert load_settings(environment="test").future_event_tolerance_s == 60
    monkeypatch.setenv("GRAPHRISK_FUTURE_EVENT_TOLERANCE_S", "-1")
    with pytest.raises(ConfigError, match="future_event_tolerance_s"):
        load_settings(environment="test")


def test_reason_names_both_times_in_utc_and_what_to_do() -> None:
    limit = FutureEventLimit(ingested_at_ms=START_MS, tolerance_s=300)
    reason = limit.reason(Y2099_MS)
    assert "2099-01-01T00:00:00.000Z" in reason
    assert "2026-01-05T00:05:00.000Z" in reason  # the limit: ingestion + 300 s
    assert "2026-01-05T00:00:00.000Z" in reason
    assert "producer's clock" in reason and "GRAPHRISK_FUTURE_EVENT_TOLERANCE_S" in reason
    assert iso_utc(START_MS + 999) == "2026-01-05T00:00:00.999Z"


def test_both_paths_reject_past_the_limit_and_accept_up_to_it() -> None:
    """Epoch ms take the vectorised path, ISO times the per-record one: same rule, same reason."""
    limit = FutureEventLimit(ingested_at_ms=START_MS, tolerance_s=300)
    fast = [
        _login("ok", START_MS),
        _login("edge", limit.latest_ms),  # inclusive
        _login("late-ms", limit.latest_ms + 1),
        _login("y2099-ms", Y2099_MS),
        {**_login("bad-and-late", Y2099_MS), "ip": ""},  # a schema error is reported first
    ]
    per_record = [
        _login("ok-iso", "2026-01-05T00:05:00Z"),
        _login("y2099-iso", "2099-01-01T01:00:00+01:00"),  # the same instant as Y2099_MS
    ]
    chunk = chunk_of_records("f.jsonl", [RawRecord("f.jsonl", n, r) for n, r in enumerate(fast, 1)])
    assert chunk.table is not None
    view, unsure = typed_view(chunk.table)
    assert (surely_valid(view) & ~unsure).tolist() == [True, True, True, True, False]
    iso_chunk = chunk_of_records("g.csv", [RawRecord("g.csv", n, r) for n, r in enumerate(per_record, 1)])
    assert iso_chunk.table is not None
    assert typed_view(iso_chunk.table)[1].all()  # ISO text: left to parse_event

    batch, dead = parse_chunk(chunk, limit)
    iso_batch, iso_dead = parse_chunk(iso_chunk, limit)
    assert batch.table.column("event_id").to_pylist() == ["ok", "edge"]
    assert iso_batch.table.column("event_id").to_pylist() == ["ok-iso"]
    got = {d.record["event_id"]: d for d in dead + iso_dead}
    assert set(got) == {"late-ms", "y2099-ms", "y2099-iso", "bad-and-late"}
    assert got["bad-and-late"].field == "ip"
    for event_id, when in (("late-ms", limit.latest_ms + 1), ("y2099-ms", Y2099_MS), ("y2099-iso", Y2099_MS)):
        d = got[event_id]
        assert (d.stage, d.field, d.reason) == ("parse", "time", limit.reason(when))
        assert d.record == {"f.jsonl": fast, "g.csv": per_record}[d.source][d.line - 1]
    # Without a limit (replays of known history) the same chunk keeps the late events.
    assert parse_chunk(chunk)[0].table.num_rows == 4


def test_refresh_dead_letters_an_event_dated_2099_and_keeps_the_rest(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    events = make_events(users=10, hours=2)
    soon = int(time.time() * 1000) + 60_000  # a minute of clock skew: inside the 300 s tolerance
    events.hours[1] += [
        _login("from-2099", Y2099_MS),
        _login("from-2099-iso", "2099-01-01T00:00:00Z", user="user2"),
        _login("skewed-a-minute", soon, user="user3"),
    ]
    events.write(tmp_path / "in")

    report = refresh(settings, store, tmp_path / "in")

    totals = report.totals()
    assert totals["read"] == events.count
    assert totals["rejected"] == 2 and totals["duplicates"] == 0
    assert totals["accepted"] == events.count - 2
    assert totals["read"] == totals["accepted"] + totals["rejected"] + totals["duplicates"]
    assert report.batches[0].counts["rejected_by_stage"] == {"parse": 2}

    started_at = store.read("ledger/batches", limit=1)[0]["started_at"]
    limit = FutureEventLimit(int(started_at), settings.future_event_tolerance_s)
    letters = _dead_letters(settings, report.batches[0].seq)
    assert sorted(d["record"]["event_id"] for d in letters) == ["from-2099", "from-2099-iso"]
    for d in letters:
        assert d["source"] == "dt=2026-01-05/hr=01/part-00000.jsonl"
        assert (d["stage"], d["field"], d["reason"]) == ("parse", "time", limit.reason(Y2099_MS))
        assert iso_utc(limit.latest_ms) in d["reason"]
    # No user's activity reaches 2099; the skewed event is in.
    users = {r["label"]: r for r in store.read("stats/node_event_totals")}["User"]
    assert users["last_seen"] == soon


def test_resumed_batch_uses_its_recorded_ingestion_time_not_the_clock(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    """A batch that started at 01:00 on 2026-01-05 and died is resumed months later: events past
    01:05 were future events when it started and must still be rejected."""
    ingested_at = START_MS + HOUR_MS
    events = make_events(users=10, hours=1)  # all inside hour 0
    events.hours[0] += [
        _login("inside-tolerance", ingested_at + 299_000),
        _login("past-tolerance", ingested_at + 301_000, user="user2"),
    ]
    events.write(tmp_path / "in")
    parts = discover_partitions(tmp_path / "in")
    store.write(
        "ledger/start_batch",
        seq=1,
        partitions=[p.path for p in parts],
        fingerprints=[p.fingerprint for p in parts],
        now=ingested_at,
    )
    assert store.read("ledger/unfinished_batch")[0]["started_at"] == ingested_at

    report = refresh(settings, store, tmp_path / "in")

    assert [(b.seq, b.resumed) for b in report.batches] == [(1, True)]
    totals = report.totals()
    assert (totals["read"], totals["accepted"], totals["rejected"]) == (events.count, events.count - 1, 1)
    limit = FutureEventLimit(ingested_at, settings.future_event_tolerance_s)
    [letter] = _dead_letters(settings, 1)
    assert letter["record"]["event_id"] == "past-tolerance"
    assert (letter["field"], letter["reason"]) == ("time", limit.reason(ingested_at + 301_000))
    assert "2026-01-05T01:05:00.000Z" in letter["reason"]
    assert store.read("ledger/unfinished_batch") == []


def test_an_unfinished_batch_without_a_recorded_start_is_not_resumed_on_the_clock() -> None:
    with pytest.raises(LedgerError, match="batch 3 has no started_at"):
        _started_at({"seq": 3, "partitions": ["a.jsonl"], "started_at": None})
    assert _started_at({"seq": 3, "started_at": START_MS}) == START_MS
