"""Scoring one new applicant from its k-hop neighbourhood, without writing it to the graph.

The applicant's identifiers are normalised and keyed-hashed exactly as the pipeline does, and
looked up in the store (one round trip, ``cypher/serving/applicant_links.cypher``): that gives
its 1-hop identifiers and the 2-hop users on them. A small :class:`NodeDataset` is built from
them: the applicant's own features computed with the batch definitions of
:mod:`gnn.data.entity_graph`, the neighbours' features from the last scoring run. The
production model then scores row 0 with the same feature code it was trained with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from gnn.data.dataset import NodeDataset, as_tensor_x
from gnn.data.entity_graph import HOUR_MS, VELOCITY_RELS, WINDOWS_MS
from gnn.explain import Contribution, top_reasons, tree_score
from gnn.training import RiskModel
from graphrisk.events import OnboardingEvent
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel, RelType
from graphrisk.store import GraphStore
from pipelines.pseudonymise import RepeatedIdentifiers, clean_event

# Which clean-event field holds each identifier the applicant brings.
APPLICANT_IDENTIFIERS: dict[RelType, str] = {
    RelType.USED_DEVICE: "device_id",
    RelType.USED_IP: "ip",
    RelType.HAS_DOCUMENT: "doc",
    RelType.HAS_EMAIL: "email",
    RelType.HAS_PHONE: "phone",
    RelType.LIVES_AT: "address",
}


@dataclass
class ApplicantScore:
    """A calibrated score from a k-hop neighbourhood, and the evidence behind it."""

    score: float
    raw_score: float
    band: str
    linked_users: dict[str, int]
    known_fraud_neighbours: list[str]
    reasons: list[tuple[str, str, float]]
    contributions: list[Contribution]


def applicant_features(links: pd.DataFrame, feature_names: list[str], now_ms: int) -> np.ndarray:
    """The applicant's own feature vector, by the batch definitions (others' links only)."""
    f = dict.fromkeys(feature_names, 0.0)
    f["onboarded"] = 1.0
    f["events"] = 1.0
    f["hours_to_first_payment"] = float("nan")
    for rel in APPLICANT_IDENTIFIERS:
        rn = rel.value.lower()
        f[f"deg_{rn}"] = 1.0
        f[f"events_{rn}"] = 1.0
        sub = links[links["rel"] == rel.value]
        f[f"shared_max_{rn}"] = float(len(sub))
        f[f"shared_sum_{rn}"] = float(len(sub))
        if rel in VELOCITY_RELS:
            t = sub["linked_at"].to_numpy(dtype=np.int64)
            for wname, wms in WINDOWS_MS.items():
                f[f"velocity_{wname}_{rn}"] = float(((t >= now_ms - wms) & (t < now_ms)).sum())
    return np.array([f[n] for n in feature_names], dtype=np.float64)


class ApplicantScorer:
    """Scores applicants against the graph and the production model; thread-safe for reads."""

    def __init__(
        self,
        model: RiskModel,
        user_features: pd.DataFrame,
        ids: RepeatedIdentifiers,
        fx_rates: dict[str, float],
        default_phone_region: str | None = None,
        max_links: int = 500,
    ) -> None:
        self.model = model
        self.user_features = user_features  # index: user id; columns: the model's own user features
        self.feature_names = list(user_features.columns)
        self.ids = ids
        self.fx_rates = fx_rates
        self.region = default_phone_region
        self.max_links = max_links

    def links(self, store: GraphStore, clean: dict[str, Any]) -> pd.DataFrame:
        """Existing users on the applicant's identifiers."""
        params = {
            "device": clean["device_id"], "ip": clean["ip"], "document": clean["doc"], "email": clean["email"],
            "phone": clean["phone"], "address": clean["address"], "limit": self.max_links,
        }  # fmt: skip
        rows = store.read("serving/applicant_links", **params)
        return pd.DataFrame(rows, columns=["rel", "node", "node_events", "node_first", "user", "linked_at"])

    def score(self, store: GraphStore, event: OnboardingEvent, now_ms: int | None = None) -> ApplicantScore:
        """Score one applicant; nothing is written."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        clean = clean_event(event, self.ids, self.fx_rates, self.region)
        links = self.links(store, clean)
        links = links[links["user"] != event.user_id]
        x0 = applicant_features(links, self.feature_names, now)
        return self._score(self._subgraph(x0, links, now), links, explain=True)

    def score_known(
        self, store: GraphStore, user_id: str, explain: bool = True, drop_rels: tuple[str, ...] = ()
    ) -> ApplicantScore:
        """Re-score a user already in the graph from its neighbourhood (for explanations).

        ``drop_rels`` removes the user's links of those relationship types first: the
        faithfulness check of an explanation (drop the evidence, the score must fall).

        Raises:
            KeyError: the user has no published features.
        """
        x0 = self.user_features.loc[user_id].to_numpy(dtype=np.float64)
        rows = store.read(
            "serving/user_links",
            id=user_id,
            rels=[r.value for r in APPLICANT_IDENTIFIERS],
            limit=self.max_links,
        )
        links = pd.DataFrame(rows, columns=["rel", "node", "node_events", "node_first", "user", "linked_at"])
        links = links[~links["rel"].isin(drop_rels)]
        return self._score(self._subgraph(x0, links, int(time.time() * 1000), drop_rels), links, explain)

    def _score(self, dataset: NodeDataset, links: pd.DataFrame, explain: bool) -> ApplicantScore:
        label_mask = self.model.label_mask(dataset)
        contributions: list[Contribution] = []
        try:
            # Tree models: one feature build, row 0 only, contributions from the same matrix.
            raw0, contributions = tree_score(self.model.scorer, dataset, 0, label_mask, explain)
        except TypeError:
            raw0 = float(self.model.scorer.predict_proba(dataset, label_mask=label_mask)[0])
        score = float(self.model.calibrator.transform(np.array([raw0]))[0])
        band = str(self.model.band(np.array([score]))[0])
        neighbours = links["user"].drop_duplicates()
        return ApplicantScore(
            score=score,
            raw_score=raw0,
            band=band,
            linked_users={str(k): int(v) for k, v in links.groupby("rel")["user"].nunique().items()},
            known_fraud_neighbours=sorted(neighbours[neighbours.isin(self.model.known_fraud)].tolist())[:20],
            reasons=top_reasons(contributions),
            contributions=contributions[:10],
        )

    def _subgraph(
        self, x0: np.ndarray, links: pd.DataFrame, now: int, dropped: tuple[str, ...] = ()
    ) -> NodeDataset:
        users = ["__self__", *links["user"].drop_duplicates().tolist()]
        uidx = {u: i for i, u in enumerate(users)}
        x_users = np.zeros((len(users), len(self.feature_names)))
        x_users[0] = x0
        if len(users) > 1:
            known = self.user_features.reindex(users[1:])
            x_users[1:] = known.to_numpy(dtype=np.float64)
        data = HeteroData()
        data[NodeLabel.USER.value].x = as_tensor_x(x_users)
        for rel, et in EDGE_TYPES.items():
            label = et.dst
            src: list[int] = []
            dst: list[int] = []
            node_rows: list[list[float]] = []
            if rel in APPLICANT_IDENTIFIERS and rel.value not in dropped:
                sub = links[links["rel"] == rel.value]
                n_users = len(sub) + 1
                events = float(sub["node_events"].iloc[0]) + 1 if len(sub) else 1.0
                first = float(sub["node_first"].iloc[0]) if len(sub) else float(now)
                node_rows.append([n_users, events, (now - first) / HOUR_MS])
                src = [0, *(uidx[u] for u in sub["user"])]
                dst = [0] * len(src)
            if label != NodeLabel.USER:
                # Every non-user label has (users, events, age) columns, as in the batch dataset.
                data[label.value].x = (
                    torch.zeros((0, 3)) if not node_rows else as_tensor_x(np.array(node_rows))
                )
            ei = torch.as_tensor(np.array([src, dst], dtype=np.int64).reshape(2, -1))
            data[et.src.value, rel.value, et.dst.value].edge_index = ei
            data[et.dst.value, f"rev_{rel.value}", et.src.value].edge_index = ei.flip(0)
        return NodeDataset(
            name="applicant",
            data=data,
            target=NodeLabel.USER.value,
            y=np.full(len(users), -1, dtype=np.int64),
            feature_names=self.feature_names,
            node_ids=np.array(users, dtype=object),
        )
