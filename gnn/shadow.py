"""Shadow mode: the challenger scores beside the champion, logged, never served.

Each scoring run while a challenger is in shadow (:meth:`gnn.registry.ModelRegistry.challenger`)
writes ``<data_dir>/shadow/<challenger>/scores-<at_ms>.parquet`` (both models' score and band per
user) and appends one agreement line to ``agreement.jsonl`` beside it: rank correlation, band
agreement and the users who would change band (``flips``). Nothing of it reaches the published
scores, the store or the API. Files are deleted after ``shadow_log_retention_days``
(:func:`api.privacy.enforce_retention`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from gnn.data.dataset import NodeDataset
from gnn.registry import ModelRegistry

SHADOW_DIR = "shadow"
FLAG_BANDS = ("review", "block")


def agreement(champion: pd.DataFrame, challenger: pd.DataFrame) -> dict[str, Any]:
    """How two scorings of the same users agree (both ``id, score, band``).

    Returns:
        ``users``, ``spearman`` (rank correlation of scores), ``band_agreement`` (share with the
        same band), ``flips`` (``allow->flagged`` and ``flagged->allow``: users the challenger would
        add to or take from the review queue), ``bands`` (champion band -> challenger band ->
        count), and each model's flagged share.
    """
    both = champion.merge(challenger, on="id", suffixes=("_champion", "_challenger"))
    if both.empty:
        return {"users": 0}
    a, b = both["band_champion"].astype(str), both["band_challenger"].astype(str)
    fa, fb = a.isin(FLAG_BANDS), b.isin(FLAG_BANDS)
    rho = spearmanr(both["score_champion"], both["score_challenger"]).statistic
    crossed = pd.crosstab(a, b)
    return {
        "users": len(both),
        "spearman": float(rho) if np.isfinite(rho) else None,
        "band_agreement": float((a == b).mean()),
        "flips": {"allow->flagged": int((~fa & fb).sum()), "flagged->allow": int((fa & ~fb).sum())},
        "bands": {str(r): {str(c): int(crossed.loc[r, c]) for c in crossed.columns} for r in crossed.index},
        "flagged_share": {"champion": float(fa.mean()), "challenger": float(fb.mean())},
    }


def shadow_score(
    registry: ModelRegistry,
    dataset: NodeDataset,
    champion: pd.DataFrame,
    shadow_dir: Path,
    now_ms: int | None = None,
) -> dict[str, Any] | None:
    """Score ``dataset`` with the challenger in shadow and log it beside ``champion``'s scores.

    Args:
        registry: Where the challenger is recorded.
        dataset: The users the champion just scored.
        champion: The champion's published table (``id, score, band``).
        shadow_dir: ``<data_dir>/shadow``.
        now_ms: The run's time (default now).

    Returns:
        The run's agreement line (with ``version`` and ``file``), or None when no challenger is in
        shadow or its period is over.
    """
    state = registry.challenger()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if state is None or now_ms > int(state.get("until_ms", 0)):
        return None
    version = str(state["version"])
    model, _ = registry.load(version)
    scores = model.predict(dataset)
    table = pd.DataFrame(
        {"id": dataset.node_ids, "score": scores.astype(np.float64), "band": model.band(scores)}
    )
    out = shadow_dir / version
    out.mkdir(parents=True, exist_ok=True)
    both = champion[["id", "score", "band"]].merge(table, on="id", suffixes=("_champion", "_challenger"))
    path = out / f"scores-{now_ms}.parquet"
    both.assign(champion_version=str(champion["model_version"].iloc[0]) if "model_version" in champion else "",
                challenger_version=version).to_parquet(path, index=False)  # fmt: skip
    line = {"at_ms": now_ms, "version": version, "file": str(path)} | agreement(champion, table)
    with (out / "agreement.jsonl").open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    return line


def shadow_summary(shadow_dir: Path, version: str) -> dict[str, Any]:
    """Every logged run of ``version`` in shadow, summed up (runs, mean agreement, total flips)."""
    path = shadow_dir / version / "agreement.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    lines = [x for x in lines if x.get("users")]
    if not lines:
        return {"runs": 0}
    rho = [x["spearman"] for x in lines if x.get("spearman") is not None]
    return {
        "runs": len(lines),
        "first_at_ms": lines[0]["at_ms"],
        "last_at_ms": lines[-1]["at_ms"],
        "spearman_mean": float(np.mean(rho)) if rho else None,
        "band_agreement_mean": float(np.mean([x["band_agreement"] for x in lines])),
        "flips_last": lines[-1]["flips"],
        "flagged_share_last": lines[-1]["flagged_share"],
    }
