"""The model registry: versions, gated promotion, rollback, model cards."""

from __future__ import annotations

from pathlib import Path

import pytest

from gnn.registry import ModelRegistry, RegistryError


def _meta(ap: float) -> dict[str, object]:
    return {"model_name": "gbdt", "snapshot_hash": "abc123", "feature_names": ["f1", "f2"],
            "hyperparameters": {"rounds": 10}, "metrics": {"val_auprc": ap}, "dataset": "unit"}  # fmt: skip


def test_register_promote_gate_and_rollback(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    a = reg.register({"weights": [1, 2]}, _meta(0.80))
    b = reg.register({"weights": [3]}, _meta(0.70))
    c = reg.register({"weights": [4]}, _meta(0.90))
    assert [m.version for m in reg.versions()] == [a.version, b.version, c.version]
    with pytest.raises(RegistryError, match="no production model"):
        reg.load()
    reg.promote(a.version)
    with pytest.raises(RegistryError, match="below production"):
        reg.promote(b.version)
    assert reg.production() == a.version
    reg.promote(c.version)
    model, meta = reg.load()
    assert model == {"weights": [4]} and meta.metrics["val_auprc"] == 0.90
    assert reg.rollback() == a.version
    assert reg.load()[0] == {"weights": [1, 2]}
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    reg.promote(b.version, force=True)
    assert reg.production() == b.version


def test_version_records_lineage_and_card(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    meta = reg.register([1], _meta(0.5))
    assert meta.code_version != "" and meta.snapshot_hash == "abc123"
    card = (tmp_path / meta.version / "MODEL_CARD.md").read_text()
    assert meta.version in card and "val_auprc" in card and "`f1`" in card
    with pytest.raises(RegistryError, match="no model version"):
        reg.meta("nope")
