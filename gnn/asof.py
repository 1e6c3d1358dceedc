"""Feature rows as of the moment a decision is made, for the two moments graphrisk decides at.

* **onboarding**: an applicant applies at ``t``. Serving sees the graph as the last hourly
  refresh left it (events before the refresh hour ``h <= t``), the users published by that
  refresh, and the application itself. The row is :func:`gnn.online.applicant_row`, the API's
  own definition, fed with links read from the graph's tables instead of the store.
* **refresh**: at each refresh hour ``h`` every user with history is re-scored on the graph of
  the events before ``h`` (:func:`gnn.data.entity_graph.entity_graph_from_tables`, ages measured
  at ``h``).

Both read a :class:`HourState`, the graph as of a refresh hour, built by the pipeline's own fold
(:class:`pipelines.event_log.GraphTimeline`). Nothing a row reads is later than its moment:
``tests/test_asof.py`` appends events after ``t`` and checks that no row at ``t`` changes, and
that the batch onboarding row equals the API's row read from a real store.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gnn.data.dataset import NodeDataset
from gnn.data.entity_graph import entity_graph_from_tables
from gnn.models.base import FeatureOptions, tabular_features
from gnn.online import APPLICANT_IDENTIFIERS, applicant_row, with_recent
from gnn.online_features import StarFeatures, reference_row, star_dataset
from graphrisk.arrow import arrow_to_pandas
from graphrisk.graph_schema import EDGE_TYPES
from pipelines.event_log import EdgeTables, GraphTimeline, NodeTables

ONBOARDING = "onboarding"
REFRESH = "refresh"

# The store caps an applicant's links (ApplicantScorer.max_links); a replay applies the same cap.
DEFAULT_MAX_LINKS = 500


@dataclass
class HourState:
    """The graph as a refresh at ``as_of`` leaves it, and the user features it publishes."""

    as_of: int
    nodes: NodeTables
    edges: EdgeTables
    dataset: NodeDataset

    @staticmethod
    def of(timeline: GraphTimeline) -> HourState:
        """The state at the timeline's current moment."""
        if timeline.as_of is None:
            raise ValueError("advance the timeline to a refresh hour first")
        nodes, edges = timeline.tables()
        dataset = entity_graph_from_tables(nodes, edges, as_of_ms=timeline.as_of)
        return HourState(timeline.as_of, nodes, edges, dataset)

    @property
    def published(self) -> pd.DataFrame:
        """Own features of every user, indexed by id: what ``graphrisk score`` publishes."""
        return pd.DataFrame(
            self.dataset.x, columns=self.dataset.feature_names, index=pd.Index(self.dataset.node_ids)
        )


def applicants(clean: pa.Table) -> pd.DataFrame:
    """Onboarding events of a clean table: ``user_id``, ``time`` and the identifier columns."""
    rows = clean.filter(pc.equal(clean.column("event_type"), "onboarding"))
    cols = ["event_id", "user_id", "time", *APPLICANT_IDENTIFIERS.values()]
    return (
        arrow_to_pandas(rows.select(cols))
        .sort_values(["time", "event_id"], kind="stable")
        .reset_index(drop=True)
    )


def onboarding_feature_names(own_names: list[str], options: FeatureOptions) -> list[str]:
    """Columns of an onboarding row for ``options`` (the batch feature functions' names)."""
    return list(_onboarding_feature_names(tuple(own_names), options))


@lru_cache(maxsize=8)
def _onboarding_feature_names(own_names: tuple[str, ...], options: FeatureOptions) -> tuple[str, ...]:
    # The same every hour of a replay: the batch functions run once per (columns, options).
    names = list(own_names)
    empty = star_dataset(np.zeros(len(names)), names, [], np.zeros((0, len(names))),
                         np.zeros(0, dtype=np.int64), 0, 0.0)  # fmt: skip
    return tuple(reference_row(empty, np.zeros(1, dtype=bool), options, 0.0)[1])


def star_of(state: HourState, options: FeatureOptions) -> StarFeatures:
    """The API's star feature builder over ``state``'s published users (the models read no labels)."""
    own = state.published
    names = onboarding_feature_names(list(own.columns), options)
    return StarFeatures(own, pd.DataFrame({"user_id": [], "is_fraud": []}), options, names)


def applicant_links(
    state: HourState, apps: pd.DataFrame, max_links: int = DEFAULT_MAX_LINKS
) -> list[list[dict[str, Any]]]:
    """Per applicant, the rows ``cypher/serving/applicant_links.cypher`` would return on ``state``.

    Vectorised over applicants: one join per identifier relation. The applicant's own links are
    dropped (as the API does) and the store's cap applies per identifier, with each row's
    ``rel_users`` the identifier's true number of (other) users.
    """
    apps = apps.reset_index(drop=True)
    parts = []
    for rank, rel in enumerate(APPLICANT_IDENTIFIERS):
        col = APPLICANT_IDENTIFIERS[rel]
        node = state.nodes[EDGE_TYPES[rel].dst][["id", "event_count", "first_seen"]]
        edges = state.edges[rel][["src", "dst", "first_seen"]].rename(columns={"first_seen": "linked_at"})
        left = apps[["user_id", col]].reset_index(names="app").dropna(subset=[col])
        hit = left.merge(edges, left_on=col, right_on="dst").merge(node, left_on="dst", right_on="id")
        hit = hit[hit["src"] != hit["user_id"]]
        parts.append(
            pd.DataFrame({
                "app": hit["app"].to_numpy(), "rank": rank, "rel": rel.value, "node": hit["dst"].to_numpy(),
                "node_events": hit["event_count"].to_numpy(), "node_first": hit["first_seen"].to_numpy(),
                "user": hit["src"].to_numpy(), "linked_at": hit["linked_at"].to_numpy(),
            })
        )  # fmt: skip
    links = pd.concat(parts, ignore_index=True).sort_values(["app", "rank", "user"], kind="stable")
    # As the query: at most max_links users per identifier, each row with the true count.
    per_rel = links.groupby(["app", "rank"])
    links = links.assign(rel_users=per_rel["user"].transform("size"))[per_rel.cumcount() < max_links]
    out: list[list[dict[str, Any]]] = [[] for _ in range(len(apps))]
    records = links.drop(columns=["rank"]).to_dict("records")
    for rec in records:
        out[int(rec.pop("app"))].append(rec)
    return out


def onboarding_rows(state: HourState, apps: pd.DataFrame, star: StarFeatures) -> np.ndarray:
    """``[len(apps), F]`` onboarding rows of applicants deciding after ``state.as_of``.

    Raises:
        ValueError: an applicant applies before the state's moment (its row would read the future).
    """
    times = apps["time"].to_numpy(np.int64)
    if len(times) and times.min() < state.as_of:
        raise ValueError(f"applicant at {times.min()} is before the graph's moment {state.as_of}")
    out = np.empty((len(apps), len(star.names)), dtype=np.float32)
    recent = recent_links(apps)
    for i, links in enumerate(applicant_links(state, apps)):
        out[i] = applicant_row(star, with_recent(links, recent[i]), int(times[i]))
    return out


def recent_links(apps: pd.DataFrame) -> list[list[dict[str, Any]]]:
    """Per applicant, the earlier applications of ``apps`` (strictly before it) sharing an
    identifier: what the API's record of applications since the last refresh returns."""
    apps = apps.reset_index(drop=True)
    out: list[list[dict[str, Any]]] = [[] for _ in range(len(apps))]
    for rel, col in APPLICANT_IDENTIFIERS.items():
        side = apps[["user_id", "time", col]].reset_index(names="app").dropna(subset=[col])
        pairs = side.merge(side, on=col, suffixes=("", "_other"))
        pairs = pairs[(pairs["time_other"] < pairs["time"]) & (pairs["user_id_other"] != pairs["user_id"])]
        for app, node, user, at in zip(pairs["app"], pairs[col], pairs["user_id_other"], pairs["time_other"],
                                       strict=True):  # fmt: skip
            out[int(app)].append({"rel": rel.value, "node": node, "user": user, "linked_at": int(at)})
    return out


def refresh_rows(
    state: HourState, options: FeatureOptions, users: np.ndarray | None = None
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Refresh rows at ``state.as_of`` for users onboarded before it (or the given ``users``).

    Returns ``(rows, names, user_ids)``.
    """
    ds = state.dataset
    x, names = tabular_features(ds, np.zeros(ds.num_nodes, dtype=bool), options)
    onboarded = ds.x[:, ds.feature_names.index("onboarded")] > 0
    keep = onboarded if users is None else np.isin(ds.node_ids, users) & onboarded
    return x[keep], names, np.asarray(ds.node_ids[keep])
