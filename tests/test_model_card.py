"""Model cards (gnn/model_card.py): every section a model-risk reviewer asks for, with real numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

import gnn.decision_training as decision_training
from gnn.backtest import BacktestConfig
from gnn.decision_training import train_decision_point_models
from gnn.model_card import INPUTS_DIR, bootstrap, ranking_metrics, write_model_card
from gnn.promotion import GATED, decide
from gnn.registry import ModelRegistry
from graphrisk.cli import app
from graphrisk.config import Settings
from graphrisk.synthetic.generator import generate
from pipelines.event_tables import read_events

torch.set_num_threads(1)

SECTIONS = (
    "## Intended use",
    "## Out-of-scope uses",
    "## Training data",
    "## Features",
    "## Performance by decision point and typology",
    "### Measured at onboarding",
    "### Measured at refresh",
    "## Calibration",
    "## Thresholds and expected review volume",
    "## Performance by segment",
    "## Comparison with the model it replaces",
    "## Monitoring plan and alert thresholds",
    "## Known limitations",
    "## Approval record",
)


def test_ranking_metrics_match_sklearn_and_intervals_hold_the_estimate() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.1).astype(np.int64)
    s = np.round(rng.random(400) * 0.5 + 0.4 * y, 2)  # rounded: ties, grouped as sklearn groups them
    got = ranking_metrics(y, s, np.ones((1, len(y))))
    assert got["auprc"][0] == pytest.approx(average_precision_score(y, s))
    assert got["auroc"][0] == pytest.approx(roc_auc_score(y, s))
    frame = pd.DataFrame({"user_id": [f"u{i % 250}" for i in range(400)], "score": s, "is_fraud": y})
    est = bootstrap(frame, {"block": 0.6}, resamples=100, seed=1)
    for e in est.values():
        assert e.low <= e.point <= e.high
    assert est["auprc"].high - est["auprc"].low > 0.01


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two decision-point versions on one small synthetic world, the second replacing the first."""
    root = tmp_path_factory.mktemp("card")
    generate(root / "w", users=1500, seed=37, days=5)
    events = root / "w" / "events"
    labels = pd.read_parquet(root / "w" / "labels" / "users.parquet")
    settings = Settings(data_dir=root / "var")
    log = read_events(events, settings)
    registry = ModelRegistry(settings.data_dir / "models")
    # Training replays the history with no test period, so its rows do not depend on the labels or
    # the seed: replay once for both versions (the replay is most of a training's time).
    replay = decision_training.run_backtest
    cache: dict[str, Any] = {}

    def once(*args: Any, **kwargs: Any) -> Any:
        if "result" not in cache:
            cache["result"] = replay(*args, **kwargs)
        return cache["result"]

    mp = pytest.MonkeyPatch()
    mp.setattr(decision_training, "run_backtest", once)
    try:
        sources = {"file": "users.parquet", "file_labels": len(labels), "decisions": {"decided": 0, "changed": 0,
                   "added": 0}}  # fmt: skip
        first, _ = train_decision_point_models(log, labels, registry, BacktestConfig(label_delay_h=12),
                                               label_sources=sources)  # fmt: skip
        registry.promote(first.version, force=True)
        second, _ = train_decision_point_models(
            log, labels, registry, BacktestConfig(label_delay_h=12, seed=1),
            label_sources=sources | {"decisions": {"decided": 4, "changed": 1, "added": 0}},
        )  # fmt: skip
        registry.promote(second.version, force=True)
    finally:
        mp.undo()
    return {"root": root, "registry": registry, "first": first, "second": second, "settings": settings}


def test_card_has_every_section_with_real_numbers(trained: dict[str, Any]) -> None:
    registry: ModelRegistry = trained["registry"]
    second = trained["second"]
    out = trained["root"] / "card-second"
    # The champion-challenger gate's record (gnn/promotion.py) beside the version, as retrain leaves it.
    champion = {
        "onboarding_auprc": 0.70,
        "ring_detection_h": 12.0,
        "review_load": 0.020,
        "calibration_ece": 0.010,
    }
    challenger = champion | {"onboarding_auprc": 0.80, "review_load": 0.018}
    gate = decide(second.version, trained["first"].version, challenger, champion, {m.name: 0.01 for m in GATED},
                  {"from": 1_767_830_400_000, "to": 1_767_916_800_000})  # fmt: skip
    registry.write_gate(second.version, gate.to_dict())
    path = write_model_card(registry, second.version, out, settings=trained["settings"])
    md = path.read_text()
    card = json.loads((out / "card.json").read_text())
    for section in SECTIONS:
        assert section in md, section

    # Training window, label sources with counts, label delay.
    assert re.search(r"\*\*Event window\*\*: 2026-\d\d-\d\d \d\d:\d\d UTC to 2026-", md)
    assert "investigator decisions (decision store) | 4 (1 changed" in md
    assert "**Label delay**: 12 h" in md
    labels = card["training"]["labels"]
    assert labels["users"] == 1500 and 0 < labels["fraud_known_by_cutoff"] <= labels["fraud"]

    # Feature families with counts, not the names of every feature.
    features = md.split("## Features")[1].split("\n## ")[0]
    assert len(second.feature_names) > 500
    assert "`via_mean`" in features and "`shared_max`" in features
    family_rows = [ln for ln in features.splitlines() if ln.startswith("| `")]
    assert 5 <= len(family_rows) < 40
    counts = sum(v["refresh"] for v in card["feature_families"].values())
    assert counts == len(second.feature_names)
    named = [f for f in second.feature_names if f"`{f}`" in md]
    assert len(named) <= 5, named[:10]  # only names that are families too (``clustering``)

    # The figures come from a period of their own, held out from early stopping and thresholds: an
    # evaluation twin fitted at the period's start (the version is fitted at the history's end).
    training = json.loads((registry.root / second.version / INPUTS_DIR / "training.json").read_text())
    heldout = pd.read_parquet(registry.root / second.version / INPUTS_DIR / "heldout.parquet")
    for point in ("onboarding", "refresh"):
        ev = training["evaluation"][point]
        assert ev["kind"] == "evaluation_twin" and ev["from_ms"] == ev["twin_cutoff_ms"] < ev["to_ms"]
        assert ev["to_ms"] == training["cutoff_ms"]
        rows = heldout[heldout["point"] == point]
        assert rows["decided_ms"].min() >= ev["from_ms"] and rows["decided_ms"].max() < ev["to_ms"]
        assert f"- **{point}** (at {point}" in md
    assert md.count("measured on an evaluation twin") == 2 and "held-out period 2026-" in md

    # Per decision point and typology, with intervals holding their estimate.
    for point in ("onboarding", "refresh"):
        perf = card["performance"][point]
        assert perf["all"]["rows"] > 50 and perf["all"]["fraud"] >= 2
        for group in perf.values():
            for metric in ("auprc", "auroc"):
                e = group[metric]
                if e["point"] is not None and np.isfinite(e["point"]):
                    assert e["low"] <= e["point"] <= e["high"]
        assert len(perf) >= 2  # overall and at least one typology
        assert 0 < perf["all"]["auroc"]["point"] <= 1
    assert re.search(r"\| all \| [\d,]+ \| \d+ \| 0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]", md)

    # Thresholds with the expected review volume and precision at each.
    for point in ("onboarding", "refresh"):
        th = card["thresholds"][point]
        assert set(th) == {"review", "block"}
        # On a period no threshold was chosen on, the small world's block band may flag nobody
        # (onboarding: 3 fraud in about 260 rows): precision is then undefined, not made up.
        assert th["review"]["per_1000"] >= th["block"]["per_1000"] >= 0
        assert th["review"]["per_day"] > 0
        for band in ("review", "block"):
            p = th[band]["precision"]
            if th[band]["per_1000"] > 0:
                assert p["low"] <= p["point"] <= p["high"]
            else:
                assert p["point"] is None or not np.isfinite(p["point"])
        # The twin's own thresholds band its scores; the served ones are kept beside them.
        assert th["block"]["served_threshold"] != th["block"]["threshold"]

    # Calibration curve and the other charts: PNG files, non-empty.
    for name in ("calibration.png", "performance_by_typology.png", "thresholds.png"):
        png = out / name
        assert png.stat().st_size > 5_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in md
    assert 0 <= card["calibration"]["refresh"]["ece"] < 1

    # Segments that exist in the rows: country, and account age at refresh.
    assert "country" in card["segments"]["onboarding"]
    assert "account_age" in card["segments"]["refresh"]
    assert "not in the events: channel" in md

    # Comparison with the version it replaced, monitoring thresholds, limitations, approval.
    assert card["comparison"]["previous"] == trained["first"].version
    assert "refresh held-out auprc" in card["comparison"]["metrics"]
    assert f"Replaces **`{trained['first'].version}`**" in md
    assert "`drift_psi_alert` | 0.2" in md and "monitor/refresh.npz" in md
    assert "Synthetic training data" not in md  # investigators' decisions were merged into these labels
    assert "Prior shift" in md
    approval = md.split("## Approval record")[1]
    assert trained["first"].version in approval and "no gate record" not in approval
    assert f"Promotion gate: **passed** against champion `{trained['first'].version}`" in approval
    assert "| onboarding_auprc | 0.7000 | 0.8000 | 0.0100 | higher | yes |" in approval
    assert "| skew_exposure | n/a | n/a | 0.0100 | lower | not measured (not measured) |" in approval
    assert "| yes |" in approval.split("Promotion gate")[0]  # promoted with force: the entry says so
    assert card["approval"]["promotions"][0]["version"] == second.version


def test_cli_writes_the_first_versions_card(trained: dict[str, Any]) -> None:
    first = trained["first"]
    out = trained["root"] / "card-first"
    env = {"GRAPHRISK_DATA_DIR": str(trained["settings"].data_dir)}
    res = CliRunner().invoke(app, ["models", "card", first.version, "--out", str(out)], env=env)
    assert res.exit_code == 0, res.output
    md = (out / "MODEL_CARD.md").read_text()
    assert "this is the first model" in md
    assert "Synthetic training data" in md  # planted labels only
    assert "no gate record" in md
    assert (trained["registry"].root / first.version / INPUTS_DIR / "heldout.parquet").exists()
    # The registry's short card beside the model lists families too, and points to the full one.
    short = (trained["registry"].root / first.version / "MODEL_CARD.md").read_text()
    assert "families)" in short and "card/MODEL_CARD.md" in short
    assert sum(f"`{f}`" in short for f in first.feature_names) <= 5
    bad = CliRunner().invoke(app, ["models", "card", "no-such-version"], env=env)
    assert bad.exit_code == 1


def test_card_without_card_inputs_says_what_is_missing(trained: dict[str, Any], tmp_path: Path) -> None:
    # A version registered before card inputs existed (or by the snapshot trainer) still gets a card.
    registry = ModelRegistry(tmp_path / "models")
    model, meta = trained["registry"].load(trained["first"].version)
    fields = {k: v for k, v in vars(meta).items() if k not in ("version", "created_at", "code_version")}
    old = registry.register(model, fields)
    md = write_model_card(registry, old.version, resamples=20).read_text()
    for section in SECTIONS[:4]:
        assert section in md
    assert "No held-out scores were stored" in md and "no gate record" in md
