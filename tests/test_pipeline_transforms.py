"""The pipeline's composites on a TestPipeline, without a store: parse, pseudonymise, dedupe, extract, aggregate."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrisk.clean_event import RepeatedIdentifiers, clean_event
from graphrisk.config import load_settings
from graphrisk.errors import NormalisationError
from graphrisk.events import FieldError, parse_event
from graphrisk.graph_schema import NodeLabel
from graphrisk.pseudonymise import Pseudonymiser
from graphrisk.secrets import secret_ref
from pipelines.aggregate import (
    AggregateEdges,
    AggregateNodes,
    edge_fact_schema,
    merge_edge_facts,
    merge_edge_tables,
    merge_node_facts,
    merge_node_tables,
    node_fact_schema,
    presum_edge_facts,
    presum_node_facts,
)
from pipelines.clean_batch import clean_batch
from pipelines.dedupe import DedupeEvents, dedupe_table
from pipelines.extract import EDGES, NODES, ExtractGraph
from pipelines.parse import FutureEventLimit, ParseEvents, parse_chunk
from pipelines.pseudonymise import PseudonymiseEvents
from pipelines.read import chunk_of_records, read_records
from pipelines.records import RawChunk, RawRecord
from pipelines.validate import event_columns, surely_valid, typed_view
from tests.factories import START_MS

KEY = b"test-key-0123456789abcdef"
# The DoFn holds a reference; the TestPipeline runs in this process, which holds the key.
KEY_REF = secret_ref("pseudonymisation_key", KEY.decode(), None, in_process=True)
_Y2099_MS = 4_070_908_800_000  # 2099-01-01T00:00:00Z
FX = load_settings().fx_rates


def _login(event_id: str, user: str, device: str, t: int = START_MS) -> dict[str, object]:
    return {"event_id": event_id, "event_type": "login", "user_id": user, "time": t,
            "device": {"id": device}, "ip": "192.0.2.1"}  # fmt: skip


def _pay(
    event_id: str, user: str, amount: float, currency: str = "EUR", t: int = START_MS
) -> dict[str, object]:
    return {"event_id": event_id, "event_type": "payment", "user_id": user, "time": t, "amount": amount,
            "currency": currency, "counterparty_id": "bob"}  # fmt: skip


def test_parse_routes_invalid_records_with_field_and_line() -> None:
    raws = [
        RawRecord("a.jsonl", 1, _login("e1", "u1", "d1")),
        RawRecord("a.jsonl", 2, {**_login("e2", "u1", "d1"), "time": "soon"}),
        RawRecord("a.jsonl", 3, None, "invalid JSON"),
    ]
    with TestPipeline(runner="DirectRunner") as p:
        out = p | beam.Create(RawChunk.of(raws)) | ParseEvents()
        assert_that(
            out.events
            | beam.FlatMap(lambda b: [(b.source, r["line"], r["event_id"]) for r in b.table.to_pylist()]),
            equal_to([("a.jsonl", 1, "e1")]),
        )
        assert_that(
            out.dead | beam.Map(lambda d: (d.line, d.stage, d.field)),
            equal_to([(2, "parse", "time"), (3, "read", "record")]),
            label="dead",
        )


def test_dedupe_counts_replays_once_and_rejects_conflicts() -> None:
    records = [
        RawRecord("a", 1, _pay("e1", "alice", 10)),
        RawRecord("b", 7, _pay("e1", "alice", 10)),  # replay: a duplicate
        RawRecord("c", 2, _pay("e1", "alice", 99)),  # same id, other content: a conflict
        RawRecord("a", 2, _pay("e2", "alice", 5)),
    ]
    with TestPipeline(runner="DirectRunner") as p:
        parsed = p | beam.Create(RawChunk.of(records)) | ParseEvents()
        clean = parsed.events | PseudonymiseEvents(KEY_REF, FX)
        unique = clean.events | DedupeEvents()
        assert_that(
            unique.events | beam.FlatMap(lambda t: [(r["event_id"], r["amount"]) for r in t.to_pylist()]),
            equal_to([("e1", 10.0), ("e2", 5.0)]),
        )
        assert_that(
            unique.dead | beam.Map(lambda d: (d.source, d.line, d.field)),
            equal_to([("c", 2, "event_id")]),
            label="conflict",
        )


def test_extract_and_aggregate_sum_per_entity() -> None:
    records = [
        RawRecord("a", 1, _login("e1", "u1", "d1", START_MS + 5)),
        RawRecord("a", 2, _login("e2", "u1", "d1", START_MS + 1)),
        RawRecord("a", 3, _login("e3", "u2", "d1", START_MS + 9)),
        RawRecord("a", 4, _pay("e4", "u1", 10, "GBP", START_MS + 3)),
        RawRecord("a", 5, _pay("e5", "u1", 30, "EUR", START_MS + 4)),
    ]
    with TestPipeline(runner="DirectRunner") as p:
        parsed = p | beam.Create(RawChunk.of(records)) | ParseEvents()
        clean = parsed.events | PseudonymiseEvents(KEY_REF, FX)
        facts = clean.events | ExtractGraph()
        # One sorted table per label / type; flattened back to (name, row) to compare.
        nodes = (
            facts[NODES]
            | AggregateNodes()
            | "NodeRows" >> beam.FlatMap(lambda t: [(t[0], r) for r in t[1].to_pylist()])
        )
        edges = (
            facts[EDGES]
            | AggregateEdges()
            | "EdgeRows" >> beam.FlatMap(lambda t: [(t[0], r) for r in t[1].to_pylist()])
        )
        assert_that(
            nodes
            | beam.Filter(lambda kv: kv[0] in ("User", "Device"))
            | beam.Map(lambda kv: (kv[0], kv[1]["id"], kv[1]["event_count"])),
            equal_to([("User", "u1", 4), ("User", "u2", 1), ("User", "bob", 2), ("Device", "d1", 3)]),
        )
        assert_that(
            edges | beam.Filter(lambda kv: kv[0] in ("USED_DEVICE", "TRANSFERRED_TO"))
            | beam.Map(lambda kv: (kv[0], kv[1]["src"], kv[1]["count"], kv[1]["first_seen"] - START_MS, kv[1]["amount_total"])),
            equal_to([("USED_DEVICE", "u1", 2, 1, 0.0), ("USED_DEVICE", "u2", 1, 9, 0.0),
                      ("TRANSFERRED_TO", "u1", 2, 3, round(10 * FX["GBP"] + 30, 4))]),
            label="edges",
        )  # fmt: skip


def test_merges_are_order_independent() -> None:
    facts = [(5, 5, 1, 5, {"a": "x"}), (1, 1, 2, 1, {"a": "y"}), (9, 9, 1, 9, {})]
    assert merge_node_facts(facts) == merge_node_facts(list(reversed(facts))) == (1, 9, 4, 5, {"a": "x"})
    assert merge_node_facts([merge_node_facts(facts[:2]), facts[2]]) == merge_node_facts(facts)
    # A later fact without properties never hides an earlier one's (onboarding, then logins).
    assert merge_node_facts([(9, 9, 1, 9, {}), (5, 5, 1, 5, {"country": "GB"})])[4] == {"country": "GB"}
    assert merge_node_facts([(5, 5, 1, 5, {"country": "GB"}), (9, 9, 1, 9, {})])[4] == {"country": "GB"}
    edges = [(3, 3, 1, 2.5, 2.5), (1, 1, 1, 4.0, 4.0)]
    assert merge_edge_facts(edges) == merge_edge_facts(edges[::-1]) == (1, 3, 2, 6.5, 4.0)


def test_csv_parquet_and_jsonl_read_to_the_same_events(tmp_path: Path) -> None:
    flat = {
        "event_id": "e1", "event_type": "onboarding", "schema_version": "1", "user_id": "u1",
        "time": str(START_MS), "document.type": "passport", "document.number": "00123",
        "document.issuing_country": "GB", "device.id": "d1", "device.fingerprint": "",
        "email": "a@example.org", "phone": "+447700900123", "ip": "192.0.2.1",
        "address.line1": "1 Road", "address.city": "Leeds", "address.postcode": "", "address.country": "GB",
        "amount": "", "currency": "", "merchant_id": "", "counterparty_id": "",
    }  # fmt: skip
    with (tmp_path / "e.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(flat))
        w.writeheader()
        w.writerow(flat)
    pq.write_table(pa.Table.from_pylist([{k: (v or None) for k, v in flat.items()}]), tmp_path / "e.parquet")
    nested = {k: v for k, v in flat.items() if "." not in k and v}
    nested |= {"document": {"type": "passport", "number": "00123", "issuing_country": "GB"}, "device": {"id": "d1"},
               "address": {"line1": "1 Road", "city": "Leeds", "country": "GB"}}  # fmt: skip
    (tmp_path / "e.jsonl").write_text(json.dumps(nested) + "\n")
    parsed = [
        parse_event(r.record) for f in ("e.csv", "e.parquet", "e.jsonl") for r in read_records(tmp_path, f)
    ]
    assert len(parsed) == 3
    assert parsed[0] == parsed[1] == parsed[2]
    assert parsed[0].document.number == "00123"  # CSV values stay strings
    assert [r.line for r in read_records(tmp_path, "e.csv")] == [2]


# --- The columnar stages agree with the per-record definitions -------------------------------

_TRICKY_TEXT = st.sampled_from(
    ["", "  ", " x1 ", "x1\n", "\u00a0x1", "x1\x1c", "ab", "abcd", "é1é", "GB", "gb"]
)


def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value; sometimes absent, blank, padded, of another type or out of range."""
    return st.one_of(valid, valid, valid, st.none(), _TRICKY_TEXT, st.integers(-5, 5))


@st.composite
def _raw_records(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["onboarding", "login", "payment", "payment", "other"]))
    ident = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)
    rec: dict[str, Any] = {
        "event_id": draw(_maybe(ident)), "event_type": kind, "user_id": draw(_maybe(st.just("u1"))),
        "time": draw(_maybe(st.sampled_from([START_MS, START_MS + 7, 123, "2026-01-05T10:00:00Z", _Y2099_MS,
                                              "2099-01-01T00:00:00Z"]))),
    }  # fmt: skip
    if draw(st.booleans()):
        rec["schema_version"] = draw(st.sampled_from([1, 2, "1", None]))
    if kind in ("onboarding", "login"):
        rec["device.id"] = draw(_maybe(ident))
        rec["device.fingerprint"] = draw(_maybe(st.just("fp1")))
        rec["ip"] = draw(_maybe(st.sampled_from(["192.0.2.1", "2001:db8::1", "999.1.1.1"])))
    if kind == "onboarding":
        rec |= {
            "document.type": draw(_maybe(st.sampled_from(["passport", "visa"]))),
            "document.number": draw(_maybe(st.sampled_from(["00123", "AB-12", "x"]))),
            "document.issuing_country": draw(_maybe(st.just("GB"))),
            "email": draw(_maybe(st.sampled_from(["a@example.org", "A.B@Example.org", "no-at"]))),
            "phone": draw(_maybe(st.sampled_from(["+447700900123", "+44 7700 900124", "12"]))),
            "address.line1": draw(_maybe(st.just("1 Road"))), "address.city": draw(_maybe(st.just("Leeds"))),
            "address.postcode": draw(_maybe(st.just("LS1 1AA"))), "address.country": draw(_maybe(st.just("GB"))),
        }  # fmt: skip
    if kind in ("payment", "other"):
        rec |= {
            "amount": draw(_maybe(st.sampled_from([10.5, 0.0, -1.0, 2e9, 3]))),
            "currency": draw(_maybe(st.sampled_from(["EUR", "GBP", "XXX", "eur"]))),
            "merchant_id": draw(st.one_of(st.none(), st.just("m1"), _TRICKY_TEXT)),
            "counterparty_id": draw(st.one_of(st.none(), st.just("u2"), st.just("u1"))),
            "card_number": draw(st.one_of(st.none(), st.just("4111111111111111"), st.just("4111111111111112"))),
            "merchant_category": draw(st.one_of(st.none(), st.just("food"), _TRICKY_TEXT)),
        }  # fmt: skip
    if draw(st.integers(0, 9)) == 0:
        rec["surprise"] = "extra"
    if draw(st.booleans()):  # JSON producers nest objects; columnar files have dotted columns
        for head in ("document", "device", "address"):
            sub = {k.split(".", 1)[1]: rec.pop(k) for k in list(rec) if k.startswith(head + ".")}
            if sub:
                rec[head] = sub
    return rec


def _reference_parse(
    records: list[dict[str, Any]], future: FutureEventLimit | None = None
) -> tuple[dict[int, dict[str, Any]], set[tuple[int, str, str]]]:
    accepted, rejected = {}, set()
    for line, record in enumerate(records, start=1):
        try:
            event = parse_event(record)
        except FieldError as exc:
            rejected.add((line, exc.field, exc.reason))
            continue
        if future is not None and event.time > future.latest_ms:
            rejected.add((line, "time", future.reason(event.time)))
        else:
            accepted[line] = event_columns(event)
    return accepted, rejected


# START_MS is accepted, START_MS + 7, the ISO hour 10 and 2099 are past this limit.
_FUTURE = st.sampled_from([None, FutureEventLimit(START_MS + 3, 0)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_raw_records(), min_size=1, max_size=25), _FUTURE)
def test_vectorised_validation_agrees_with_pydantic(
    records: list[dict[str, Any]], future: FutureEventLimit | None
) -> None:
    """Same accepted events with the same values, same rejected lines with the same field and reason."""
    _assert_parse_agrees("f.jsonl", records, future)


def _assert_parse_agrees(
    source: str, records: list[dict[str, Any]], future: FutureEventLimit | None = None
) -> None:
    chunk = chunk_of_records(source, [RawRecord(source, n, r) for n, r in enumerate(records, start=1)])
    batch, dead = parse_chunk(chunk, future)
    got = {r.pop("line"): r for r in batch.table.to_pylist() if r.pop("row") is not None}
    want, rejected = _reference_parse(records, future)
    assert got == want
    assert {(d.line, d.field, d.reason) for d in dead} == rejected
    assert all(d.stage == "parse" and d.record == records[d.line - 1] for d in dead)


def _as_csv_row(record: dict[str, Any], columns: list[str]) -> dict[str, str]:
    """A record as a CSV reader gives it back: flat, every column present, every value text."""
    flat = {**record}
    for head in ("document", "device", "address"):
        for k, v in (flat.pop(head, None) or {}).items():
            flat[f"{head}.{k}"] = v
    return {c: "" if flat.get(c) is None else str(flat[c]) for c in columns}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_raw_records(), min_size=1, max_size=25), _FUTURE)
def test_vectorised_validation_agrees_with_pydantic_on_csv_text(
    records: list[dict[str, Any]], future: FutureEventLimit | None
) -> None:
    """CSV holds blanks for absent fields and numbers as text; the fast path must still only take
    rows pydantic accepts, with the values pydantic gives them."""
    columns = sorted({k for r in records for k in _flat_keys(r)})
    _assert_parse_agrees("f.csv", [_as_csv_row(r, columns) for r in records], future)


def _flat_keys(record: dict[str, Any]) -> list[str]:
    out = []
    for k, v in record.items():
        out += [f"{k}.{sub}" for sub in v] if isinstance(v, dict) else [k]
    return out


def test_the_fast_path_takes_clean_csv_rows() -> None:
    """Blank cells of other event types' columns and times as digit text still skip pydantic."""
    rows = [
        {"event_id": f"e{i}", "event_type": "login", "user_id": "u1", "time": str(START_MS + i),
         "device.id": "d1", "device.fingerprint": "", "ip": "192.0.2.1", "amount": "", "currency": " ",
         "merchant_id": ""}
        for i in range(3)
    ] + [{"event_id": "e9", "event_type": "payment", "user_id": "u1", "time": str(START_MS), "device.id": "",
          "device.fingerprint": "", "ip": "", "amount": "12.50", "currency": "EUR", "merchant_id": "m1"}]  # fmt: skip
    chunk = chunk_of_records("f.csv", [RawRecord("f.csv", n, r) for n, r in enumerate(rows, start=1)])
    view, unsure = typed_view(chunk.table)
    assert surely_valid(view).all() and not unsure.any()
    batch, dead = parse_chunk(chunk)
    assert not dead and batch.table.column("amount").to_pylist()[-1] == 12.5
    iso = [dict(rows[0], time="2026-01-05T10:00:00Z")]
    chunk = chunk_of_records("f.csv", [RawRecord("f.csv", 1, iso[0])])
    assert typed_view(chunk.table)[1].tolist() == [True]  # left to parse_event, which reads ISO
    assert parse_chunk(chunk)[0].table.num_rows == 1


def test_the_fast_path_takes_clean_columnar_rows() -> None:
    """Not only sound: plain valid Parquet-like rows do skip pydantic."""
    rows = [{**_login(f"e{i}", "u1", "d1"), "amount": None} for i in range(3)]
    flat = [{k: v for k, v in r.items() if k != "device"} | {"device.id": "d1"} for r in rows]
    assert surely_valid(pa.Table.from_pylist(flat)).all()


@st.composite
def _valid_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["onboarding", "login", "payment"]))
    base = {"event_id": "e", "event_type": kind, "user_id": "u1", "time": START_MS + draw(st.integers(0, 9))}
    ip = draw(st.sampled_from(["192.0.2.1", "192.0.2.2", "::ffff:192.0.2.1", "2001:db8::1", "300.1.1.1"]))
    if kind == "login":
        return base | {"device": {"id": "d1", "fingerprint": draw(st.sampled_from([None, "fp"]))}, "ip": ip}
    if kind == "onboarding":
        return base | {
            "document": {"type": "passport", "number": draw(st.sampled_from(["00123", "AB 12", "-a-"])),
                         "issuing_country": "GB"},
            "device": {"id": "d1"}, "ip": ip,
            "email": draw(st.sampled_from(["a@example.org", "A@EXAMPLE.org", "x@localhost"])),
            "phone": draw(st.sampled_from(["+447700900123", "+44 7700 900123", "+1 555"])),
            "address": {"line1": draw(st.sampled_from(["1 Road", "1, Road.", "!!"])), "city": "Leeds",
                        "country": "GB"},
        }  # fmt: skip
    dest = draw(st.sampled_from([{"merchant_id": "m1"}, {"counterparty_id": "u2"}]))
    card = draw(
        st.sampled_from([{}, {"card_number": "4111 1111 1111 1111"}, {"card_number": "4111111111111112"}])
    )
    return base | dest | card | {"amount": draw(st.sampled_from([10.0, 0.1, 33.33])),
                                 "currency": draw(st.sampled_from(["EUR", "GBP", "XXX"]))}  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.lists(_valid_events(), min_size=1, max_size=20))
def test_clean_batch_agrees_with_clean_event(records: list[dict[str, Any]]) -> None:
    """Every row as clean_event makes it, and every failure with clean_event's field and reason."""
    chunk = chunk_of_records("f", [RawRecord("f", n, r) for n, r in enumerate(records, start=1)])
    batch, dead = parse_chunk(chunk)
    assert not dead
    ids = RepeatedIdentifiers(Pseudonymiser(KEY))
    table, errors = clean_batch(batch.table, "f", ids, FX)
    got = {r["line"]: r for r in table.to_pylist()}
    lines = batch.table.column("line").to_pylist()
    for row, line in enumerate(lines):
        try:
            want = clean_event(parse_event(records[line - 1]), ids, FX)
        except NormalisationError as exc:
            assert (errors[row].field, errors[row].reason) == (exc.field, exc.reason)
            assert line not in got
            continue
        assert row not in errors
        assert {k: got[line][k] for k in want} == want
        assert all(v is None for k, v in got[line].items() if k not in want and k not in ("source", "line"))


_NODE_FACT = st.tuples(
    st.sampled_from(["a", "b", "c"]), st.integers(0, 5), st.integers(0, 3),
    st.sampled_from([{}, {"country": "GB"}, {"country": "FR"}, {"onboarded_at": 7, "country": "GB"}]),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_NODE_FACT, min_size=1, max_size=6), min_size=1, max_size=4))
def test_columnar_node_merge_agrees_with_fold(
    parts: list[list[tuple[str, int, int, dict[str, Any]]]],
) -> None:
    """Facts split into batches, pre-summed per batch and merged: what folding them all gives."""
    label = NodeLabel.USER
    schema = node_fact_schema(label)

    def table(facts: list[tuple[str, int, int, dict[str, Any]]]) -> pa.Table:
        rows = [{"id": i, "first_seen": t, "last_seen": t + d, "event_count": 1, "props_time": t if p else -1,
                 "onboarded_at": p.get("onboarded_at"), "country": p.get("country")} for i, t, d, p in facts]  # fmt: skip
        return pa.Table.from_pylist(rows, schema=schema)

    merged = merge_node_tables(label, [presum_node_facts(table(p)) for p in parts])
    every = [f for p in parts for f in p]
    want = {}
    for node_id in sorted({f[0] for f in every}):
        first, last, count, _, props = merge_node_facts(
            [(t, t + d, 1, t, p) for i, t, d, p in every if i == node_id]
        )
        want[node_id] = (first, last, count, props)
    got = {
        r["id"]: (r["first_seen"], r["last_seen"], r["event_count"],
                  {k: r[k] for k in ("onboarded_at", "country") if r[k] is not None})
        for r in merged.to_pylist()
    }  # fmt: skip
    assert got == want
    assert merged.column("id").to_pylist() == sorted(want)


_EDGE_FACT = st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["x", "y"]), st.integers(0, 9),
                       st.integers(0, 40).map(lambda q: q / 4))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_EDGE_FACT, min_size=1, max_size=6), min_size=1, max_size=4))
def test_columnar_edge_merge_agrees_with_fold(parts: list[list[tuple[str, str, int, float]]]) -> None:
    def table(facts: list[tuple[str, str, int, float]]) -> pa.Table:
        rows = [{"src": s, "dst": d, "count": 1, "first_seen": t, "last_seen": t, "amount_total": a,
                 "amount_max": a} for s, d, t, a in facts]  # fmt: skip
        return pa.Table.from_pylist(rows, schema=edge_fact_schema())

    merged = merge_edge_tables([presum_edge_facts(table(p)) for p in parts])
    every = [f for p in parts for f in p]
    want = {
        key: merge_edge_facts([(t, t, 1, a, a) for s, d, t, a in every if (s, d) == key])
        for key in sorted({(s, d) for s, d, _, _ in every})
    }
    got = {(r["src"], r["dst"]): (r["first_seen"], r["last_seen"], r["count"], r["amount_total"], r["amount_max"])
           for r in merged.to_pylist()}  # fmt: skip
    assert got == want
    assert list(got) == sorted(want)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["e1", "e2", "e3"]), st.sampled_from(["a", "b"]), st.integers(1, 5),
                          st.sampled_from([1.0, 2.0])), max_size=12))  # fmt: skip
def test_dedupe_keeps_the_first_copy_and_tells_replays_from_conflicts(
    copies: list[tuple[str, str, int, float]],
) -> None:
    rows = [{"source": s, "line": ln, "event_id": e, "amount": a} for e, s, ln, a in copies]
    table = pa.Table.from_pylist(rows, schema=pa.schema([("source", pa.string()), ("line", pa.int64()),
                                                         ("event_id", pa.string()), ("amount", pa.float64())]))  # fmt: skip
    unique, duplicates, dead = dedupe_table(table)
    firsts = {}
    for r in sorted(rows, key=lambda r: (r["event_id"], r["source"], r["line"])):
        firsts.setdefault(r["event_id"], r)
    assert unique.to_pylist() == list(firsts.values())
    others = [r for r in rows if r is not firsts[r["event_id"]]]
    conflicts = [r for r in others if r["amount"] != firsts[r["event_id"]]["amount"]]
    assert duplicates == len(others) - len(conflicts)
    assert sorted((d.source, d.line) for d in dead) == sorted((r["source"], r["line"]) for r in conflicts)
    assert all(d.stage == "dedupe" and d.field == "event_id" for d in dead)


@given(st.text(max_size=40))
def test_token_is_unchanged_by_the_one_shot_hmac(value: str) -> None:
    """Node ids must not change (a new id would be a new node): the same HMAC as hmac.new gives."""
    want = hmac.new(KEY, f"Email\x1f{value}".encode(), hashlib.sha256).hexdigest()[:32]
    assert Pseudonymiser(KEY).token(NodeLabel.EMAIL, value) == want
