"""Graph build throughput: the Beam pipeline end to end versus bare store writes of the same rows.

Generates a synthetic population of about ``--events`` events, holds back the newest
``--increment`` events, and measures in one run:

1. full build: ``refresh`` over every other partition (read → validate → pseudonymise → dedupe →
   extract → aggregate → write store + snapshot), events/s and rows/s;
2. bare write: the very rows that build wrote (read back from its snapshot delta), written with
   the same statements and batch size into a fresh database: the floor the pipeline is compared to;
3. the full build again, into another fresh database;
4. hourly increment: the held-back events as one new partition, ``refresh`` again.

Machines here are noisy, so the figure to quote is the ratio (pipeline rows/s ÷ bare rows/s),
both measured in the same run on the same server. The server keeps getting faster for minutes
(JIT, caches: a short warm-up is not enough), so whatever runs later looks faster; the bare
write therefore runs *between* the two builds and is compared with their mean
(``pipeline_vs_bare``). ``first_build_vs_bare`` compares it with the first build alone, as
earlier versions of this benchmark did.

    python bench/pipeline.py --events 1000000

``--builds 1`` skips the second build (for a store whose full build takes long: the bare write
then runs after the only build, on a warmer server, so the ratio leans against the pipeline).

With ``--runner`` (repeatable, or a comma list), it instead builds the same base partitions once
on each named Beam runner, each into a fresh database after one shared warm-up, and prints
events/s for each; a runner that is not built (``make beam-jars``, ``make prism``) is reported
and skipped:

    python bench/pipeline.py --events 200000 --runner DirectRunner,PrismRunner,FlinkRunner,SparkRunner

``--engine neo4j`` runs either on Neo4j (the launcher of ``make neo4j``) instead of ArcadeDB;
Neo4j community serves one database per server, so each fresh database is a server of its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from graphrisk.config import Settings, load_settings
from graphrisk.graph_schema import EDGE_TYPES, NODE_PROPERTIES, NodeLabel
from graphrisk.local_server import ENGINES
from graphrisk.store import GraphStore, node_upsert_statement, rel_upsert_statement
from graphrisk.synthetic import generate
from pipelines.options import runner_missing
from pipelines.refresh import refresh
from pipelines.snapshot import delta_dir

PASSWORD = "bench-password-0123"


def _split(events_dir: Path, base: Path, increment: Path, hold_back: int) -> tuple[int, int]:
    """Copy partitions to ``base`` except the newest, whose ~``hold_back`` events become one file."""
    files = sorted(events_dir.rglob("*.parquet"))
    held: list[Path] = []
    n_held = 0
    while files and n_held < hold_back:
        f = files.pop()
        held.append(f)
        n_held += pq.ParquetFile(f).metadata.num_rows
    n_base = 0
    for f in files:
        dst = base / f.relative_to(events_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst)
        n_base += pq.ParquetFile(f).metadata.num_rows
    tables = [pq.read_table(f) for f in reversed(held)]
    increment.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables, promote_options="default"), increment)
    return n_base, n_held


def _delta_rows(
    snapshot_dir: Path, seq: int
) -> tuple[dict[NodeLabel, list[dict[str, Any]]], dict[Any, list[dict[str, Any]]]]:
    root = delta_dir(snapshot_dir, seq)
    nodes: dict[NodeLabel, list[dict[str, Any]]] = {}
    for label in NodeLabel:
        path = root / "nodes" / f"{label.value}.parquet"
        if not path.exists():
            continue
        rows = []
        for r in pq.read_table(path).to_pylist():
            props = {p: r[p] for p in NODE_PROPERTIES[label] if r[p] is not None}
            rows.append({"id": r["id"], "first_seen": r["first_seen"], "last_seen": r["last_seen"],
                         "count": r["event_count"], "props": props})  # fmt: skip
        nodes[label] = rows
    edges = {}
    for rel in EDGE_TYPES:
        path = root / "edges" / f"{rel.value}.parquet"
        if path.exists():
            edges[rel] = pq.read_table(path).to_pylist()
    return nodes, edges


def _bare_write(
    settings: Settings, nodes: dict[NodeLabel, list[dict[str, Any]]], edges: dict[Any, list[dict[str, Any]]]
) -> tuple[int, float]:
    with GraphStore(settings) as store:
        store.ensure_schema()
        started = time.perf_counter()
        rows = 0
        for label, node_rows in nodes.items():
            rows += store.write_rows(node_upsert_statement(label), node_rows, batch_seq=1)
        for rel, rel_rows in edges.items():
            rows += store.write_rows(rel_upsert_statement(rel), rel_rows, batch_seq=1)
        return rows, time.perf_counter() - started


def _database(server: Any, name: str, data_dir: Path, common: dict[str, Any], **extra: Any) -> Settings:
    """Settings of a fresh database ``name`` (ArcadeDB: on ``server``; Neo4j: a sibling server)."""
    db = server.database_server(name)
    return load_settings(store_uri=db.uri, store_database=db.database, data_dir=data_dir, **common, **extra)


def _warm_up(work: Path, partitions: int, server: Any, common: dict[str, Any]) -> Settings:
    """Refresh the first ``partitions`` hourly files into the ``warmup`` database; its settings.

    Apart from the timed steps: the server's JIT made first writes 2-3x slower, which would
    favour whichever step ran second.
    """
    warm = _database(server, "warmup", work / "warm", common)
    warm_input = work / "warm_input"
    for f in sorted((work / "input").rglob("*.parquet"))[:partitions]:
        dst = warm_input / f.relative_to(work / "input")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst)
    with GraphStore(warm) as store:
        refresh(warm, store, warm_input)
    return warm


def _runners(work: Path, runners: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Events/s of the full build on each runner, one run each, same input, fresh databases."""
    figures: dict[str, Any] = {}
    with ENGINES[args.engine](root=work / args.engine, password=PASSWORD) as server:
        common = {"environment": "test", "store_password": PASSWORD, "store_engine": args.engine,
                  "beam_workers": args.workers}  # fmt: skip
        _warm_up(work, args.warmup_partitions, server, common)
        print(f"warmed up on {args.warmup_partitions} partitions (DirectRunner)")
        for runner in runners:
            missing = runner_missing(runner)
            if missing:
                print(f"{runner}: skipped, {missing}")
                figures[runner] = None
                continue
            db = f"run{runner.lower()}"  # Neo4j database names allow no underscore
            s = _database(server, db, work / db, common, beam_runner=runner)
            with GraphStore(s) as store:
                report = refresh(s, store, work / "input")
            counts = report.batches[0].counts
            events = counts["read"]  # tallied as data, so Spark's count is right too
            figures[runner] = {"events": events, "seconds": round(report.seconds, 1),
                               "events_per_s": round(events / report.seconds),
                               "store_write_s": round(counts["store_write_seconds"], 1)}  # fmt: skip
            print(f"{runner}: {events:,} events in {report.seconds:.1f}s, "
                  f"{events / report.seconds:,.0f} events/s")  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="approximate events to generate")
    parser.add_argument("--increment", type=int, default=50_000, help="events in the hourly increment")
    parser.add_argument("--workers", type=int, default=1, help="Beam DirectRunner workers")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--warmup-partitions", type=int, default=48, help="hourly files used to warm the server up"
    )
    parser.add_argument(
        "--runner",
        action="append",
        default=None,
        help="compare Beam runners instead (repeatable or comma list): DirectRunner, PrismRunner, ...",
    )
    parser.add_argument(
        "--engine", choices=sorted(ENGINES), default="arcadedb", help="graph store to build into"
    )
    parser.add_argument(
        "--builds",
        type=int,
        choices=(1, 2),
        default=2,
        help="full builds around the bare write (1: only before it, which favours the bare write a little)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="graphrisk-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    users = max(100, args.events // 10)
    t0 = time.perf_counter()
    generate(work / "gen", users=users, seed=args.seed, days=14)
    gen_s = time.perf_counter() - t0
    n_base, n_inc = _split(
        work / "gen" / "events", work / "input", work / "increment" / "part-00000.parquet", args.increment
    )
    print(
        f"generated {users:,} users, {n_base + n_inc:,} events in {gen_s:.1f}s; base {n_base:,}, increment {n_inc:,}"
    )

    if args.runner:
        runners = [r for arg in args.runner for r in arg.split(",") if r]
        figures_by_runner = _runners(work, runners, args)
        if args.json:
            args.json.write_text(json.dumps(figures_by_runner, indent=2))
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        return

    with ENGINES[args.engine](root=work / args.engine, password=PASSWORD) as server:
        common = {"environment": "test", "store_password": PASSWORD, "store_engine": args.engine,
                  "beam_workers": args.workers}  # fmt: skip
        # Warm-up, apart from the timed steps: the server's JIT made first writes 2-3x slower,
        # which would favour whichever of pipeline and bare write ran second.
        warm = _warm_up(work, args.warmup_partitions, server, common)
        _bare_write(
            _database(server, "warmupbare", work / "warm_bare", common), *_delta_rows(warm.snapshot_dir, 1)
        )
        print(f"warmed up on {args.warmup_partitions} partitions")
        s = load_settings(
            store_uri=server.uri, store_database=server.database, data_dir=work / "var", **common
        )
        with GraphStore(s) as store:
            full = refresh(s, store, work / "input")
        fb = full.batches[0].counts
        full_rows = fb["node_rows"] + fb["rel_rows"]
        print(f"full build: {fb['read']:,} events, {full_rows:,} rows in {full.seconds:.1f}s")

        nodes, edges = _delta_rows(s.snapshot_dir, full.batches[0].seq)
        bare_settings = _database(server, "bare", work / "bare", common)
        bare_rows, bare_s = _bare_write(bare_settings, nodes, edges)
        print(f"bare write: {bare_rows:,} rows in {bare_s:.1f}s")

        again = full
        if args.builds == 2:
            again_settings = _database(server, "again", work / "again", common)
            with GraphStore(again_settings) as store:
                again = refresh(again_settings, store, work / "input")
            print(f"full build again: {again.seconds:.1f}s")

        inc_path = work / "input" / "dt=9999-12-31" / "hr=00" / "part-00000.parquet"
        inc_path.parent.mkdir(parents=True)
        shutil.copy2(work / "increment" / "part-00000.parquet", inc_path)
        with GraphStore(s) as store:
            inc = refresh(s, store, work / "input")
        ib = inc.batches[0].counts

    build_s = (full.seconds + again.seconds) / 2
    pipeline_rps = full_rows / build_s
    bare_rps = bare_rows / bare_s
    figures = {
        "engine": args.engine,
        "events_full": fb["read"],
        "rows_full": full_rows,
        "full_build_s": round(full.seconds, 1),
        "full_build_again_s": round(again.seconds, 1) if args.builds == 2 else None,
        "store_write_s_in_builds": [
            round(b.batches[0].counts["store_write_seconds"], 1) for b in (full, again)[: args.builds]
        ],
        "full_events_per_s": round(fb["read"] / build_s),
        "pipeline_rows_per_s": round(pipeline_rps),
        "bare_rows": bare_rows,
        "bare_write_s": round(bare_s, 1),
        "bare_rows_per_s": round(bare_rps),
        "pipeline_vs_bare": round(pipeline_rps / bare_rps, 3),
        "first_build_vs_bare": round(bare_s / full.seconds, 3),
        "increment_events": ib["read"],
        "increment_s": round(inc.seconds, 1),
        "beam_workers": args.workers,
        "peak_rss_mib_this_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rejected_full": fb["rejected"],
        "duplicates_full": fb["duplicates"],
    }
    width = max(map(len, figures))
    print(
        "\n".join(
            f"{k:<{width}}  {v:,}" if isinstance(v, int) else f"{k:<{width}}  {v}" for k, v in figures.items()
        )
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
