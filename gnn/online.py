"""Scoring one new applicant from its k-hop neighbourhood, without writing it to the graph.

The applicant's identifiers are normalised and keyed-hashed exactly as the pipeline does, and
looked up in the store (one round trip, ``cypher/serving/applicant_links.cypher``): that gives
its 1-hop identifiers and the 2-hop users on them. Its own features follow the batch
definitions of :mod:`gnn.data.entity_graph`; its neighbours' features are the last scoring
run's. Tree models get the feature row straight from :class:`gnn.online_features.StarFeatures`
(a few NumPy reductions); other scorers run on the star as a small dataset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from gnn.data.entity_graph import VELOCITY_RELS, WINDOWS_MS
from gnn.explain import DEFAULT_MIN_CONTRIBUTION, Contribution, booster_score, top_reasons
from gnn.lineage import feature_row_hash
from gnn.online_features import IdentifierLinks, StarFeatures
from gnn.training import RiskModel
from graphrisk.clean_event import RepeatedIdentifiers, clean_event
from graphrisk.events import OnboardingEvent
from graphrisk.graph_schema import RelType
from graphrisk.store import GraphStore

# Which clean-event field holds each identifier the applicant brings.
APPLICANT_IDENTIFIERS: dict[RelType, str] = {  # relation -> the clean event's column
    RelType.USED_DEVICE: "device_id",
    RelType.USED_IP: "ip",
    RelType.HAS_DOCUMENT: "doc",
    RelType.HAS_EMAIL: "email",
    RelType.HAS_PHONE: "phone",
    RelType.LIVES_AT: "address",
    RelType.USED_FINGERPRINT: "device_fp",
}


class ApplicationLog(Protocol):
    """Applications scored since the last refresh (``api.applications.RecentApplications``)."""

    def links(self, nodes: dict[RelType, str], before_ms: int) -> list[dict[str, Any]]:
        """Earlier applications on any of ``nodes``: ``rel, node, user, linked_at`` rows."""
        ...


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
    nodes: dict[RelType, str] = field(default_factory=dict)  # the applicant's pseudonymised identifiers
    # gnn.lineage.feature_row_hash of the row scored: the tree model's input row
    # ("model_inputs"), or for other models the applicant's own features ("user_features").
    # Only the hash goes to the audit trail: the row is derived from personal data.
    input_row_hash: str | None = None
    input_row_kind: str | None = None
    # The tree model's input row itself (``model_inputs`` kind only), for the served-row log of the
    # training-serving skew check (api/served_rows.py); never put in a response or the audit trail.
    input_row: np.ndarray | None = field(default=None, repr=False, compare=False)


def applicant_features(
    identifiers: list[IdentifierLinks], feature_names: list[str], now_ms: int
) -> np.ndarray:
    """The applicant's own feature vector, by the batch definitions (others' links only)."""
    f = dict.fromkeys(feature_names, 0.0)
    f["onboarded"] = 1.0
    f["events"] = 1.0
    f["hours_to_first_payment"] = float("nan")
    for ident in identifiers:
        rn = ident.rel.value.lower()
        f[f"deg_{rn}"] = 1.0
        f[f"events_{rn}"] = 1.0
        # The store's count: the rows may be a bounded sample of a busy identifier's users.
        f[f"shared_max_{rn}"] = float(ident.total_users)
        f[f"shared_sum_{rn}"] = float(ident.total_users)
        if ident.rel in VELOCITY_RELS:
            t = ident.linked_at
            for wname, wms in WINDOWS_MS.items():
                f[f"velocity_{wname}_{rn}"] = float(((t >= now_ms - wms) & (t < now_ms)).sum())
    return np.array([f[n] for n in feature_names], dtype=np.float64)


def link_order(link: dict[str, Any]) -> tuple[str, str, str, int]:
    """The order links are used in, whatever order the store returned them: features that take
    an identifier's first link (its event count) and explanations must not depend on it."""
    return (str(link["rel"]), str(link.get("node") or ""), str(link["user"]), int(link.get("linked_at") or 0))


def store_links(store: GraphStore, clean: dict[str, Any], max_links: int) -> list[dict[str, Any]]:
    """Users already on a clean applicant's identifiers, read from the store in one round trip.

    At most ``max_links`` per identifier (not in all: a busy shared IP must not crowd out the
    applicant's document and phone links); each row's ``rel_users`` is the identifier's true
    number of users, so counts stay exact when the rows are a sample.
    """
    params = {
        "device": clean["device_id"], "ip": clean["ip"], "document": clean["doc"], "email": clean["email"],
        "phone": clean["phone"], "address": clean["address"], "fingerprint": clean["device_fp"],
        "limit": max_links,
    }  # fmt: skip
    return store.read("serving/applicant_links", **params)


def warm_store_plans(store: GraphStore, max_links: int = 500) -> None:
    """Run the applicant path's statements once on ids no node has, so the server plans them now.

    A cold Neo4j compiled the applicant lookup for longer than ``new_applicant_timeout_s`` on
    a busy host, and the first applicant after a start was answered 503.
    """
    none = "graphrisk-warm-up:no-such-id"
    store_links(store, dict.fromkeys(APPLICANT_IDENTIFIERS.values(), none), max_links)
    store.read("serving/user_links", id=none, rels=[r.value for r in APPLICANT_IDENTIFIERS], limit=max_links)


def application_nodes(clean: dict[str, Any]) -> dict[RelType, str]:
    """The identifier node of each relation a clean onboarding event brings (absent ones left out)."""
    return {rel: clean[col] for rel, col in APPLICANT_IDENTIFIERS.items() if clean.get(col) is not None}


def with_recent(links: list[dict[str, Any]], recent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Store links plus applications scored since the last refresh that share an identifier.

    The store learns of an application only at the next hourly refresh, so without these a
    device farm opening ten accounts within the hour would look like ten strangers. ``recent``
    rows are ``rel, node, user, linked_at`` (the application time). A user the store already
    links on that relation is not counted twice; the identifier's own statistics stay the
    store's, or, for an identifier the store has never seen, no events since its first
    recent application.
    """
    seen = {(link["rel"], link["user"]) for link in links}
    store_node = {link["rel"]: link for link in links}
    first_recent: dict[str, int] = {}
    for r in recent:
        first_recent[r["rel"]] = min(first_recent.get(r["rel"], r["linked_at"]), r["linked_at"])
    out = list(links)
    for r in sorted(recent, key=lambda r: (r["linked_at"], r["user"])):
        if (r["rel"], r["user"]) in seen:
            continue
        seen.add((r["rel"], r["user"]))
        node = store_node.get(r["rel"])
        out.append({
            "rel": r["rel"], "node": r["node"], "user": r["user"], "linked_at": int(r["linked_at"]),
            "node_events": node["node_events"] if node else 0,
            "node_first": node["node_first"] if node else first_recent[r["rel"]],
        })  # fmt: skip
    return out


def identifier_links(star: StarFeatures, links: list[dict[str, Any]], now_ms: int) -> list[IdentifierLinks]:
    """One entry per identifier relation: its users' published rows and link times.

    ``links`` are rows as ``cypher/serving/applicant_links.cypher`` returns them (``rel``,
    ``user``, ``node_events``, ``node_first``, ``linked_at``), from the store online or from
    the graph's tables in a replay. A known user with two devices gets one device node holding
    both devices' users (the applicant shape: one identifier per relation).
    """
    by_rel: dict[str, list[dict[str, Any]]] = {r.value: [] for r in APPLICANT_IDENTIFIERS}
    for link in sorted(links, key=link_order):
        by_rel[link["rel"]].append(link)
    ordered = [link for rel in APPLICANT_IDENTIFIERS for link in by_rel[rel.value]]
    rows = star.rows_of(np.array([link["user"] for link in ordered], dtype=object))
    out, start = [], 0
    for rel in APPLICANT_IDENTIFIERS:
        group = by_rel[rel.value]
        first = group[0] if group else None
        out.append(
            IdentifierLinks(
                rel=rel,
                node_events=float(first["node_events"] or 0) if first else 0.0,
                node_first=float(first["node_first"]) if first else float(now_ms),
                rows=rows[start : start + len(group)],
                linked_at=np.array([link["linked_at"] for link in group], dtype=np.int64),
                users=_rel_users(group),
            )
        )
        start += len(group)
    return out


def _rel_users(group: list[dict[str, Any]]) -> int:
    # Users per identifier as the store counted them (rows carry ``rel_users`` when they are a
    # sample); several identifiers of one relation (a known user's two devices) add up.
    counted: dict[Any, int] = {}
    uncounted = 0  # rows with no store count: applications since the last refresh
    for link in group:
        if link.get("rel_users") is None:
            uncounted += 1
        else:
            counted[link.get("node")] = int(link["rel_users"])
    return sum(counted.values()) + uncounted if counted else -1


def applicant_row(star: StarFeatures, links: list[dict[str, Any]], now_ms: int) -> np.ndarray:
    """An applicant's tree-model row from its links (the applicant's own rows excluded).

    The one definition of the onboarding decision row: the API calls it with the store's
    links, a replay (:mod:`gnn.asof`) with links read from the graph as of the last refresh.
    """
    identifiers = identifier_links(star, links, now_ms)
    x0 = applicant_features(identifiers, star.own_names, now_ms)
    return star.row(x0, identifiers, now_ms)


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
        min_contribution: float = DEFAULT_MIN_CONTRIBUTION,
        min_score: float = 0.0,
    ) -> None:
        self.model = model
        self.user_features = user_features  # index: user id; columns: the model's own user features
        self.feature_names = list(user_features.columns)
        self.ids = ids
        self.fx_rates = fx_rates
        self.region = default_phone_region
        self.max_links = max_links  # per identifier (see store_links)
        # Reasons: contributions raising the score by at least this (log-odds), and none at
        # all under min_score (Settings.explain_min_contribution, explain_min_score).
        self.min_contribution = min_contribution
        self.min_score = min_score
        scorer = model.scorer
        tree = (
            getattr(scorer, "booster_", None) is not None
            and getattr(scorer, "features", None) is not None
            and getattr(scorer, "extra_features", None) is None
        )
        self.star = StarFeatures(
            user_features,
            model.train_labels,
            scorer.features if tree else None,
            list(scorer.feature_names) if tree else None,
        )
        self.fast = tree
        self.known_fraud = model.known_fraud  # a frozenset built from the labels: build it once

    def links(self, store: GraphStore, clean: dict[str, Any]) -> list[dict[str, Any]]:
        """Existing users on the applicant's identifiers, one row per (identifier, user)."""
        return store_links(store, clean, self.max_links)

    def score(
        self,
        store: GraphStore,
        event: OnboardingEvent,
        now_ms: int | None = None,
        recent: ApplicationLog | None = None,
    ) -> ApplicantScore:
        """Score one applicant; nothing is written.

        ``recent`` holds the applications scored since the last refresh (the store does not
        have them yet); the result's ``nodes`` are what the caller records there.
        """
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        clean = clean_event(event, self.ids, self.fx_rates, self.region)
        links = self._links(store, clean, event.user_id, now, recent)
        identifiers = self.identifiers(links, now)
        x0 = applicant_features(identifiers, self.feature_names, now)
        result = self._score(x0, identifiers, links, now, explain=True)
        result.nodes = application_nodes(clean)
        return result

    def _links(
        self, store: GraphStore, clean: dict[str, Any], user_id: str, now: int, recent: ApplicationLog | None
    ) -> list[dict[str, Any]]:
        rows = self.links(store, clean)
        # The applicant itself on one of its identifiers (a re-submission) is not its neighbour:
        # its row goes, and so does its place in that identifier's count.
        own = {(r["rel"], r.get("node")) for r in rows if r["user"] == user_id}
        links = sorted(
            (
                {**r, "rel_users": r["rel_users"] - 1}
                if (r["rel"], r.get("node")) in own and r.get("rel_users") is not None
                else r
                for r in rows
                if r["user"] != user_id
            ),
            key=link_order,
        )
        if recent is None:
            return links
        earlier = [r for r in recent.links(application_nodes(clean), now) if r["user"] != user_id]
        return with_recent(links, earlier)

    def score_known(
        self, store: GraphStore, user_id: str, explain: bool = True, drop_rels: tuple[str, ...] = ()
    ) -> ApplicantScore:
        """Re-score a user already in the graph from its neighbourhood (for explanations).

        ``drop_rels`` removes the user's links of those relationship types first: the
        faithfulness check of an explanation (drop the evidence, the score must fall).

        Raises:
            KeyError: the user has no published features.
        """
        rows = store.read(
            "serving/user_links",
            id=user_id,
            rels=[r.value for r in APPLICANT_IDENTIFIERS],
            limit=self.max_links,
        )
        return self.score_links(user_id, rows, int(time.time() * 1000), explain, drop_rels)

    def score_links(
        self,
        user_id: str,
        links: list[dict[str, Any]],
        now_ms: int,
        explain: bool = True,
        drop_rels: tuple[str, ...] = (),
    ) -> ApplicantScore:
        """:meth:`score_known` over links already read (``serving/user_links`` rows), in any
        order: they are sorted first, so the score and its explanation do not depend on the
        order the store returned them in.

        Raises:
            KeyError: the user has no published features.
        """
        x0 = self.star.features_of(user_id)
        links = sorted((r for r in links if r["rel"] not in drop_rels), key=link_order)
        identifiers = [i for i in self.identifiers(links, now_ms) if i.rel.value not in drop_rels]
        return self._score(x0, identifiers, links, now_ms, explain)

    def explain_inputs(self, x: np.ndarray) -> ApplicantScore:
        """Explain a row the batch scored (``user_inputs.parquet``, written by
        :func:`gnn.scoring.score_users`) exactly: TreeSHAP over that very row, so ``score`` is
        the published score and the contributions are what produced it.

        Raises:
            ValueError: the production model is not one tree model over such rows.
        """
        if not self.model.explains_inputs:
            raise ValueError("the production model does not explain input rows")
        scorer = self.model.scorer
        raw0, contributions = booster_score(
            scorer.booster_, getattr(scorer, "_best_iteration", None), x, list(scorer.feature_names)
        )
        return self._result(raw0, contributions, [])

    def identifiers(self, links: list[dict[str, Any]], now_ms: int) -> list[IdentifierLinks]:
        """:func:`identifier_links` over the published rows of this scorer."""
        return identifier_links(self.star, links, now_ms)

    def row(
        self, store: GraphStore, event: OnboardingEvent, now_ms: int, recent: ApplicationLog | None = None
    ) -> np.ndarray:
        """The tree model's input row for an applicant, as :meth:`score` builds it."""
        clean = clean_event(event, self.ids, self.fx_rates, self.region)
        return applicant_row(self.star, self._links(store, clean, event.user_id, now_ms, recent), now_ms)

    def _score(
        self,
        x0: np.ndarray,
        identifiers: list[IdentifierLinks],
        links: list[dict[str, Any]],
        now: int,
        explain: bool,
    ) -> ApplicantScore:
        contributions: list[Contribution] = []
        scorer = self.model.scorer
        if self.fast:
            row = self.star.row(x0, identifiers, now)
            raw0, contributions = booster_score(
                scorer.booster_, getattr(scorer, "_best_iteration", None), row, self.star.names, explain,
            )  # fmt: skip
            lineage = (feature_row_hash(row, self.star.names), "model_inputs")
        else:
            dataset = self.star.dataset(x0, identifiers, now)
            raw0 = float(scorer.predict_proba(dataset, label_mask=dataset.y >= 0)[0])
            lineage = (feature_row_hash(x0, self.feature_names), "user_features")
        result = self._result(raw0, contributions, links)
        result.input_row_hash, result.input_row_kind = lineage
        if self.fast:
            result.input_row = row
        return result

    def _result(
        self, raw0: float, contributions: list[Contribution], links: list[dict[str, Any]]
    ) -> ApplicantScore:
        score = float(self.model.calibrator.transform(np.array([raw0]))[0])
        band = str(self.model.band(np.array([score]))[0])
        users_by_rel: dict[str, set[str]] = {}
        counted: dict[str, dict[Any, int]] = {}
        for link in links:
            users_by_rel.setdefault(link["rel"], set()).add(link["user"])
            if link.get("rel_users") is not None:
                counted.setdefault(link["rel"], {})[link.get("node")] = int(link["rel_users"])
        neighbours = set().union(*users_by_rel.values())
        # Counts from the store where it gave them (the rows may be a sample of a busy node).
        linked = {
            rel: max(len(users), sum(counted.get(rel, {}).values())) for rel, users in users_by_rel.items()
        }
        # A low score has nothing to explain: reasons only at or above min_score.
        reasons = (
            top_reasons(contributions, min_contribution=self.min_contribution)
            if score >= self.min_score
            else []
        )
        return ApplicantScore(
            score=score,
            raw_score=raw0,
            band=band,
            linked_users=linked,
            known_fraud_neighbours=sorted(neighbours & self.known_fraud)[:20],
            reasons=reasons,
            contributions=contributions[:10],
        )
