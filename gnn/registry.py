"""The model registry: every trained model, versioned, with what it needs to be trusted and restored.

Layout under ``<data_dir>/models``::

    registry.json            production version and promotion history
    <version>/model.pkl      the fitted scorer with its calibrator and threshold
    <version>/meta.json      snapshot hash, feature list, hyperparameters, metrics, code version
    <version>/MODEL_CARD.md  a human-readable card

    <version>/gate.json      the promotion gate's decision and numbers (gnn/promotion.py)
    challenger.json          the challenger in shadow, if any (apart from registry.json, whose
                             changes make the API reload)

Promotion is gated: by the version's recorded gate (challenger against champion on the same
backtest period, :mod:`gnn.promotion`) when it has one, else a model whose validation AUPRC is
below production's is refused. Every promotion and rollback is kept in the index's history.
Rollback returns production to the previously promoted version.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from graphrisk.errors import GraphRiskError


class RegistryError(GraphRiskError):
    """A registry operation was refused (unknown version, failed gate, nothing to roll back to)."""


@dataclass
class ModelMeta:
    """What the registry records about one version."""

    version: str
    model_name: str
    created_at: int
    snapshot_hash: str
    feature_names: list[str]
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    code_version: str
    dataset: str
    threshold: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    # gnn.lineage.label_set_hash of the labels it was trained from (None: registered before
    # versions recorded it).
    label_set_hash: str | None = None


def code_version(repo: Path | None = None) -> str:
    """The git commit of the running code (``+dirty`` when the tree has changes), or ``unknown``."""
    cwd = repo or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class ModelRegistry:
    """Saves, lists, promotes and rolls back model versions in a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._index_path = root / "registry.json"

    def _index(self) -> dict[str, Any]:
        if self._index_path.exists():
            return json.loads(self._index_path.read_text())
        return {"production": None, "history": []}

    def _save_index(self, index: dict[str, Any]) -> None:
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=2))
        tmp.replace(self._index_path)

    def register(self, model: Any, meta_fields: dict[str, Any]) -> ModelMeta:
        """Store a fitted model; the version id is derived from its content and time."""
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        created = int(time.time() * 1000)
        digest = hashlib.sha256(blob).hexdigest()[:10]
        version = f"{time.strftime('%Y%m%d%H%M%S', time.gmtime(created / 1000))}-{digest}"
        meta = ModelMeta(version=version, created_at=created, code_version=code_version(), **meta_fields)
        folder = self.root / version
        folder.mkdir(parents=True, exist_ok=False)
        (folder / "model.pkl").write_bytes(blob)
        (folder / "meta.json").write_text(json.dumps(asdict(meta), indent=2, default=str))
        (folder / "MODEL_CARD.md").write_text(model_card(meta))
        return meta

    def versions(self) -> list[ModelMeta]:
        """Every stored version, oldest first."""
        out = [ModelMeta(**json.loads(p.read_text())) for p in self.root.glob("*/meta.json")]
        return sorted(out, key=lambda m: (m.created_at, m.version))

    def meta(self, version: str) -> ModelMeta:
        """One version's metadata.

        Raises:
            RegistryError: no such version.
        """
        path = self.root / version / "meta.json"
        if not path.exists():
            raise RegistryError(f"no model version {version!r} in {self.root}")
        return ModelMeta(**json.loads(path.read_text()))

    def load(self, version: str | None = None) -> tuple[Any, ModelMeta]:
        """A stored model and its metadata (production's when ``version`` is None).

        Only load registries you wrote: models are pickles.

        Raises:
            RegistryError: no such version, or no production model.
        """
        version = version or self.production()
        if version is None:
            raise RegistryError("no production model: train one and `graphrisk models promote` it")
        meta = self.meta(version)
        return pickle.loads((self.root / version / "model.pkl").read_bytes()), meta

    def production(self) -> str | None:
        """The production version, if any."""
        return self._index()["production"]

    def promote(self, version: str, force: bool = False, record: dict[str, Any] | None = None) -> ModelMeta:
        """Make ``version`` production, unless its gate refused it (:meth:`read_gate`) or, with
        no gate recorded, its validation AUPRC is below production's.

        Args:
            version: The version to promote.
            force: Promote whatever the gate says (the history entry says so).
            record: Kept in the history entry (who, why, the gate's numbers).

        Raises:
            RegistryError: unknown version, or the gate refuses (and ``force`` is not set).
        """
        candidate = self.meta(version)
        index = self._index()
        current = index["production"]
        gate = self.read_gate(version)
        if gate is not None and not force and current != version:
            if not gate.get("passed", False):
                failed = ", ".join(c["metric"] for c in gate.get("checks", []) if c.get("passed") is False)
                raise RegistryError(f"refused: the gate refused {version} ({failed or 'see gate.json'})")
            if gate.get("champion") != current:
                # A verdict against another champion says nothing about this one.
                raise RegistryError(
                    f"refused: {version} was gated against {gate.get('champion')}, production is now "
                    f"{current}: retrain to gate it again"
                )
        if gate is None and current is not None and current != version and not force:
            prod = self.meta(current)
            cand_ap = candidate.metrics.get("val_auprc", float("-inf"))
            prod_ap = prod.metrics.get("val_auprc", float("-inf"))
            if cand_ap < prod_ap:
                raise RegistryError(
                    f"refused: {version} has validation AUPRC {cand_ap:.4f}, below production "
                    f"{current} at {prod_ap:.4f}"
                )
        entry = {
            "version": version,
            "previous": current,
            "at": int(time.time() * 1000),
            "forced": bool(force),
        }
        index["history"].append(entry | (record or {}))
        index["production"] = version
        self._save_index(index)
        return candidate

    def rollback(self, record: dict[str, Any] | None = None) -> str:
        """Return production to the version before the last promotion.

        The undone promotion leaves the history; the rollback itself is kept in the index's
        ``rollbacks`` list with ``record`` (who, why, automatic or not).

        Raises:
            RegistryError: there is nothing to roll back to.
        """
        index = self._index()
        if not index["history"] or index["history"][-1]["previous"] is None:
            raise RegistryError("nothing to roll back to")
        last = index["history"].pop()
        index["production"] = last["previous"]
        index.setdefault("rollbacks", []).append(
            {"from": last["version"], "to": last["previous"], "at": int(time.time() * 1000)} | (record or {})
        )
        self._save_index(index)
        return str(index["production"])

    def last_promotion(self) -> dict[str, Any] | None:
        """The history entry of the promotion that made the current production, if any."""
        history = self._index()["history"]
        return dict(history[-1]) if history else None

    def rollbacks(self) -> list[dict[str, Any]]:
        """Every rollback recorded, oldest first."""
        return list(self._index().get("rollbacks", []))

    # -- the promotion gate and the challenger -----------------------------------------------

    def write_gate(self, version: str, decision: dict[str, Any]) -> Path:
        """Record the promotion gate's decision for ``version`` (``<version>/gate.json``).

        Raises:
            RegistryError: no such version.
        """
        self.meta(version)
        path = self.root / version / "gate.json"
        _write_json(path, decision)
        return path

    def read_gate(self, version: str) -> dict[str, Any] | None:
        """The recorded gate decision of ``version``, if it went through one."""
        path = self.root / version / "gate.json"
        return json.loads(path.read_text()) if path.exists() else None

    def set_challenger(self, version: str, state: dict[str, Any]) -> None:
        """Put ``version`` in shadow as the challenger (``state``: since, until, gate...).

        Raises:
            RegistryError: no such version.
        """
        self.meta(version)
        _write_json(self.root / CHALLENGER_FILE, {"version": version} | state)

    def challenger(self) -> dict[str, Any] | None:
        """The challenger's state (``version`` and what :meth:`set_challenger` kept), if any."""
        path = self.root / CHALLENGER_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def clear_challenger(self) -> None:
        """End the challenger's shadow period (promoted or refused)."""
        (self.root / CHALLENGER_FILE).unlink(missing_ok=True)


# Kept apart from registry.json: the API reloads whenever that file changes, and a challenger
# entering or leaving shadow changes nothing served.
CHALLENGER_FILE = "challenger.json"


def _write_json(path: Path, body: dict[str, Any]) -> None:
    """Write ``body`` beside ``path`` and rename it into place (readers never see half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, default=str))
    tmp.replace(path)


def model_card(meta: ModelMeta) -> str:
    """A markdown model card for one version."""
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(meta.metrics.items()))
    params = "\n".join(f"| {k} | {v} |" for k, v in sorted(meta.hyperparameters.items()))
    # Families with counts, not every name: a reviewer cannot read 1,335 names (gnn/model_card.py
    # writes the full card with what each family measures).
    from gnn.monitor.families import family_of

    counts: dict[str, int] = {}
    for name in meta.feature_names:
        counts[family_of(name)] = counts.get(family_of(name), 0) + 1
    feats = "\n".join(f"| `{fam}` | {n} |" for fam, n in counts.items())
    return f"""# Model card: {meta.version}

- **Model**: {meta.model_name}
- **Trained on**: {meta.dataset}, snapshot `{meta.snapshot_hash[:16]}`
- **Label set**: `{(meta.label_set_hash or "not recorded")[:16]}`
- **Code version**: `{meta.code_version}`
- **Created**: {time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(meta.created_at / 1000))}
- **Decision threshold**: {meta.threshold if meta.threshold is not None else "n/a"}

## Intended use
Ranks users of the entity graph by probability of belonging to fraud (planted or confirmed
rings, mule activity, synthetic identities) for review by fraud investigators and for
onboarding decisions. Scores are calibrated on the validation split. Not a sole basis for
adverse action: reasons and evidence paths accompany each score.

## Metrics (validation, and test where present)
| metric | value |
|---|---|
{metrics}

## Hyperparameters
| name | value |
|---|---|
{params}

## Features ({len(meta.feature_names)} in {len(counts)} families)
| family | features |
|---|---|
{feats}

The full card (training window and labels, metrics per decision point with intervals, calibration,
thresholds, segments, comparison, monitoring, approval): `card/MODEL_CARD.md`, written by
`graphrisk train` and `graphrisk models card VERSION`.

## Limitations
Labels come from planted rings or investigator decisions, which under-represent fraud nobody has
found yet. Features use only links made before each user's own (no look-ahead), but scores drift
as the graph grows: retrain hourly-refreshed graphs on a schedule and compare before promoting.
"""
