"""Converters of the public data sets reconcile with their sources."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrisk.converters import convert_amlsim, convert_sffsd
from graphrisk.eventfiles import partition_files, read_partitioned
from graphrisk.events import FieldError, parse_event

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SFFSD = DATA / "sffsd" / "S-FFSD.csv"
AMLSIM = DATA / "amlsim"
START_MS = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"public data not found at {DATA}")


def _failures(events: pd.DataFrame) -> list[str]:
    bad = []
    for record in events.to_dict("records"):
        try:
            parse_event(record)
        except FieldError as exc:
            bad.append(exc.field)
    return bad


def test_sffsd(tmp_path: Path) -> None:
    report = convert_sffsd(SFFSD, tmp_path)
    source = pd.read_csv(SFFSD)
    assert report.rows == report.events == len(source) == 77_881
    events = read_partitioned(tmp_path)
    assert len(events) == 77_881 and events["event_id"].is_unique
    assert (events["event_type"] == "payment").all() and (events["currency"] == "EUR").all()
    assert events["time"].min() == START_MS and events["time"].max() == START_MS + 77_880 * 1000
    assert report.partitions == len(partition_files(tmp_path)) == 22

    # Row by row the source survives: event_id sffsd-<row> carries Source, Target, Amount, Type.
    by_row = events.assign(row=events["event_id"].str.removeprefix("sffsd-").astype(int)).set_index("row")
    by_row = by_row.sort_index()
    assert (by_row["user_id"].to_numpy() == source["Source"].to_numpy()).all()
    assert (by_row["merchant_id"].to_numpy() == source["Target"].to_numpy()).all()
    assert (by_row["merchant_category"].to_numpy() == source["Type"].to_numpy()).all()
    assert np.allclose(by_row["amount"].to_numpy(), source["Amount"].to_numpy())

    labels = pd.read_parquet(tmp_path / "labels" / "transactions.parquet")
    assert len(labels) == 77_881 and set(labels["event_id"]) == set(events["event_id"])
    assert labels["label"].value_counts().to_dict() == {2: 48_238, 0: 24_387, 1: 5_256}
    assert report.labels == {"fraud": 5_256, "legit": 24_387, "unlabelled": 48_238}

    # Zero amounts are written and dead-lettered; a sample of the rest all validates.
    zero = events["amount"] <= 0
    assert (
        report.expected_invalid
        == {"non_positive_amount": int((source["Amount"] <= 0).sum())}
        == {"non_positive_amount": int(zero.sum())}
    )
    assert set(_failures(events[zero])) == {"amount"}
    assert _failures(events[~zero].sample(5_000, random_state=0)) == []


@pytest.mark.parametrize("sim", ["20K_cycle200", "20K_fanin200", "20K_fanin200cycle200"])
def test_amlsim(tmp_path: Path, sim: str) -> None:
    report = convert_amlsim(AMLSIM / sim, tmp_path)
    tx = pd.read_csv(AMLSIM / sim / "transactions.csv")
    nodes = pd.read_csv(AMLSIM / sim / "nodes.csv")
    assert report.rows == report.events == len(tx)
    events = read_partitioned(tmp_path)
    assert len(events) == len(tx) and events["event_id"].is_unique
    assert events["merchant_id"].isna().all() and events["counterparty_id"].notna().all()
    assert events["time"].min() == START_MS + int(tx["time"].min()) * 86_400_000
    assert report.partitions == tx["time"].nunique()
    assert np.isclose(events["amount"].sum(), tx["value"].sum())

    labels = pd.read_parquet(tmp_path / "labels" / "users.parquet")
    assert len(labels) == len(nodes) and labels["user_id"].str.fullmatch(r"acct-\d+").all()
    assert labels["is_fraud"].sum() == nodes["isFraud"].sum() == report.labels["fraud"]
    assert labels["fraud_step"].isna().sum() == (nodes["fraudStep"] < 0).sum()

    self_transfers = int((tx["sourceNodeId"] == tx["targetNodeId"]).sum())
    assert report.expected_invalid["self_transfer"] == self_transfers
    own = events["user_id"] == events["counterparty_id"]
    assert len(_failures(events[own])) == own.sum() == self_transfers
    assert _failures(events[~own].sample(3_000, random_state=0)) == []


def test_replaces_own_output_only(tmp_path: Path) -> None:
    convert_amlsim(AMLSIM / "20K_cycle200", tmp_path)
    convert_amlsim(AMLSIM / "20K_cycle200", tmp_path)  # its own earlier output: replaced
    with pytest.raises(FileExistsError):
        convert_sffsd(SFFSD, tmp_path)
    convert_sffsd(SFFSD, tmp_path, overwrite=True)
    assert len(partition_files(tmp_path)) == 22
