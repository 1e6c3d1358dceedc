"""The ``graphrisk`` command: one entry point for every stage.

Each command builds the library object it needs, calls one function, shows progress on long
work and ends with a JSON report (printed, and saved under ``<data_dir>/reports``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphrisk.config import Settings, load_settings
from graphrisk.errors import GraphRiskError

app = typer.Typer(help="graphrisk: find fraud rings in an entity graph.", no_args_is_help=True)
convert_app = typer.Typer(help="Turn public fraud datasets into graphrisk events.", no_args_is_help=True)
app.add_typer(convert_app, name="convert")
models_app = typer.Typer(help="The model registry: list, promote, rollback.", no_args_is_help=True)
app.add_typer(models_app, name="models")
audit_app = typer.Typer(
    help="The audit trail: verify its keyed chain, anchor its head.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file.", exists=True)]


class _State:
    settings: Settings | None = None


_state = _State()


@app.callback()
def _main(config: ConfigOpt = None) -> None:
    try:
        _state.settings = load_settings(config)
    except GraphRiskError as exc:
        _print_error(exc)
        raise typer.Exit(2) from None


def _settings() -> Settings:
    assert _state.settings is not None
    return _state.settings


def save_report(settings: Settings, command: str, report: dict[str, Any]) -> Path:
    """Write a run report as JSON under ``reports/`` and print it to stdout."""
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = settings.reports_dir / f"{command}-{stamp}.json"
    body = {"command": command, "finished_at": stamp, **report}
    path.write_text(json.dumps(body, indent=2, default=str))
    typer.echo(json.dumps(body, indent=2, default=str))
    console.print(f"[dim]report: {path}[/dim]")
    return path


@contextmanager
def _spinner(text: str) -> Iterator[None]:
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as p:
        p.add_task(text, total=None)
        yield


def _progress() -> Progress:
    """A bar for counted work (files read, hours replayed) on the CLI's console."""
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console)  # fmt: skip


def _print_error(exc: BaseException | str) -> None:
    """Print an error on stderr. Its text is escaped: messages quote Cypher and file names, whose
    ``[r:USED_DEVICE]`` rich would otherwise take for markup and drop."""
    console.print(f"[red]error:[/red] {escape(str(exc))}")


@contextmanager
def _errors_exit() -> Iterator[None]:
    """Turn a GraphRiskError into its message and an exit status (its ``exit_code``, else 1)."""
    try:
        yield
    except GraphRiskError as exc:
        _print_error(exc)
        raise typer.Exit(getattr(exc, "exit_code", 1)) from None


@app.command("config")
def config_cmd() -> None:
    """Print the effective configuration (secrets hidden)."""
    typer.echo(json.dumps(_settings().public_view(), indent=2))


@app.command("schema")
def schema_cmd() -> None:
    """Print the JSON schema of version-1 events."""
    from graphrisk.events import event_json_schema

    typer.echo(json.dumps(event_json_schema(), indent=2))


class _Engine(StrEnum):
    """The local servers ``graphrisk server`` can start."""

    arcadedb = "arcadedb"
    neo4j = "neo4j"


@app.command("server")
def server_cmd(
    root: Annotated[
        Path | None,
        typer.Option(help="Data folder (default: settings.arcadedb_root or settings.neo4j_root)."),
    ] = None,
    engine: Annotated[_Engine | None, typer.Option(help="Default: settings.store_engine.")] = None,
    bolt_port: Annotated[int | None, typer.Option(help="Default: the port of settings.store_uri.")] = None,
) -> None:
    """Run a local Bolt server, ArcadeDB or Neo4j, in the foreground (development only)."""
    from graphrisk.local_server import local_server

    s = _settings()
    if engine is not None:
        s = s.model_copy(update={"store_engine": engine.value})
    if bolt_port is not None:
        s = s.model_copy(update={"store_uri": f"bolt://127.0.0.1:{bolt_port}"})
    server = local_server(s, root)
    with _errors_exit(), server:
        console.print(
            f"{server.engine} serving Bolt at {server.uri}, database {s.store_database}. Ctrl-C stops it."
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


@app.command("generate")
def generate_cmd(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("var/synthetic"),
    users: Annotated[int, typer.Option(min=100, help="Number of users.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed; the output is deterministic per seed.")] = 1,
    days: Annotated[int, typer.Option(min=1, help="Days of activity.")] = 14,
    fmt: Annotated[str, typer.Option("--format", help="parquet, jsonl or csv.")] = "parquet",
) -> None:
    """Write a synthetic population with planted fraud rings, as hourly event partitions."""
    from graphrisk.synthetic import generate

    with Progress(TextColumn("generate"), BarColumn(), TextColumn("{task.completed}/{task.total} users"),
                  TimeElapsedColumn(), console=console) as progress:  # fmt: skip
        task = progress.add_task("users", total=users)
        report = generate(out, users=users, seed=seed, days=days, fmt=fmt,  # type: ignore[arg-type]
                          progress=lambda n: progress.update(task, completed=n))  # fmt: skip
    save_report(_settings(), "generate", _as_dict(report))


@convert_app.command("sffsd")
def convert_sffsd_cmd(
    csv_path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="S-FFSD.csv")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("var/sffsd"),
) -> None:
    """S-FFSD card transactions → payment events (labels kept per transaction)."""
    from graphrisk.converters import convert_sffsd

    with _spinner("converting S-FFSD"):
        report = convert_sffsd(csv_path, out)
    save_report(_settings(), "convert-sffsd", _as_dict(report))


@convert_app.command("amlsim")
def convert_amlsim_cmd(
    sim_dir: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="An AMLSim simulation folder.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("var/amlsim"),
) -> None:
    """AMLSim account transfers → P2P payment events (labels kept per account)."""
    from graphrisk.converters import convert_amlsim

    with _spinner("converting AMLSim"):
        report = convert_amlsim(sim_dir, out)
    save_report(_settings(), "convert-amlsim", _as_dict(report))


@app.command("refresh")
def refresh_cmd(
    input_root: Annotated[
        str,
        typer.Option(
            "--input",
            help="Event partitions: a folder, or a URI Beam's FileSystems read (gs://, s3://, hdfs://).",
        ),
    ],
    beam_arg: Annotated[
        list[str] | None, typer.Option(help="Extra Beam pipeline option (repeatable).")
    ] = None,
    runner: Annotated[
        str | None,
        typer.Option(
            help="Beam runner: DirectRunner, PrismRunner, FlinkRunner, SparkRunner, DataflowRunner, ..."
            " (default: setting beam_runner)."
        ),
    ] = None,
    score: Annotated[
        bool, typer.Option(help="Then score users and find rings with the production models.")
    ] = True,
    lock_wait: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Wait up to this many seconds for a running refresh (default: setting refresh_lock_wait_s).",
        ),
    ] = None,
    accept_changed: Annotated[
        bool,
        typer.Option(help="Accept processed partitions whose content changed since (recorded; exit 0)."),
    ] = False,
    abandon_batch: Annotated[
        int | None,
        typer.Option(
            help="First mark this unfinished batch abandoned (needs --reason); its partitions are taken again."
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="Why the batch is abandoned (kept in the ledger).")
    ] = None,
    force_abandon: Annotated[
        bool,
        typer.Option(
            help="Abandon even a batch that already wrote to the store (its events then count twice)."
        ),
    ] = False,
) -> None:
    """Fold input partitions not processed before into the graph and the snapshot.

    Safe to re-run at any time: processed partitions are skipped, and an interrupted batch is
    resumed without double counting. One refresh runs at a time: a second one exits 75 naming the
    holder (or waits --lock-wait seconds). Exits 1 on an error (an interrupted batch whose files
    changed is one), and 3 when processed partitions changed since processing, unless
    --accept-changed. ``--abandon-batch N --reason TEXT`` first abandons unfinished batch N
    (recorded in the ledger, shown in the report), then refreshes, taking its partitions again.
    """
    from graphrisk.store import GraphStore
    from pipelines.options import pipeline_options
    from pipelines.refresh import abandon_batch as abandon
    from pipelines.refresh import refresh

    if abandon_batch is not None and not (reason or "").strip():
        _print_error("--abandon-batch needs --reason, recorded in the ledger")
        raise typer.Exit(2)
    if "://" not in input_root and not Path(input_root).is_dir():
        _print_error(f"--input {input_root}: no such folder")
        raise typer.Exit(2)
    s = _settings()
    if runner is not None:
        s = s.model_copy(update={"beam_runner": runner})
    with _errors_exit():
        # Before any batch is recorded: a runner that cannot start would leave one to resume.
        pipeline_options(s.beam_runner, s.beam_workers, beam_arg)

    def warn(message: str) -> None:
        console.print(message, markup=False, style="yellow")

    with (
        _errors_exit(),
        GraphStore(s) as store,
        Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as progress,
    ):
        store.verify()
        abandoned = None
        if abandon_batch is not None:
            abandoned = abandon(s, store, abandon_batch, reason or "", force=force_abandon,
                                lock_wait_s=lock_wait, warn=warn)  # fmt: skip
        task = progress.add_task("scanning partitions", total=None)

        def on_batch(seq: int, n: int, resumed: bool) -> None:
            verb = "resuming" if resumed else "building"
            progress.update(task, description=f"{verb} batch {seq} ({n} partitions)")

        report = refresh(s, store, input_root, beam_args=beam_arg, on_batch=on_batch,
                         accept_changed=accept_changed, lock_wait_s=lock_wait, warn=warn)  # fmt: skip
        report.abandoned = abandoned
        progress.update(task, description="graph built")
        summary = {"nodes": store.node_counts(), "relationships": store.rel_counts()}
    downstream: dict[str, Any] = {}
    if score and report.batches:
        with _errors_exit(), GraphStore(s) as store:
            downstream = _score_and_rings(s, store)
        # One read of the event history, shared and only if needed: the monitoring run reads it
        # when the API served applicants to compare, the retrain step when a retrain is due.
        history = None if "://" in input_root else _EventHistory(s, Path(input_root))
        downstream["monitor"] = _monitor_refresh(s, downstream, history)
        downstream["retrain"] = _retrain_after_refresh(s, input_root, history)
    body = report.to_dict() | downstream
    body["retention"] = _retention_after_refresh(s)
    body["snapshot"] = {k: v for k, v in body["snapshot"].items() if k != "files"}
    save_report(s, "refresh", body | {"graph": summary})
    if report.changed_after_processing:
        files = ", ".join(report.changed_after_processing)
        if accept_changed:
            warn(f"warning: accepted changed partitions (recorded in the ledger; not re-read): {files}")
        else:
            warn(
                f"warning: {len(report.changed_after_processing)} processed partitions changed since they"
                f" were processed: {files}. Their new content is not in the graph or the snapshot. Restore"
                " them, or put changed data in a new partition; run with --accept-changed to accept."
            )
            raise typer.Exit(3)


@app.command("summary")
def summary_cmd() -> None:
    """Print node and relationship counts of the graph."""
    from graphrisk.store import GraphStore

    s = _settings()
    with _errors_exit(), GraphStore(s) as store:
        store.verify()
        nodes, rels = store.node_counts(), store.rel_counts()
        batches = store.read("ledger/batches", limit=5)
    table = Table("label / type", "nodes / rels", "events", "amount", title="entity graph")
    for label, n in nodes.items():
        table.add_row(label, f"{n:,}", "", "")
    for rel, v in rels.items():
        table.add_row(rel, f"{v['rels']:,}", f"{v['events']:,}", f"{v['amount']:,.2f}")
    Console().print(table)
    save_report(s, "summary", {"nodes": nodes, "relationships": rels, "recent_batches": batches})


def _registry(s: Settings) -> Any:
    from gnn.registry import ModelRegistry

    return ModelRegistry(s.data_dir / "models")


# Where GNNs train and batch-score: auto = CUDA when present, else the CPU.
DeviceOption = Annotated[
    str,
    typer.Option(help="auto, cpu or cuda: where GNN models train and batch-score (auto: CUDA when present)."),
]


def _device(option: str) -> str | None:
    """``--device`` checked (cuda on a host without it is an error), ``None`` for auto."""
    from gnn.device import resolve_device

    try:
        return resolve_device(option)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from None


@app.command("train")
def train_cmd(
    labels: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="Parquet/CSV with user_id, is_fraud.")
    ],
    candidates: Annotated[
        str,
        typer.Option(
            help="Comma-separated model names to try; only servable ones (scoring other snapshots and "
            "new applicants) are fitted, the rest are reported as not selectable."
        ),
    ] = "gbdt",
    split: Annotated[
        str,
        typer.Option(
            help="random (stratified 60/20/20) or time; both measure the end of the snapshot: "
            "--events trains on rows taken at their moments, in time order."
        ),
    ] = "random",
    seed: Annotated[int, typer.Option(help="Seed for the split and the models.")] = 0,
    target_precision: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="Precision of the block band.")
    ] = 0.9,
    promote: Annotated[bool, typer.Option(help="Promote the new version if it passes the gate.")] = True,
    events: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Train one model per decision point from this event "
            "history instead (onboarding rows at each application, refresh rows as of each hour).",
        ),
    ] = None,
    decisions: Annotated[
        bool,
        typer.Option(
            help="Merge investigators' decided labels (the decision store, GRAPHRISK_DECISIONS_URL) "
            "into --labels: a decided user's label replaces its earlier one, new ones are added."
        ),
    ] = True,
    device: DeviceOption = "auto",
) -> None:
    """Train user risk models on the snapshot, keep the best servable one on validation, register it.

    With ``--events``, replay the history and fit an onboarding model (served to new applicants)
    and a behaviour model (the hourly re-score), each from rows taken at its moment, validated on
    the latest period, reading only labels known ``GRAPHRISK_LABEL_DELAY_H`` after onboarding."""
    import pandas as pd
    import torch

    from gnn.registry import RegistryError
    from gnn.training import train_entity_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    dev = _device(device)
    s = _settings()
    table = pd.read_parquet(labels) if labels.suffix == ".parquet" else pd.read_csv(labels)
    label_sources: dict[str, Any] = {"file": str(labels), "file_labels": len(table)}
    if decisions:
        from api.decisions import training_labels

        # The investigators' verdicts are the newest labels: merged here, with no export step.
        table, merged = training_labels(table, s.decision_store_url)
        label_sources |= {"decisions": merged}
        if merged["decided"]:
            console.print(
                f"decided labels: {merged['decided']} ({merged['changed']} changed, {merged['added']} added)"
            )
    registry = _registry(s)
    if events is not None:
        meta, report = _train_decision_points(s, events, table, registry, label_sources)
    else:
        with _errors_exit(), _spinner("training candidates"):
            meta, report = train_entity_model(
            s.snapshot_dir, table[["user_id", "is_fraud"]], registry, tuple(c.strip() for c in candidates.split(",")),
            split=split, seed=seed, target_precision=target_precision, log=console.print,
            label_sources=label_sources, device=dev,
        )  # fmt: skip
    report = {**report, "labels": label_sources}
    promoted: str | None = None
    if promote:
        try:
            registry.promote(meta.version)
            promoted = meta.version
        except RegistryError as exc:
            console.print(f"[yellow]{escape(str(exc))}[/yellow]")
    # After promotion, so the card's approval record says whether it went to production.
    card = _write_card(s, registry, meta.version)
    save_report(s, "train", {"version": meta.version, "promoted": promoted, "model_card": card, **report})


def _write_card(s: Settings, registry: Any, version: str, out: Path | None = None) -> str | None:
    """The version's model card (gnn/model_card.py); a failure is reported, never fatal to training."""
    from gnn.model_card import write_model_card

    try:
        path = write_model_card(registry, version, out, settings=s)
    except Exception as exc:  # the model is registered either way: say why the card is not
        console.print(f"[yellow]model card not written: {escape(str(exc))}[/yellow]")
        return None
    console.print(f"model card: {path}")
    return str(path)


def _train_decision_points(
    s: Settings, events: Path, labels: Any, registry: Any, label_sources: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    from gnn.backtest import BacktestConfig
    from gnn.decision_training import DecisionPointError, train_decision_point_models
    from pipelines.event_log import read_event_log
    from pipelines.parse import FutureEventLimit
    from pipelines.refresh import discover_partitions

    parts = [p.path for p in discover_partitions(events)]
    with _progress() as progress:
        task = progress.add_task("reading events", total=len(parts))
        limit = FutureEventLimit(int(time.time() * 1000), s.future_event_tolerance_s)
        with _errors_exit():
            log = read_event_log(events, parts, s, lambda n: progress.advance(task, n), limit)
        replay = progress.add_task("replaying hours", total=None)
        try:
            return train_decision_point_models(
                log, labels, registry, BacktestConfig(label_delay_h=s.label_delay_h),
                lambda i, n: progress.update(replay, completed=i, total=n), label_sources,
            )  # fmt: skip
        except DecisionPointError as exc:
            _print_error(exc)
            raise typer.Exit(1) from None


@app.command("score")
def score_cmd(
    write_store: Annotated[bool, typer.Option(help="Also write scores onto users in the store.")] = True,
    device: DeviceOption = "auto",
) -> None:
    """Score every user with the production model (store + scores table)."""
    from gnn.scoring import score_users
    from graphrisk.store import GraphStore

    dev = _device(device)
    s = _settings()
    with _errors_exit(), GraphStore(s) as store, _spinner("scoring users"):
        report = score_users(
            s.snapshot_dir, s.data_dir / "scores", _registry(s), store if write_store else None, device=dev
        )
    save_report(s, "score", report.to_dict())


def _score_and_rings(
    s: Settings, store: Any, labels: Path | None = None, events: Path | None = None
) -> dict[str, Any]:
    """Node scores, then rings, for the current snapshot (skipping what has no model yet).

    With ``labels`` and ``events``, the ring model also trains on the clusters of past moments
    replayed from the event history (:mod:`gnn.rings.moments`).
    """
    import pandas as pd

    from gnn.registry import RegistryError
    from gnn.rings.moments import event_moments
    from gnn.rings.run import find_rings
    from gnn.scoring import score_users

    out: dict[str, Any] = {}
    try:
        with _spinner("scoring users"):
            out["scores"] = score_users(s.snapshot_dir, s.data_dir / "scores", _registry(s), store).to_dict()
    except RegistryError as exc:
        out["scores"] = f"skipped: {exc}"
        return out
    table = None
    if labels is not None:
        table = pd.read_parquet(labels) if labels.suffix == ".parquet" else pd.read_csv(labels)
    past = None
    if table is not None and events is not None:
        with _progress() as progress:
            task = progress.add_task("replaying past moments", total=None)
            past = event_moments(
                events, s, progress=lambda n, total: progress.update(task, completed=n, total=total)
            )
    try:
        with _spinner("finding rings"):
            out["rings"] = find_rings(s, store, labels=table, past=past).to_dict()
    except FileNotFoundError as exc:
        out["rings"] = f"skipped: {exc}"
    return out


@app.command("rings")
def rings_cmd(
    labels: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Train the ring model on these labels.")
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="With --labels: the event history, replayed so the ring model also learns from "
            "rings as past refreshes saw them (young).",
        ),
    ] = None,
) -> None:
    """Find candidate rings, score them, keep their ids stable, write them to the store."""
    from graphrisk.store import GraphStore

    if events is not None and labels is None:
        raise typer.BadParameter("--events needs --labels (it only changes how the ring model trains)")
    s = _settings()
    if events is not None:
        from gnn.rings.model import RingMethodError, require_past_moments_method

        try:  # before scoring and the replay, not after them
            require_past_moments_method(s.ring_method)
        except RingMethodError as exc:
            raise typer.BadParameter(f"--events: {exc}") from None
    with _errors_exit(), GraphStore(s) as store:
        store.verify()
        report = _score_and_rings(s, store, labels, events)
    save_report(s, "rings", report)


@app.command("backtest")
def backtest_cmd(
    input_root: Annotated[Path, typer.Option("--input", exists=True, file_okay=False, help="Event files.")],
    labels: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="Parquet/CSV: user_id, is_fraud[, ring_id, typology]."
        ),
    ],
    until: Annotated[
        datetime | None, typer.Option(help="Replay events before this UTC time only (default: all).")
    ] = None,
    train_hours: Annotated[int, typer.Option(min=1, help="Hours from the start to the first cut-off.")] = 7
    * 24,
    retrain_every: Annotated[int, typer.Option(min=1, help="Hours between refits.")] = 24,
    refresh_every: Annotated[int, typer.Option(min=1, help="Hours between refreshes.")] = 1,
    label_delay_h: Annotated[
        float | None, typer.Option(min=0, help="Hours until a label is known (default: the setting).")
    ] = None,
    plots: Annotated[Path | None, typer.Option(file_okay=False, help="Folder for the PNG plots.")] = None,
) -> None:
    """Replay history hour by hour: score every applicant at its application and every user at each
    refresh with models trained only on the past; report per decision point, typology and ring."""
    import pandas as pd
    import pyarrow.compute as pc
    import torch

    from gnn.backtest import BacktestConfig, backtest_report, run_backtest
    from gnn.backtest_plots import write_plots
    from pipelines.event_log import read_event_log
    from pipelines.parse import FutureEventLimit
    from pipelines.refresh import discover_partitions

    torch.set_num_threads(max(1, torch.get_num_threads()))
    s = _settings()
    table = pd.read_parquet(labels) if labels.suffix == ".parquet" else pd.read_csv(labels)
    parts = [p.path for p in discover_partitions(input_root)]
    with _progress() as progress:
        task = progress.add_task("reading events", total=len(parts))
        with _errors_exit():
            now = FutureEventLimit(int(time.time() * 1000), s.future_event_tolerance_s)
            log = read_event_log(input_root, parts, s, lambda n: progress.advance(task, n), now)
        if until is not None:
            cut = int(until.replace(tzinfo=until.tzinfo or UTC).timestamp() * 1000)
            log.clean = log.clean.filter(pc.less(log.clean.column("time"), cut))
        cfg = BacktestConfig(
            train_hours=train_hours, retrain_every_h=retrain_every, refresh_every_h=refresh_every,
            label_delay_h=s.label_delay_h if label_delay_h is None else label_delay_h,
        )  # fmt: skip
        replay = progress.add_task("replaying hours", total=None)
        result = run_backtest(log, table, cfg, lambda i, n: progress.update(replay, completed=i, total=n))
    report = backtest_report(result, log, table, cfg)
    report["events"] = {"read": log.read, "accepted": log.accepted, "rejected": log.rejected,
                        "duplicates": log.duplicates}  # fmt: skip
    if plots is not None:
        report["plots"] = [str(p) for p in write_plots(report, result, plots)]
    save_report(s, "backtest", report)


@app.command("evaluate")
def evaluate_cmd(
    nodes: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="Nodes CSV: id, type, features, label.")
    ],
    edges: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Edges CSV: src, dst, type.")],
    split: Annotated[
        str, typer.Option(help="Train/val/test fractions, e.g. 0.6,0.2,0.2 (ignored with mask columns).")
    ] = "0.6,0.2,0.2",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    models: Annotated[str, typer.Option(help="Comma-separated candidates.")] = "logreg,gbdt,bwgnn,stack",
    out: Annotated[Path, typer.Option(help="Report folder (JSON, PR curve, histogram), per dataset.")] = Path(
        "var/evaluate"
    ),
    name: Annotated[
        str | None, typer.Option(help="Dataset name in reports (default: the nodes file's folder).")
    ] = None,
    device: DeviceOption = "auto",
) -> None:
    """Evaluate graphrisk's models on your own labelled graph."""
    from gnn.data import load_labelled_csv
    from gnn.evaluate import evaluate_dataset
    from gnn.models import make_model
    from gnn.training import device_kwargs

    fractions = tuple(float(f) for f in split.split(","))
    if len(fractions) != 3:
        raise typer.BadParameter("--split needs three fractions")
    seed_list = [int(x) for x in seeds.split(",")]
    name = name or nodes.resolve().parent.name
    ds = load_labelled_csv(nodes, edges, fractions=fractions, seeds=seed_list, name=name)  # type: ignore[arg-type]
    for note in ds.notes:
        console.print(f"note: {note}", markup=False, style="yellow")
    dev = _device(device)
    # Only the device: the entity graph's candidate overrides are not for a user's own graph.
    factories = {
        m: (lambda seed, m=m: make_model(m, seed=seed, **device_kwargs(m, dev))) for m in models.split(",")
    }
    with _spinner(f"evaluating {len(factories)} models on {ds.name}"):
        report = evaluate_dataset(ds, factories, out_dir=out / name, log=console.print)
    # Named per dataset, so evaluating a second graph does not overwrite the first one's report.
    save_report(_settings(), f"evaluate-{name}", {**report, "notes": ds.notes})


@models_app.command("list")
def models_list_cmd() -> None:
    """List model versions (production marked)."""
    reg = _registry(_settings())
    prod = reg.production()
    table = Table("version", "model", "val AUPRC", "test AUPRC", "snapshot", "code", "production")
    rows = []
    for m in reg.versions():
        table.add_row(m.version, m.model_name, f"{m.metrics.get('val_auprc', float('nan')):.4f}",
                      f"{m.metrics.get('test_auprc', float('nan')):.4f}", m.snapshot_hash[:12], m.code_version,
                      "*" if m.version == prod else "")  # fmt: skip
        rows.append(
            {
                "version": m.version,
                "model": m.model_name,
                "metrics": m.metrics,
                "production": m.version == prod,
            }
        )
    Console(stderr=True).print(table)
    save_report(_settings(), "models-list", {"production": prod, "versions": rows})


@models_app.command("card")
def models_card_cmd(
    version: Annotated[str, typer.Argument(help="Version to describe.")],
    out: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="Folder for MODEL_CARD.md and its PNGs (default: <data_dir>/models/VERSION/card).",
        ),
    ] = None,
) -> None:
    """Write a version's model card: Markdown plus PNG charts (use, data, features, metrics with
    intervals, calibration, thresholds, segments, comparison, monitoring, limitations, approval)."""
    from gnn.model_card import CardError, write_model_card

    s = _settings()
    registry = _registry(s)
    with _spinner("writing the model card"):
        try:
            path = write_model_card(registry, version, out, settings=s)
        except CardError as exc:
            _print_error(exc)
            raise typer.Exit(1) from None
    console.print(f"model card: {path}")
    save_report(s, "models-card", {"version": version, "card": str(path),
                                   "files": sorted(p.name for p in path.parent.iterdir())})  # fmt: skip


@models_app.command("promote")
def models_promote_cmd(
    version: Annotated[str, typer.Argument(help="Version to promote.")],
    force: Annotated[
        bool,
        typer.Option(help="Promote even if the gate refused it (recorded in the registry and audit trail)."),
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (kept with the promotion and in the audit trail).")] = "",
    actor: Annotated[str, typer.Option(help="Who promotes (the audit entry's actor).")] = "cli",
) -> None:
    """Make a version production through its promotion gate (``graphrisk retrain`` records one;
    a version without one is refused if its validation AUPRC is below production's)."""
    from gnn.promotion import promote
    from gnn.registry import RegistryError

    s = _settings()
    reg = _registry(s)
    with _audit(s) as audit:
        try:
            record = promote(reg, version, actor=actor, audit=audit, force=force, reason=reason)
        except RegistryError as exc:
            _print_error(exc)
            raise typer.Exit(1) from None
    meta = reg.meta(version)
    save_report(s, "models-promote", {"production": meta.version, "metrics": meta.metrics, "record": record})


@models_app.command("rollback")
def models_rollback_cmd(
    reason: Annotated[str, typer.Option(help="Why (kept with the rollback and in the audit trail).")] = "",
    actor: Annotated[str, typer.Option(help="Who rolls back (the audit entry's actor).")] = "cli",
) -> None:
    """Return production to the previously promoted version (recorded in the registry and audit trail)."""
    from gnn.promotion import rollback
    from gnn.registry import RegistryError

    s = _settings()
    with _audit(s) as audit:
        try:
            version = rollback(_registry(s), actor=actor, audit=audit, reason=reason or "manual rollback")
        except RegistryError as exc:
            _print_error(exc)
            raise typer.Exit(1) from None
    save_report(s, "models-rollback", {"production": version})


@contextmanager
def _audit(s: Settings) -> Iterator[Any]:
    """An audit callable (gnn.promotion.Audit) on the configured audit log, closed after."""
    from api.audit import AuditLog
    from gnn.promotion import audit_to

    log = AuditLog.from_settings(s, background=False)
    try:
        yield audit_to(log)
    finally:
        log.close()


@app.command("retrain")
def retrain_cmd(
    events: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="The event history (partitions) to train from.")
    ],
    labels: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="user_id, is_fraud (default: setting retrain_labels)."
        ),
    ] = None,
    now: Annotated[bool, typer.Option(help="Train a challenger even if not due.")] = False,
    decisions: Annotated[
        bool, typer.Option(help="Merge investigators' decided labels (the decision store) into the labels.")
    ] = True,
) -> None:
    """Champion and challenger: roll back a model on probation whose monitoring breached, promote
    a challenger whose shadow period is over, then, when due (``retrain_every_h``, or drift alarms
    of the last monitoring run), train a challenger at the latest labelled period's start, gate it
    against the champion on that period, and put it in shadow if it passes."""
    s = _settings()
    path = labels or s.retrain_labels
    if path is None:
        _print_error("no labels: pass --labels or set retrain_labels")
        raise typer.Exit(2)
    with _errors_exit():
        body = _retrain_cycle(s, events, path, decisions=decisions, force=now)
    save_report(s, "retrain", body)


class _EventHistory:
    """The event log of a folder of partitions, read on first use and then kept.

    Reading the whole history is the costly part of the hourly job's monitoring and retrain
    steps, and each needs it only sometimes (served applicants to compare; a retrain due): they
    share one of these, so it is read at most once, and only when one of them asks. Attributes
    other than ``events`` are the :class:`pipelines.event_log.EventLog`'s (``clean``, ...).
    """

    def __init__(self, s: Settings, events: Path) -> None:
        self.events = events
        self._settings = s
        self._log: Any = None

    def read(self) -> Any:
        """The :class:`pipelines.event_log.EventLog`, events dated past now rejected as a batch
        ingested now would reject them."""
        if self._log is None:
            from pipelines.event_log import read_event_log
            from pipelines.parse import FutureEventLimit
            from pipelines.refresh import discover_partitions

            parts = [p.path for p in discover_partitions(self.events)]
            limit = FutureEventLimit(int(time.time() * 1000), self._settings.future_event_tolerance_s)
            self._log = read_event_log(self.events, parts, self._settings, None, limit)
        return self._log

    def __getattr__(self, name: str) -> Any:
        # Only names not set in __init__ arrive here: the log's own attributes.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.read(), name)


def _retrain_cycle(
    s: Settings,
    events: Path,
    labels: Path,
    *,
    decisions: bool,
    force: bool,
    history: _EventHistory | None = None,
) -> dict[str, Any]:
    """:func:`gnn.retrain.run_cycle` with the history read only if a retrain is due (from
    ``history`` when given: the refresh shares it with its monitoring run)."""
    import pandas as pd

    from gnn.retrain import run_cycle

    def load() -> tuple[Any, Any, dict[str, Any]]:
        table = pd.read_parquet(labels) if labels.suffix == ".parquet" else pd.read_csv(labels)
        sources: dict[str, Any] = {"file": str(labels), "file_labels": len(table)}
        if decisions:
            from api.decisions import training_labels

            table, merged = training_labels(table, s.decision_store_url)
            sources["decisions"] = merged
        with _spinner("reading events and training a challenger"):
            return (history or _EventHistory(s, events)).read(), table, sources

    with _audit(s) as audit:
        return run_cycle(s, _registry(s), audit=audit, load_history=load, force=force)


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Uvicorn worker processes.")] = 1,
    log_level: Annotated[
        str, typer.Option(help="Uvicorn log level (info shows each worker start).")
    ] = "warning",
) -> None:
    """Serve the risk API (scores, explanations) with the production model and published scores.

    Each worker is a process of its own that imports the app afresh and builds it with
    ``create_app()``, which loads the settings again: from ``GRAPHRISK_*`` variables and from
    ``--config``, which :func:`graphrisk.config.load_settings` has put in ``GRAPHRISK_CONFIG``
    for them (the children inherit the environment). They were validated here first, so a bad
    configuration fails once, not in every worker.
    """
    import os

    import uvicorn

    s = _settings()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from api.metrics import prepare_multiprocess_dir

        prepare_multiprocess_dir(s.data_dir / "metrics" / f"serve-{port}")
    console.print(
        f"serving on http://{host}:{port} with {workers} worker(s), store {s.store_uri}, "
        f"config {os.environ.get('GRAPHRISK_CONFIG') or 'from the environment'}"
    )
    uvicorn.run(
        "api.main:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level
    )


@app.command("audit-export")
def audit_export_cmd(
    out: Annotated[Path, typer.Option(help="JSONL file to write.")] = Path("var/audit.jsonl"),
) -> None:
    """Export the audit trail as JSON lines and verify its hash chain."""
    from api.audit import AuditLog

    s = _settings()
    with _errors_exit():
        log = AuditLog.from_settings(s, background=False)
    try:
        n = log.export_jsonl(out)
        result = log.check()
    finally:
        log.close()
    save_report(s, "audit-export", {"entries": n, "file": str(out), "chain_intact": result.ok,
                                    "first_bad_seq": result.first_bad_seq, "verification": result.as_dict()})  # fmt: skip
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify_cmd(
    anchor: Annotated[bool, typer.Option(help="Anchor the head afterwards if the chain verifies.")] = False,
) -> None:
    """Verify the audit chain: keyed hashes, links, and the signed anchors (truncation, rewrite).

    Exits 1 when verification fails. A legacy prefix written before the chain was keyed is
    reported (``unkeyed_entries``), not failed.
    """
    from rich.markup import escape

    from api.audit import AuditLog, anchor_path

    s = _settings()
    with _errors_exit():
        log = AuditLog.from_settings(s, background=False)
    try:
        result = log.check()
        anchored = log.anchor() if anchor and result.ok else None
    finally:
        log.close()
    save_report(
        s, "audit-verify", {**result.as_dict(), "anchor_file": str(anchor_path(s)), "anchored": anchored}
    )
    if result.unkeyed_entries:
        console.print(
            f"[yellow]{result.unkeyed_entries} entries predate the keyed chain (plain SHA-256)[/yellow]"
        )
    if not result.ok:
        console.print(
            f"[red]audit chain verification failed:[/red] {result.problem}: {escape(result.detail)}"
        )
        raise typer.Exit(1)


@app.command("trace")
def trace_cmd(
    seq: Annotated[int, typer.Argument(min=1, help="The audit entry's seq (a `score` or `read_score`).")],
) -> None:
    """Trace a served score from its audit entry: the entry's place in the chain, the model
    version, its training snapshot and label set hashes, the code versions, the thresholds in
    force, and the feature row (fetched and re-hashed while its publication is current) or its
    hash (online scores). Exits 1 when a check fails."""
    from graphrisk.trace import trace_score

    s = _settings()
    with _errors_exit():
        report = trace_score(s, seq)
    model, row = report["model"], report["feature_row"] or {}
    table = Table(title=f"audit entry {seq}: {report['entry']['action']} of {report['entry']['target']}")
    table.add_column("link")
    table.add_column("value", overflow="fold")
    for name, value in (
        ("audit entry", f"seq {seq}, hash {report['entry']['hash'][:16]}, by {report['entry']['actor']}"),
        ("chain position", report["chain"]["position"]["links_to"]),
        ("served", f"{report['served']['score']} ({report['served']['band']})"),
        ("model version", model.get("version")),
        ("training snapshot", model.get("snapshot_hash")),
        ("label set", model.get("label_set_hash")),
        ("model code version", report["code"]["model_code_version"]),
        ("serving code version", report["code"]["serving_code_version"]),
        ("thresholds in force", json.dumps(report["thresholds"])),
        ("feature row", f"{row.get('kind')} {row.get('file', '')} row {row.get('row', '-')}"),
        ("feature row hash", row.get("hash")),
    ):
        table.add_row(name, escape(str(value)))
    for name, ok in report["checks"].items():
        if ok is not None:
            table.add_row(f"check: {name}", "[green]ok[/green]" if ok else "[red]FAILED[/red]")
    console.print(table)
    save_report(s, "trace", report)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command("erase")
def erase_cmd(
    user_id: Annotated[str, typer.Argument(help="The user to erase.")],
    links: Annotated[
        bool,
        typer.Option(
            "--links",
            help="Also delete the user's pseudonymous links: its graph node and relationships, identifier "
            "nodes only it used, its recent applications.",
        ),
    ] = False,
    actor: Annotated[
        str | None, typer.Option(help="Who erases (recorded in the audit trail; default: the OS user).")
    ] = None,
) -> None:
    """Erase a person (GDPR art. 17): remove dead-letter lines naming the user, redact decision
    notes on or naming the user and, with --links, the graph links; record the erasure (counts,
    under a keyed pseudonym of the user) in the audit trail."""
    import getpass

    from api.privacy import erase
    from graphrisk.store import GraphStore

    s = _settings()
    who = actor or getpass.getuser()
    with _errors_exit():
        if links:
            with GraphStore(s) as store:
                report = erase(s, user_id, actor=who, links=True, store=store)
        else:
            report = erase(s, user_id, actor=who)
    save_report(s, "erase", report.to_dict())


@app.command("retention")
def retention_cmd() -> None:
    """Enforce retention: delete dead letters and shadow logs older than their settings, and prune
    audit entries older than audit_retention_days behind a signed checkpoint (verification then
    starts there). Run by the hourly job (the end of `graphrisk refresh`). Exits 1 when the audit
    chain does not verify (then nothing is pruned from it)."""
    from api.privacy import enforce_retention

    s = _settings()
    with _errors_exit():
        report = enforce_retention(s)
    save_report(s, "retention", report.to_dict())


def _retention_after_refresh(s: Settings) -> dict[str, Any] | str:
    """Retention at the end of the hourly refresh; its failure is reported, not fatal (the
    refresh's graph and scores are already published)."""
    from api.audit import AuditIntegrityError
    from api.privacy import enforce_retention

    try:
        return enforce_retention(s).to_dict()
    except (AuditIntegrityError, OSError) as exc:
        console.print(f"retention not enforced: {exc}", markup=False, style="yellow")
        return f"failed: {exc}"


def _retrain_after_refresh(
    s: Settings, input_root: str, history: _EventHistory | None = None
) -> dict[str, Any] | str:
    """The hourly job's champion/challenger step (probation, shadow, retrain when due); its
    failure is reported, not fatal (the refresh's graph and scores are already published).
    ``history``: the refresh's event log, if the monitoring run already holds it."""
    if s.retrain_labels is None or "://" in input_root:
        return "skipped: set retrain_labels (and refresh a local folder) to retrain on a schedule"
    try:
        return _retrain_cycle(
            s, Path(input_root), s.retrain_labels, decisions=True, force=False, history=history
        )
    except (GraphRiskError, OSError, ValueError) as exc:  # registry and audit log errors included
        console.print(f"retrain step failed: {exc}", markup=False, style="yellow")
        return f"failed: {exc}"


@app.command("decisions-export")
def decisions_export_cmd(
    out: Annotated[Path, typer.Option(help="Parquet file of user_id, is_fraud.")] = Path(
        "var/decision_labels.parquet"
    ),
) -> None:
    """Export investigators' decided labels (``graphrisk train`` already merges them itself)."""
    from api.decisions import DecisionStore

    s = _settings()
    store = DecisionStore(s.decision_store_url)
    try:
        labels = store.labels()
    finally:
        store.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    labels.to_parquet(out, index=False)
    save_report(
        s,
        "decisions-export",
        {"file": str(out), "users": len(labels), "fraud": int(labels["is_fraud"].sum())},
    )


@app.command("demo")
def demo_cmd(
    users: Annotated[int, typer.Option(min=100, help="Synthetic users to generate.")] = 5_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    serve: Annotated[
        bool, typer.Option(help="End by serving the API on the demo graph (Ctrl-C stops).")
    ] = True,
    port: Annotated[int, typer.Option(help="API port when serving.")] = 8000,
) -> None:
    """End to end on the embedded default: ArcadeDB, events, graph, model, scores, rings, API."""
    import pandas as pd

    from gnn.workflow import train_score_and_find_rings
    from graphrisk.errors import StoreError
    from graphrisk.local_server import LocalServer, Neo4jServer, local_server
    from graphrisk.store import GraphStore
    from graphrisk.synthetic import generate
    from pipelines.refresh import refresh

    s = _settings()
    server: LocalServer | Neo4jServer | None = None
    with GraphStore(s) as probe:
        try:
            probe.verify()
        except StoreError:
            server = local_server(s)  # the engine of GRAPHRISK_STORE_ENGINE (ArcadeDB by default)
    try:
        if server is not None:
            with _spinner(f"starting {server.engine} on {server.uri}"), _errors_exit():
                server.start()
        events_dir = s.data_dir / "demo" / f"synthetic-{users}-{seed}"
        with _spinner(f"generating {users:,} users (seed {seed})"):
            gen = generate(events_dir, users=users, seed=seed)
        labels_path = events_dir / "labels" / "users.parquet"
        with _errors_exit(), GraphStore(s) as store:
            with _spinner("building the graph (Beam)"):
                report = refresh(s, store, events_dir / "events")
            with _spinner("training the risk model, scoring users, finding rings"):
                downstream = train_score_and_find_rings(
                    s, store, pd.read_parquet(labels_path), events_dir=events_dir / "events"
                )
            nodes, rels = store.node_counts(), store.rel_counts()
        table = Table("label / type", "count", "events", title="entity graph")
        for label, n in nodes.items():
            table.add_row(label, f"{n:,}", "")
        for rel, v in rels.items():
            table.add_row(rel, f"{v['rels']:,}", f"{v['events']:,}")
        Console(stderr=True).print(table)
        body = report.to_dict()
        body["snapshot"] = {k: v for k, v in body["snapshot"].items() if k != "files"}
        save_report(s, "demo", {"generated": _as_dict(gen), "refresh": body,
                                "graph": {"nodes": nodes, "relationships": rels}, **downstream})  # fmt: skip
        if serve:
            user = pd.read_parquet(labels_path)["user_id"].iloc[0]
            console.print(
                f"\nServing the API on http://127.0.0.1:{port} (docs at /docs). Try:\n"
                f"  curl -s -H 'X-API-Key: dev-onboarding-key' http://127.0.0.1:{port}/v1/users/{user}/score\n"
                f"  curl -s -H 'X-API-Key: dev-investigator-key' http://127.0.0.1:{port}/v1/users/{user}/explanation\n"
            )
            import uvicorn

            uvicorn.run("api.main:create_app", factory=True, host="127.0.0.1", port=port, log_level="warning")
    finally:
        if server is not None:
            server.stop()


def _as_dict(obj: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, dict):
        return obj
    return {"result": obj}


# Monitoring (gnn/monitor): drift and skew against the production model's training reference.
monitor_app = typer.Typer(help="Drift, skew and graph structure against training.", no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")


def _monitor_refresh(
    s: Settings, downstream: dict[str, Any], history: _EventHistory | None = None
) -> dict[str, Any] | str:
    """Drift and skew of the refresh's scores, exported to ``data_dir/metrics/monitor.prom``;
    never fails the refresh (its graph and scores are already published).

    ``history`` (the refresh's event log; None for a remote input) lets the applicant rows the API
    served be compared with their batch as-of rows; the graph store, known users' online rows
    with their published rows (:func:`gnn.monitor.serving.serving_skew`).
    """
    from gnn.monitor.run import monitor_snapshot
    from gnn.registry import RegistryError
    from graphrisk.store import GraphStore

    if not isinstance(downstream.get("scores"), dict):
        return "skipped: no scores"
    rings = downstream.get("rings")
    try:
        with _spinner("measuring drift and skew"), GraphStore(s) as store:
            result = monitor_snapshot(s, ring_report=rings if isinstance(rings, dict) else None,
                                      log=history, store=store)  # fmt: skip
    except (RegistryError, OSError, ValueError) as exc:
        return f"skipped: {exc}"
    for alarm in result.alarms[:10]:
        console.print(f"drift alarm: {alarm.kind} {alarm.subject} = {alarm.value:.3g} "
                      f"(threshold {alarm.threshold:.3g})", markup=False, style="yellow")  # fmt: skip
    return result.summary()


@monitor_app.command("report")
def monitor_report_cmd(
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder for index.html and its PNG charts.")],
    labels: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Labels known now (user_id, is_fraud), for label drift."
        ),
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Event partitions (the refresh's input): applicant rows the API served are compared"
            " with their batch as-of rows.",
        ),
    ] = None,
) -> None:
    """Measure drift on the current snapshot against the production model's training reference,
    and training-serving skew (known users' online rows against their published rows; with
    --events, served applicant rows against their batch as-of rows), export the Prometheus
    textfile, and write an HTML report with PNG charts to --out."""
    import pandas as pd

    from gnn.monitor.report import write_report
    from gnn.monitor.run import load_history, monitor_snapshot
    from graphrisk.store import GraphStore

    s = _settings()
    table = None
    if labels is not None:
        table = pd.read_parquet(labels) if labels.suffix == ".parquet" else pd.read_csv(labels)
    history = _EventHistory(s, events) if events is not None else None
    # No production model: its message, exit 1. A store that does not answer only leaves the
    # known-user comparison out (a note in the report).
    with _errors_exit(), _spinner("measuring drift and skew"), GraphStore(s) as store:
        result = monitor_snapshot(s, labels=table, log=history, store=store)
    path = write_report(result, out, load_history(s.data_dir), s.drift_psi_alert)
    console.print(f"report: {path}")
    save_report(s, "monitor", result.summary() | {"report": str(path)})


if __name__ == "__main__":
    app()
