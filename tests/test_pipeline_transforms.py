"""The pipeline's composites on a TestPipeline, without a store: parse, pseudonymise, dedupe, extract, aggregate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from graphrisk.config import load_settings
from pipelines.aggregate import AggregateEdges, AggregateNodes, merge_edge_facts, merge_node_facts
from pipelines.dedupe import DedupeEvents
from pipelines.extract import EDGES, NODES, ExtractGraph
from pipelines.parse import ParseEvents
from pipelines.pseudonymise import PseudonymiseEvents
from pipelines.read import read_records
from pipelines.records import RawChunk, RawRecord
from tests.factories import START_MS

KEY = b"test-key-0123456789abcdef"
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
        clean = parsed.events | PseudonymiseEvents(KEY, FX)
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
        clean = parsed.events | PseudonymiseEvents(KEY, FX)
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
    from graphrisk.events import parse_event

    parsed = [
        parse_event(r.record) for f in ("e.csv", "e.parquet", "e.jsonl") for r in read_records(tmp_path, f)
    ]
    assert len(parsed) == 3
    assert parsed[0] == parsed[1] == parsed[2]
    assert parsed[0].document.number == "00123"  # CSV values stay strings
    assert [r.line for r in read_records(tmp_path, "e.csv")] == [2]
