"""Stable ring ids across runs: match this run's clusters to the previous run's rings.

Matching is greedy on member overlap, best Jaccard first, one to one: a cluster inherits a
previous ring's id when their Jaccard is at least ``keep_jaccard`` (0.5: membership changed by
less than half). Everything else is recorded, never silently dropped:

- a new cluster that inherits nothing gets a fresh id (``ring-`` + a hash of its sorted
  members and the run time, so reruns of the same run agree) and status ``new``; when it holds
  at least half of some previous rings' members it lists them in ``parents`` (a split part or a
  merger);
- a previous ring that nothing inherits is ``closed``, or ``merged`` / ``split`` when its
  members went on into one / several new rings (listed in ``successors``);
- an inherited ring keeps ``first_seen``; ``last_seen`` is this run's time; status ``active``,
  or ``merged`` history is noted in ``parents`` when it absorbed other rings.

The registry is two Parquet tables under ``<data_dir>/rings/``: ``rings.parquet`` (one row per
ring ever seen) and ``members.parquet`` (current members of rings that are not closed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

RING_COLUMNS = ["ring_id", "status", "score", "size", "first_seen", "last_seen", "model_version", "view",
                "parents", "successors"]  # fmt: skip
CLOSED_STATUSES = ("closed", "merged", "split")


def empty_rings() -> pd.DataFrame:
    """A ring table with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in RING_COLUMNS})


def empty_members() -> pd.DataFrame:
    """A member table with no rows."""
    return pd.DataFrame({"ring_id": pd.Series(dtype=object), "user_id": pd.Series(dtype=object)})


@dataclass
class RingRegistry:
    """The previous run's rings on disk: ``rings.parquet`` and ``members.parquet``."""

    root: Path

    def load(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rings and members of the last run (empty tables before the first)."""
        rp, mp = self.root / "rings.parquet", self.root / "members.parquet"
        rings = pd.read_parquet(rp) if rp.exists() else empty_rings()
        members = pd.read_parquet(mp) if mp.exists() else empty_members()
        return rings, members

    def save(self, rings: pd.DataFrame, members: pd.DataFrame) -> None:
        """Write both tables, each atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name, df in (("rings", rings), ("members", members)):
            path = self.root / f"{name}.parquet"
            tmp = path.with_suffix(".tmp")
            df.to_parquet(tmp, index=False)
            tmp.replace(path)


def _fresh_id(user_ids: np.ndarray, now_ms: int) -> str:
    h = hashlib.sha256(f"{now_ms}\x1f".encode() + "\x1f".join(map(str, user_ids)).encode()).hexdigest()
    return f"ring-{h[:16]}"


def overlaps(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """``cluster, ring_id, inter, jaccard, share_new, share_old`` for every overlapping pair."""
    if new.empty or old.empty:
        return pd.DataFrame(columns=["cluster", "ring_id", "inter", "jaccard", "share_new", "share_old"])
    ns = new.groupby("cluster").size()
    os_ = old.groupby("ring_id").size()
    j = new[["cluster", "user_id"]].merge(old[["ring_id", "user_id"]], on="user_id")
    inter = j.groupby(["cluster", "ring_id"]).size().rename("inter").reset_index()
    a, b = inter["cluster"].map(ns), inter["ring_id"].map(os_)
    inter["jaccard"] = inter["inter"] / (a + b - inter["inter"])
    inter["share_new"] = inter["inter"] / a
    inter["share_old"] = inter["inter"] / b
    return inter


def assign_ids(
    new_members: pd.DataFrame,
    prev_rings: pd.DataFrame,
    prev_members: pd.DataFrame,
    now_ms: int,
    keep_jaccard: float = 0.5,
    lineage_share: float = 0.5,
) -> tuple[dict[int, str], pd.DataFrame]:
    """Ids for this run's clusters, and the previous rings' updated rows.

    Args:
        new_members: ``cluster, user_id`` of this run.
        prev_rings, prev_members: the registry's tables.
        now_ms: this run's time (epoch ms).
        keep_jaccard: Jaccard at which a cluster inherits a ring's id.
        lineage_share: share of a previous ring's members a new ring must hold to count as its
            successor (merge / split records).

    Returns:
        ``{cluster: ring_id}`` and the rows of previous, not-closed rings with their new status
        (``active`` for the inherited, else ``closed`` / ``merged`` / ``split``), parents and
        successors filled in. New rings' rows are built by the caller, which knows scores.
    """
    live = prev_rings[~prev_rings["status"].isin(CLOSED_STATUSES)] if len(prev_rings) else prev_rings
    old = (
        prev_members[prev_members["ring_id"].isin(set(live["ring_id"]))]
        if len(live)
        else prev_members.iloc[:0]
    )
    ov = overlaps(new_members, old)
    ids: dict[int, str] = {}
    taken: set[str] = set()
    # Greedy one-to-one, best Jaccard first; ties broken by ids so the result is deterministic.
    for row in (
        ov[ov["jaccard"] >= keep_jaccard]
        .sort_values(["jaccard", "cluster", "ring_id"], ascending=[False, True, True])
        .itertuples()
    ):
        if row.cluster in ids or row.ring_id in taken:
            continue
        ids[int(row.cluster)] = str(row.ring_id)
        taken.add(str(row.ring_id))
    by_cluster = new_members.groupby("cluster")["user_id"]
    for c, users in by_cluster:
        if int(c) not in ids:
            ids[int(c)] = _fresh_id(np.sort(users.to_numpy().astype(str)), now_ms)
    # Lineage: which previous rings a new ring holds most of (merges), and where old ones went (splits).
    lin = ov[ov["share_old"] >= lineage_share].copy()
    lin["new_id"] = lin["cluster"].map(ids)
    successors = lin.groupby("ring_id")["new_id"].agg(lambda s: ",".join(sorted(set(s))))
    updated = live.copy()
    if len(updated):
        updated = updated.set_index("ring_id")
        succ = successors.reindex(updated.index)
        n_succ = lin.groupby("ring_id")["new_id"].nunique().reindex(updated.index).fillna(0)
        inherited = updated.index.isin(list(taken))
        updated["successors"] = succ.where(succ.notna(), None)
        updated["status"] = np.where(
            inherited, "active", np.where(n_succ >= 2, "split", np.where(n_succ == 1, "merged", "closed"))
        )
        closing = ~inherited
        updated.loc[closing, "last_seen"] = now_ms
        updated = updated.reset_index()
    return ids, updated


def parents_of(new_members: pd.DataFrame, prev_members: pd.DataFrame, ids: dict[int, str],
               lineage_share: float = 0.5) -> dict[str, str]:  # fmt: skip
    """Per new ring id, the previous rings (other than itself) it holds at least half of."""
    ov = overlaps(new_members, prev_members)
    ov = ov[ov["share_old"] >= lineage_share]
    ov = ov.assign(new_id=ov["cluster"].map(ids))
    ov = ov[ov["new_id"] != ov["ring_id"]]
    return ov.groupby("new_id")["ring_id"].agg(lambda s: ",".join(sorted(set(s)))).to_dict()
