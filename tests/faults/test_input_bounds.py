"""Issue 12, item 5: input bounds.

Free text is bounded and free of control characters before it can reach the store; numbers are
numbers (``true`` is not an amount); a NaN or infinite amount is rejected with a reason that
says so; read-stage dead letters keep the raw line, truncated to a bound.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrisk.config import Settings
from graphrisk.events import MAX_FREE_TEXT, FieldError, parse_event
from graphrisk.store import GraphStore
from pipelines.parse import parse_chunk
from pipelines.read import chunk_of_records, read_records
from pipelines.records import MAX_RAW_CHARS, RawRecord
from pipelines.refresh import refresh
from tests.factories import START_MS

DAY = "dt=2026-01-05/hr=00"


def _payment(n: int = 1, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"p{n}", "event_type": "payment", "user_id": "u1", "time": START_MS + n,
            "amount": 12.5, "currency": "EUR", "merchant_id": "m1"} | fields  # fmt: skip


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=300) | st.text(alphabet=st.characters(codec="utf-8"), min_size=120, max_size=200),
                min_size=1, max_size=8))  # fmt: skip
def test_any_category_accepted_is_bounded_and_control_free(categories: list[str]) -> None:
    """Whichever path validates it (columnar or per record), an accepted category is bounded and clean."""
    records = [_payment(n, merchant_category=c) for n, c in enumerate(categories, start=1)]
    chunk = chunk_of_records("f.jsonl", [RawRecord("f.jsonl", n, r) for n, r in enumerate(records, start=1)])
    batch, dead = parse_chunk(chunk)
    assert len(batch.table) + len(dead) == len(records)
    for category in batch.table.column("merchant_category").to_pylist():
        if category is not None:
            assert 1 <= len(category) <= MAX_FREE_TEXT
            assert not any(_is_control(ch) for ch in category), repr(category)
            assert category == category.strip()
    for d in dead:
        assert d.field == "merchant_category"


def test_a_huge_category_is_rejected_and_nul_bytes_never_reach_the_store(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "in"
    (root / DAY).mkdir(parents=True)
    records = [
        _payment(1, merchant_id="m-huge", merchant_category="x" * 1_000_000),
        _payment(2, merchant_id="m-nul", merchant_category="food\x00\x1b[0m\u202e stuff"),
    ]
    (root / DAY / "part-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = refresh(settings, store, root)
    assert report.totals()["accepted"] == 1 and report.totals()["rejected"] == 1
    props = store.read("stats/all_node_properties", skip=0, limit=1000)
    categories = [
        r["props"]["category"] for r in props if r["label"] == "Merchant" and "category" in r["props"]
    ]
    assert categories == ["food[0m stuff"]
    [letter] = (settings.dead_letter_dir / "batch-000001.jsonl").read_text().splitlines()
    d = json.loads(letter)
    assert (d["line"], d["field"]) == (1, "merchant_category")
    assert "at most" in d["reason"]
    assert len(letter) < 3 * MAX_RAW_CHARS  # the dead letter itself is bounded


@pytest.mark.parametrize("amount", [True, False])
def test_a_boolean_amount_is_rejected(amount: bool) -> None:
    with pytest.raises(FieldError) as err:
        parse_event(_payment(amount=amount))
    assert err.value.field == "amount"
    assert "boolean" in err.value.reason


@pytest.mark.parametrize(
    ("text", "says"), [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "Infinity")]
)
def test_a_non_finite_amount_says_so(tmp_path: Path, text: str, says: str) -> None:
    """JSON literals (NaN, Infinity), as Python's json reads them, and the same as CSV text."""
    line = json.dumps(_payment()).replace("12.5", text)
    (tmp_path / "a.jsonl").write_text(line + "\n")
    (tmp_path / "a.csv").write_text(
        "event_id,event_type,user_id,time,amount,currency,merchant_id\n"
        f"p1,payment,u1,{START_MS},{text},EUR,m1\n"
    )
    for name in ("a.jsonl", "a.csv"):
        [record] = read_records(tmp_path, name)
        assert record.record is not None
        chunk = chunk_of_records(name, [record])
        batch, [dead] = parse_chunk(chunk)
        assert len(batch.table) == 0
        assert dead.field == "amount"
        assert says in dead.reason and "Field required" not in dead.reason


def test_read_stage_dead_letters_keep_the_raw_line_truncated(tmp_path: Path) -> None:
    short = '{"event_id": "e1", oops}'
    long = '{"event_id": "' + "y" * (3 * MAX_RAW_CHARS)
    (tmp_path / "a.jsonl").write_text(short + "\n" + long + "\n")
    chunk = chunk_of_records("a.jsonl", list(read_records(tmp_path, "a.jsonl")))
    _, dead = parse_chunk(chunk)
    by_line = {d.line: d for d in dead}
    assert by_line[1].stage == "read" and by_line[1].raw == short
    assert by_line[2].raw is not None and by_line[2].raw.startswith(long[:100])
    assert len(by_line[2].raw) <= MAX_RAW_CHARS + 100
    assert "truncated" in by_line[2].raw
    assert json.loads(by_line[2].to_json())["raw"] == by_line[2].raw
