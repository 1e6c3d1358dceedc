"""The store client against a live Bolt server: schema, batched idempotent upserts, every statement."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graphrisk.errors import UnknownStatementError
from graphrisk.graph_schema import EDGE_TYPES, PAYMENT_RELS, NodeLabel
from graphrisk.store import CypherLibrary, GraphStore, node_upsert_statement, rel_upsert_statement


def _node(i: str, first: int = 10, last: int = 20, count: int = 1, **props: object) -> dict[str, object]:
    return {"id": i, "first_seen": first, "last_seen": last, "count": count, "props": props}


def test_schema_is_idempotent_and_listed(store: GraphStore) -> None:
    store.ensure_schema()
    store.ensure_schema()
    indexes = store.read("schema/show_indexes")
    labels = {label for row in indexes for label in (row.get("labelsOrTypes") or [])}
    assert {lab.value for lab in NodeLabel} <= labels


def test_node_upsert_applies_each_batch_once(store: GraphStore) -> None:
    rows = [_node("u1", 5, 9, 2, country="GB"), _node("u2", 1, 3, 1)]
    name = node_upsert_statement(NodeLabel.USER)
    assert store.write_rows(name, rows, batch_seq=1) == 2
    assert store.write_rows(name, rows, batch_seq=1) == 0  # a re-run of batch 1 changes nothing
    assert store.write_rows(name, [_node("u1", 2, 30, 3)], batch_seq=2) == 1
    got = {r["props"]["id"]: r["props"] for r in store.read("stats/all_node_properties", skip=0, limit=10)}
    assert got["u1"]["event_count"] == 5
    assert (got["u1"]["first_seen"], got["u1"]["last_seen"]) == (2, 30)
    assert got["u1"]["country"] == "GB"
    assert got["u2"]["event_count"] == 1


@pytest.mark.parametrize("rel", list(EDGE_TYPES))
def test_every_relationship_upsert(store: GraphStore, rel) -> None:
    et = EDGE_TYPES[rel]
    store.write_rows(node_upsert_statement(et.src), [_node("a")], batch_seq=1)
    store.write_rows(node_upsert_statement(et.dst), [_node("b")], batch_seq=1)
    row = {"src": "a", "dst": "b", "count": 2, "first_seen": 10, "last_seen": 20}
    if rel in PAYMENT_RELS:
        row |= {"amount_total": 12.5, "amount_max": 10.0}
    for seq in (1, 1, 2):
        store.write_rows(rel_upsert_statement(rel), [row], batch_seq=seq)
    stats = store.rel_counts()[rel.value]
    assert stats["rels"] == 1
    assert stats["events"] == 4
    assert stats["amount"] == (25.0 if rel in PAYMENT_RELS else 0.0)


# Representative values by parameter name, so every statement, including ones added later,
# runs with parameters of the right type.
_PARAM_DEFAULTS: dict[str, object] = {
    "rows": [], "limit": 5, "skip": 0, "now": 1, "seq": 2, "batch_seq": 1, "partitions": [], "fingerprints": [],
    "read": 0, "accepted": 0, "rejected": 0, "duplicates": 0, "rels": ["USED_DEVICE"], "max_others": 3,
    "min_score": 0.0, "ids": [], "user_ids": [], "members": [], "paths": [],
}  # fmt: skip
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def _params_for(text: str) -> dict[str, object]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    return {p: _PARAM_DEFAULTS.get(p, "x") for p in set(_PARAM.findall(body))}


def test_every_cypher_file_executes(store: GraphStore) -> None:
    """Each statement in cypher/ runs on the live server with representative parameters."""
    store.write("ledger/start_batch", seq=1, partitions=["p/a.jsonl"], fingerprints=["x"], now=1)
    store.write("ledger/finish_batch", seq=1, now=2, read=1, accepted=1, rejected=0, duplicates=0)
    assert store.read("ledger/processed_partitions") == [
        {"path": "p/a.jsonl", "fingerprint": "x", "batch_seq": 1}
    ]
    library = CypherLibrary()
    names = library.names()
    assert len(names) >= 30
    # admin/ last, so the reads above see data; schema before the rest.
    for name in sorted(names, key=lambda n: (n.startswith("admin/"), not n.startswith("schema/"), n)):
        text = library.get(name)
        params = _params_for(text)
        if name.startswith("upsert/"):
            assert store.write(name, **params) == [{"applied": 0}]
        elif re.search(r"\b(CREATE|MERGE|SET|DELETE|REMOVE)\b", text):
            store.write(name, **params)
        else:
            store.read(name, **params)
    assert store.node_counts() == {}


def test_unknown_statement_is_named() -> None:
    with pytest.raises(UnknownStatementError, match="nope"):
        CypherLibrary().get("upsert/nope")


def test_engine_variant_overrides_the_shared_statement(tmp_path: Path) -> None:
    """``<name>.<engine>.cypher`` wins for that engine only, and is not a statement name of its own."""
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "q.cypher").write_text("RETURN 'shared' AS v")
    (tmp_path / "g" / "q.neo4j.cypher").write_text("RETURN 'neo4j' AS v")
    assert CypherLibrary(tmp_path, engine="neo4j").get("g/q") == "RETURN 'neo4j' AS v"
    assert CypherLibrary(tmp_path, engine="arcadedb").get("g/q") == "RETURN 'shared' AS v"
    assert CypherLibrary(tmp_path).get("g/q") == "RETURN 'shared' AS v"
    assert CypherLibrary(tmp_path, engine="neo4j").names() == ["g/q"]
