"""Ring-level and member-level quality of scored clusters against planted rings.

- A planted ring is **found** when one flagged cluster (score >= threshold) covers it with
  Jaccard >= 0.5. Recall is reported per typology.
- **Precision**: flagged clusters that are colluding (ring Jaccard >= 0.5 or >= 50 % fraud).
  Per typology, flagged clusters are attributed to the planted ring they overlap most (clusters
  overlapping none are counted under ``unmatched_flagged``), so a false alarm that grazes a
  mule ring counts against ``mule_ring``.
- **Member AUPRC**: each user scored by the best ring score among the clusters holding them
  (0 outside every cluster), against ``is_fraud``.
- Cluster-level AUPRC of the ring score and of the mean member score, side by side: the ring
  score must add information over the members' own scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from gnn.rings.candidates import Candidates
from gnn.rings.model import MATCH_JACCARD, best_ring_match, cluster_labels


def member_scores(cand: Candidates, ring_scores: np.ndarray) -> pd.Series:
    """Best ring score per user id (0 for users in no cluster)."""
    mt = cand.member_table()
    best = pd.Series(ring_scores[mt["cluster"].to_numpy()]).groupby(mt["user_id"].to_numpy()).max()
    return best.reindex(cand.user_ids, fill_value=0.0)


def _auprc(y: np.ndarray, s: np.ndarray) -> float:
    ok = ~np.isnan(s)
    return float(average_precision_score(y[ok], s[ok])) if len(np.unique(y[ok])) == 2 else float("nan")


def evaluate_rings(
    cand: Candidates,
    ring_scores: np.ndarray,
    labels: pd.DataFrame,
    threshold: float = 0.5,
    score_mean: np.ndarray | None = None,
) -> dict[str, object]:
    """Quality figures of one run (see module docstring). ``labels``: user_id, is_fraud, ring_id, typology."""
    flagged = ring_scores >= threshold
    y = cluster_labels(cand, labels)
    match = best_ring_match(cand, labels)
    rings = labels.dropna(subset=["ring_id"]).groupby("ring_id")["typology"].first()
    found_ids = set(match.loc[flagged & (match["jaccard"] >= MATCH_JACCARD).to_numpy(), "ring_id"])
    covered_ids = set(match.loc[(match["jaccard"] >= MATCH_JACCARD).to_numpy(), "ring_id"])
    per_typ: dict[str, dict[str, float]] = {}
    flagged_typ = match["ring_id"].map(rings).to_numpy()
    for typ, ids in rings.groupby(rings):
        n = len(ids)
        mine = flagged & (flagged_typ == typ)
        per_typ[str(typ)] = {
            "rings": n,
            "recall": sum(i in found_ids for i in ids.index) / n,
            "candidate_recall": sum(i in covered_ids for i in ids.index) / n,
            "flagged": int(mine.sum()),
            "precision": float(y[mine].mean()) if mine.any() else float("nan"),
        }
    ms = member_scores(cand, ring_scores)
    fraud = labels.set_index("user_id")["is_fraud"].reindex(ms.index).fillna(0).to_numpy()
    out: dict[str, object] = {
        "clusters": cand.num_clusters,
        "positive_clusters": int(y.sum()),
        "flagged": int(flagged.sum()),
        "precision": float(y[flagged].mean()) if flagged.any() else float("nan"),
        "recall": len(found_ids) / max(len(rings), 1),
        "candidate_recall": len(covered_ids) / max(len(rings), 1),
        "by_typology": per_typ,
        "unmatched_flagged": int((flagged & pd.isna(flagged_typ)).sum()),
        "member_auprc": _auprc(fraud, ms.to_numpy(dtype=np.float64)),
        "cluster_auprc_ring_score": _auprc(y, ring_scores),
    }
    if score_mean is not None:
        out["cluster_auprc_mean_member_score"] = _auprc(y, np.asarray(score_mean, dtype=np.float64))
    return out
