"""Scoring speed: every user of a 1M-user synthetic graph with a trained model.

Building a 1M-user graph through the Beam pipeline and the store takes longer than this
benchmark is about, so the snapshot tables are built here straight from the generator's
events with pandas (same schema and aggregation rules as ``pipelines/snapshot.py``; raw
identifiers stand in for keyed hashes, which the features never read). A model is trained on a
smaller graph built the same way, promoted, then timed on the big one:

    python bench/scoring.py --users 1000000 --train-users 30000

Prints: snapshot build time (not part of the target), dataset build and prediction time
(the target: ≤ 2 minutes), and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from gnn.registry import ModelRegistry
from gnn.scoring import score_users
from gnn.training import train_entity_model
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel, RelType
from graphrisk.synthetic import generate
from pipelines.snapshot import current_dir, edge_schema, node_schema

# Which event column feeds which relationship (destination id column, event types).
RELATION_SOURCES: dict[RelType, tuple[str, tuple[str, ...]]] = {
    RelType.USED_DEVICE: ("device.id", ("onboarding", "login")),
    RelType.USED_IP: ("ip", ("onboarding", "login")),
    RelType.HAS_DOCUMENT: ("document.number", ("onboarding",)),
    RelType.HAS_EMAIL: ("email", ("onboarding",)),
    RelType.HAS_PHONE: ("phone", ("onboarding",)),
    RelType.LIVES_AT: ("address.line1", ("onboarding",)),
    RelType.USED_CARD: ("card_number", ("payment",)),
    RelType.PAID: ("merchant_id", ("payment",)),
    RelType.TRANSFERRED_TO: ("counterparty_id", ("payment",)),
}
COLUMNS = [
    "event_type",
    "user_id",
    "time",
    "amount",
    "address.country",
    *{c for c, _ in RELATION_SOURCES.values()},
]


def build_snapshot(events_dir: Path, snapshot_dir: Path) -> float:
    """Aggregate events into ``snapshot_dir/current``; returns seconds taken."""
    t0 = time.perf_counter()
    ev = pq.read_table(sorted(events_dir.rglob("*.parquet")), columns=COLUMNS).to_pandas()
    ev = ev[ev["user_id"].notna() & ev["time"].notna()]
    ev["time"] = ev["time"].astype(np.int64)
    out = current_dir(snapshot_dir)
    (out / "nodes").mkdir(parents=True, exist_ok=True)
    (out / "edges").mkdir(parents=True, exist_ok=True)
    dst_events: dict[NodeLabel, list[pd.DataFrame]] = {}
    for rel, (col, kinds) in RELATION_SOURCES.items():
        sub = ev.loc[ev["event_type"].isin(kinds) & ev[col].notna(), ["user_id", col, "time", "amount"]]
        sub = sub.rename(columns={"user_id": "src", col: "dst"})
        agg = sub.groupby(["src", "dst"], sort=True, as_index=False).agg(
            count=("time", "size"), first_seen=("time", "min"), last_seen=("time", "max"),
            amount_total=("amount", "sum"), amount_max=("amount", "max"),
        )  # fmt: skip
        agg[["amount_total", "amount_max"]] = agg[["amount_total", "amount_max"]].fillna(0.0)
        pq.write_table(
            pa.Table.from_pandas(agg, schema=edge_schema(), preserve_index=False),
            out / "edges" / f"{rel.value}.parquet",
        )
        dst_events.setdefault(EDGE_TYPES[rel].dst, []).append(
            sub[["dst", "time"]].rename(columns={"dst": "id"})
        )
    users = ev.groupby("user_id").agg(
        first_seen=("time", "min"), last_seen=("time", "max"), event_count=("time", "size")
    )
    onb = (
        ev[ev["event_type"] == "onboarding"]
        .groupby("user_id")
        .agg(onboarded_at=("time", "min"), country=("address.country", "first"))
    )
    users = users.join(onb).reset_index().rename(columns={"user_id": "id"})
    transfers_in = pd.concat(dst_events.pop(NodeLabel.USER))
    extra = (
        transfers_in[~transfers_in["id"].isin(users["id"])].groupby("id")["time"].agg(["min", "max", "size"])
    )
    extra = extra.reset_index().rename(
        columns={"min": "first_seen", "max": "last_seen", "size": "event_count"}
    )
    users = pd.concat([users, extra], ignore_index=True)
    pq.write_table(
        pa.Table.from_pandas(users, schema=node_schema(NodeLabel.USER), preserve_index=False),
        out / "nodes" / "User.parquet",
    )
    for label in NodeLabel:
        if label == NodeLabel.USER:
            continue
        frames = dst_events.get(label, [])
        df = pd.concat(frames) if frames else pd.DataFrame({"id": [], "time": []})
        nodes = df.groupby("id")["time"].agg(["min", "max", "size"]).reset_index()
        nodes.columns = ["id", "first_seen", "last_seen", "event_count"]
        table = pa.Table.from_pandas(nodes, preserve_index=False)
        for f in node_schema(label):
            if f.name not in table.column_names:
                table = table.append_column(f.name, pa.nulls(len(table), f.type))
        pq.write_table(
            table.select([f.name for f in node_schema(label)]).cast(node_schema(label)),
            out / "nodes" / f"{label.value}.parquet",
        )
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--train-users", type=int, default=30_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="graphrisk-score-bench-"))

    generate(work / "train", users=args.train_users, seed=41, days=14)
    build_snapshot(work / "train" / "events", work / "train_snapshot")
    registry = ModelRegistry(work / "models")
    t0 = time.perf_counter()
    meta, _ = train_entity_model(work / "train_snapshot", pd.read_parquet(work / "train" / "labels" / "users.parquet"),
                                 registry, candidates=("gbdt",))  # fmt: skip
    train_s = time.perf_counter() - t0
    registry.promote(meta.version)
    print(
        f"trained {meta.model_name} on {args.train_users:,} users in {train_s:.1f}s (test AUPRC {meta.metrics.get('test_auprc', float('nan')):.3f})"
    )

    t0 = time.perf_counter()
    generate(work / "big", users=args.users, seed=42, days=14)
    gen_s = time.perf_counter() - t0
    snap_s = build_snapshot(work / "big" / "events", work / "big_snapshot")
    print(f"generated {args.users:,} users in {gen_s:.0f}s; snapshot tables built in {snap_s:.0f}s")

    report = score_users(work / "big_snapshot", work / "scores", registry, store=None)
    total = report.build_s + report.predict_s
    print(f"users scored            {report.users:,}")
    print(f"dataset build (s)       {report.build_s}")
    print(f"predict (s)             {report.predict_s}")
    print(f"scoring total (s)       {total:.1f}   (target <= 120)")
    print(f"bands                   {report.bands}")
    print(f"peak RSS (MiB)          {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
