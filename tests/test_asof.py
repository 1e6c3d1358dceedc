"""Rows as of their moment: the future never reaches them, and batch equals the API.

* appending any events after a decision time changes no onboarding row and no refresh row
  decided before them (property test over random later events that reuse existing users and
  identifiers, so they would land in the neighbourhoods if they leaked);
* the batch onboarding row of an applicant equals the row the API builds from a real store
  loaded with the same history, plus the applications it scored earlier in the hour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.applications import RecentApplications
from gnn.asof import HourState, applicants, onboarding_rows, refresh_rows, star_of
from gnn.models.base import FeatureOptions
from gnn.online import applicant_row, application_nodes, store_links, with_recent
from graphrisk.clean_event import RepeatedIdentifiers, clean_event
from graphrisk.config import Settings, load_settings
from graphrisk.events import parse_event
from graphrisk.pseudonymise import Pseudonymiser
from graphrisk.store import GraphStore
from graphrisk.synthetic.generator import generate
from pipelines.event_log import EventLog, FactLog, GraphTimeline, read_event_log
from pipelines.read import read_records
from pipelines.refresh import discover_partitions, refresh

HOUR_MS = 3_600_000
OPTIONS = FeatureOptions(label_hops=0, history_labels=False, reduces=("mean", "max", "sum"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("asof-world")
    generate(out, users=500, seed=5, days=2)
    return out / "events"


@pytest.fixture(scope="module")
def log(world: Path) -> EventLog:
    return read_event_log(world, [p.path for p in discover_partitions(world)], load_settings())


def _busiest_hour(log: EventLog) -> int:
    apps = applicants(log.clean)
    hours = apps["time"] // HOUR_MS * HOUR_MS
    counts = hours[hours > hours.min()].value_counts()
    return int(counts.index[0])


def _rows_at(clean: pa.Table, hour: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onboarding rows of the hour's applicants and refresh rows at the hour."""
    timeline = GraphTimeline(FactLog.of(clean))
    timeline.advance(hour)
    state = HourState.of(timeline)
    apps = applicants(clean)
    apps = apps[(apps["time"] >= hour) & (apps["time"] < hour + HOUR_MS)]
    onb = onboarding_rows(state, apps, star_of(state, OPTIONS))
    ref, _, users = refresh_rows(state, OPTIONS)
    return onb, ref, users


def _later_events(clean: pa.Table, after: int, picks: list[tuple[int, int, int, int]]) -> pa.Table:
    """Copies of existing events moved after ``after``, each with identifiers of another event."""
    rows = clean.to_pylist()
    out = []
    for k, (src, donor, shift, user) in enumerate(picks):
        row = dict(rows[src % len(rows)])
        other = rows[donor % len(rows)]
        for col in ("device_id", "ip", "doc", "email", "phone", "address", "card", "merchant_id"):
            if other[col] is not None and row[col] is not None:
                row[col] = other[col]
        row["user_id"] = rows[user % len(rows)]["user_id"]
        row["event_id"] = f"later-{k}"
        row["time"] = after + 1 + shift
        out.append(row)
    return pa.concat_tables([clean, pa.Table.from_pylist(out, schema=clean.schema)])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.integers(0, 10**6),
            st.integers(0, 3 * 24 * HOUR_MS),
            st.integers(0, 10**6),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_events_after_the_decision_change_no_row(
    log: EventLog, picks: list[tuple[int, int, int, int]]
) -> None:
    hour = _busiest_hour(log)
    before = _rows_at(log.clean, hour)
    last_decision = hour + HOUR_MS - 1  # every onboarding row of the hour is decided by then
    after = _rows_at(_later_events(log.clean, last_decision, picks), hour)
    assert len(before[0]) > 0 and len(before[1]) > 0
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_events_before_the_decision_do_change_rows(log: EventLog) -> None:
    """The property test above would pass on rows that ignore everything: this one would not."""
    hour = _busiest_hour(log)
    before = _rows_at(log.clean, hour)
    picks = [(i, i + 7, 0, i + 3) for i in range(0, 4000, 50)]
    after = _rows_at(_later_events(log.clean, hour - 3 * HOUR_MS, picks), hour)
    assert not np.array_equal(before[1], after[1])
    assert not np.array_equal(before[0], after[0])


def test_batch_onboarding_rows_equal_the_api_rows(
    world: Path, tmp_path: Path, store: GraphStore, settings: Settings
) -> None:
    full = read_event_log(world, [p.path for p in discover_partitions(world)], settings)
    hour = _busiest_hour(full)
    # The store holds what the refreshes before the hour ingested: the files of earlier hours.
    history = tmp_path / "history"
    parts = [p.path for p in discover_partitions(world)]
    for rel in parts:
        log_of_file = read_event_log(world, [rel], settings)
        times = log_of_file.clean.column("time").to_numpy()
        if len(times) and times.max() < hour:
            (history / rel).parent.mkdir(parents=True, exist_ok=True)
            (history / rel).write_bytes((world / rel).read_bytes())
    refresh(settings, store, history)
    past = read_event_log(history, [p.path for p in discover_partitions(history)], settings)
    assert past.clean.column("time").to_numpy().max() < hour
    timeline = GraphTimeline(FactLog.of(past.clean))
    timeline.advance(hour)
    state = HourState.of(timeline)
    star = star_of(state, OPTIONS)
    apps = applicants(full.clean)
    apps = apps[(apps["time"] >= hour) & (apps["time"] < hour + HOUR_MS)].reset_index(drop=True)
    batch = onboarding_rows(state, apps, star)

    raw = {r.record["event_id"]: r.record for rel in parts for r in read_records(world, rel) if r.record}
    ids = RepeatedIdentifiers(Pseudonymiser(settings.pseudonymisation_key.get_secret_value().encode()))
    # The API's record of applications scored since the refresh, filled as the API fills it.
    recent_log = RecentApplications(f"sqlite:///{tmp_path / 'audit.db'}", 3 * HOUR_MS)
    linked = within_hour = 0
    for i, app in apps.iterrows():
        event = parse_event(raw[app["event_id"]])
        clean = clean_event(event, ids, settings.fx_rates, settings.default_phone_region)
        now = int(app["time"])
        links = [r for r in store_links(store, clean, 500) if r["user"] != event.user_id]
        earlier = [r for r in recent_log.links(application_nodes(clean), now) if r["user"] != event.user_id]
        linked += len(links)
        within_hour += len(earlier)
        online = applicant_row(star, with_recent(links, earlier), now)
        np.testing.assert_allclose(online, batch[i], rtol=1e-6, equal_nan=True, err_msg=str(app["user_id"]))
        recent_log.record(event.user_id, application_nodes(clean), now)
    assert len(apps) >= 5 and linked > 0 and within_hour > 0
