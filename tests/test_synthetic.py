"""The synthetic generator: determinism, validity, labels, realism of sharing, file layout."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import phonenumbers
import pytest

from graphrisk.eventfiles import HOUR_MS, partition_files, read_event_file, read_partitioned
from graphrisk.events import FieldError, parse_event
from graphrisk.normalise import (
    normalise_address,
    normalise_card,
    normalise_document,
    normalise_email,
    normalise_ip,
    normalise_phone,
)
from graphrisk.synthetic import TYPOLOGIES, GenerationReport, generate
from graphrisk.synthetic.rings import SIZES

USERS = 2000
SEED = 7


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationReport]:
    out = tmp_path_factory.mktemp("seed7")
    return out, generate(out, USERS, SEED)


@pytest.fixture(scope="module")
def events(run: tuple[Path, GenerationReport]) -> pd.DataFrame:
    return read_partitioned(run[0])


@pytest.fixture(scope="module")
def parsed(events: pd.DataFrame) -> dict[str, object]:
    """event_id -> parsed event, or the FieldError for invalid rows."""
    out: dict[str, object] = {}
    for record in events.to_dict("records"):
        try:
            out[record["event_id"]] = parse_event(record)
        except FieldError as exc:
            out[record["event_id"]] = exc
    return out


def test_same_seed_gives_identical_bytes(run: tuple[Path, GenerationReport], tmp_path: Path) -> None:
    again = generate(tmp_path / "again", USERS, SEED)
    assert _all_files(run[0]) == _all_files(tmp_path / "again")
    assert again.events == run[1].events


def test_other_seed_differs(run: tuple[Path, GenerationReport], tmp_path: Path) -> None:
    generate(tmp_path / "other", USERS, SEED + 1)
    mine, other = _all_files(run[0]), _all_files(tmp_path / "other")
    assert mine["labels/users.parquet"] != other["labels/users.parquet"]
    shared = set(mine) & set(other)
    assert sum(mine[k] == other[k] for k in shared if k.startswith("events/")) == 0


def test_volumes_and_ids(run: tuple[Path, GenerationReport], events: pd.DataFrame) -> None:
    report = run[1]
    assert report.events["onboarding"] == USERS
    assert 8 <= report.total_events / USERS <= 12
    assert len(events) == report.rows_written
    assert events["event_id"].nunique() == report.total_events
    assert events["event_id"].str.fullmatch(rf"e{SEED}-\d+").all()
    assert list(events.columns)[:5] == ["event_id", "event_type", "schema_version", "user_id", "time"]


def test_valid_records_parse_and_invalid_ones_fail(run: tuple[Path, GenerationReport], parsed: dict) -> None:
    report = run[1]
    failed = [k for k, v in parsed.items() if isinstance(v, FieldError)]
    assert len(failed) == report.invalid_records
    assert 0.0002 <= report.invalid_records / report.total_events <= 0.003
    assert sum(report.invalid_by_kind.values()) == report.invalid_records


def test_invalid_rate_is_configurable(tmp_path: Path) -> None:
    report = generate(tmp_path, 300, 3, invalid_rate=0.05, duplicate_rate=0.0)
    failures = 0
    for record in read_partitioned(tmp_path).to_dict("records"):
        try:
            parse_event(record)
        except FieldError:
            failures += 1
    assert failures == report.invalid_records
    assert 0.035 <= failures / report.total_events <= 0.065
    assert report.duplicate_records == 0


def test_duplicates_are_exact_copies(run: tuple[Path, GenerationReport], events: pd.DataFrame) -> None:
    dup = events[events["event_id"].duplicated(keep=False)]
    assert len(dup) == 2 * run[1].duplicate_records
    assert len(dup.drop_duplicates()) == run[1].duplicate_records


def test_identifiers_normalise(parsed: dict) -> None:
    onboarding = [e for e in parsed.values() if getattr(e, "event_type", None) == "onboarding"]
    assert len(onboarding) > 0.99 * USERS
    for e in onboarding:
        normalise_email(e.email)
        phone = normalise_phone(e.phone).value
        assert phonenumbers.is_valid_number(phonenumbers.parse(phone)), phone
        normalise_document(e.document.type, e.document.number, e.document.issuing_country)
        normalise_address(e.address.line1, e.address.city, e.address.postcode, e.address.country)
        normalise_ip(e.ip)
    versions = {normalise_ip(e.ip).value.count(":") > 0 for e in onboarding}
    assert versions == {False, True}
    payments = [e for e in parsed.values() if getattr(e, "event_type", None) == "payment"]
    for e in payments:
        if e.card_number:
            normalise_card(e.card_number)
        assert e.currency in {"EUR", "GBP", "USD", "PLN"}
    assert any(e.counterparty_id for e in payments)


def test_one_onboarding_per_user(parsed: dict) -> None:
    users = pd.Series([e.user_id for e in parsed.values() if getattr(e, "event_type", None) == "onboarding"])
    assert users.is_unique


def test_rings_and_labels_are_consistent(run: tuple[Path, GenerationReport]) -> None:
    out, report = run
    users = pd.read_parquet(out / "labels" / "users.parquet")
    rings = pd.read_parquet(out / "labels" / "rings.parquet")
    assert len(users) == USERS and users["user_id"].is_unique
    assert set(rings["typology"]) == set(TYPOLOGIES)
    for typology, (lo, hi, _) in SIZES.items():
        sizes = rings.loc[rings["typology"] == typology, "size"]
        assert sizes.between(lo, hi).all(), (typology, sizes.tolist())
    members = users[users["ring_id"].notna()]
    assert (members["is_fraud"] == 1).all()
    assert (users.loc[users["ring_id"].isna(), "is_fraud"] == 0).all()
    assert set(members["ring_id"]) == set(rings["ring_id"])
    per_ring = members.groupby("ring_id").agg(size=("user_id", "size"), typology=("typology", "first"))
    joined = rings.set_index("ring_id").join(per_ring, rsuffix="_members")
    assert (joined["size"] == joined["size_members"]).all()
    assert (joined["typology"] == joined["typology_members"]).all()
    assert 0.01 <= users["is_fraud"].mean() <= 0.05
    assert report.fraud_users == int(users["is_fraud"].sum())
    merchants = pd.read_parquet(out / "labels" / "merchants.parquet")
    assert merchants["is_fraud"].sum() == report.fraud_merchants > 0


def test_sharing_is_skewed(events: pd.DataFrame) -> None:
    seen = events.dropna(subset=["ip", "user_id"])
    per_ip = seen.groupby("ip")["user_id"].nunique()
    assert per_ip.median() <= 2
    assert per_ip.max() >= 50 * per_ip.median()
    devices = events.dropna(subset=["device.id", "user_id"]).groupby("user_id")["device.id"].nunique()
    assert (devices <= 2).mean() >= 0.85
    per_merchant = events.dropna(subset=["merchant_id"]).groupby("merchant_id").size()
    assert per_merchant.max() >= 20 * per_merchant.median()


def test_ring_members_share_identifiers(run: tuple[Path, GenerationReport], parsed: dict) -> None:
    users = pd.read_parquet(run[0] / "labels" / "users.parquet").set_index("user_id")
    docs: dict[str, set[str]] = {}
    for e in parsed.values():
        if getattr(e, "event_type", None) == "onboarding":
            key = normalise_document(e.document.type, e.document.number, e.document.issuing_country).value
            docs.setdefault(key, set()).add(e.user_id)
    shared = [u for holders in docs.values() if len(holders) > 1 for u in holders]
    assert shared, "synthetic identities should re-use documents"
    assert set(users.loc[shared, "typology"]) == {"synthetic_identity"}


def test_partitions_are_hourly_and_sorted(run: tuple[Path, GenerationReport]) -> None:
    out, report = run
    files = partition_files(out)
    assert len(files) == report.partitions == len(set(files))
    start_ms = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)
    for path in files:
        m = re.search(r"dt=(\d{4}-\d{2}-\d{2})/hr=(\d{2})/part-00000\.parquet$", path.as_posix())
        assert m, path
        hour = int(datetime.fromisoformat(f"{m[1]}T{m[2]}:00+00:00").timestamp() * 1000)
        times = read_event_file(path).column("time").to_numpy()
        times = times[times > 10**12]  # rows with a deliberately broken time stay where they arrived
        assert ((times >= hour) & (times < hour + HOUR_MS)).all()
        assert (np.diff(times) >= 0).all()
        assert start_ms <= hour < start_ms + 14 * 24 * HOUR_MS


def test_formats_hold_the_same_events(tmp_path: Path) -> None:
    frames = {}
    for fmt in ("parquet", "jsonl", "csv"):
        generate(tmp_path / fmt, 250, 11, days=3, fmt=fmt)
        frames[fmt] = (
            read_partitioned(tmp_path / fmt).sort_values(["event_id", "time"]).reset_index(drop=True)
        )
        assert all(p.suffix == f".{fmt}" for p in partition_files(tmp_path / fmt))
    pd.testing.assert_frame_equal(frames["parquet"], frames["jsonl"])
    pd.testing.assert_frame_equal(frames["parquet"], frames["csv"])


def test_progress_and_replacing_output(tmp_path: Path) -> None:
    calls: list[int] = []
    generate(tmp_path, 250, 5, days=2, progress=calls.append)
    assert calls == sorted(calls) and calls[-1] == 250
    # Its own earlier output is replaced, stale hours included; other data is refused.
    assert generate(tmp_path, 250, 6, days=1).partitions <= 24
    assert len(partition_files(tmp_path)) <= 24
    foreign = tmp_path / "foreign"
    (foreign / "events").mkdir(parents=True)
    (foreign / "events" / "data.csv").write_text("x\n")
    with pytest.raises(FileExistsError):
        generate(foreign, 250, 5, days=1)
    generate(foreign, 250, 5, days=1, overwrite=True)
    assert not (foreign / "events" / "data.csv").exists()


def test_smallest_population(tmp_path: Path) -> None:
    report = generate(tmp_path, 100, 1, days=2)
    assert set(report.rings) == set(TYPOLOGIES) and all(report.rings.values())
    with pytest.raises(ValueError, match="at least 100"):
        generate(tmp_path / "tiny", 99, 1)
