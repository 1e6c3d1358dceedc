"""Explanations of a user's score, for investigators."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.auth import REVEAL_ROLES
from api.deps import Investigator, State
from api.schemas import EvidenceItem, Explanation, FeatureContribution, Reason
from graphrisk.errors import StoreError

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/{user_id}/explanation", response_model=Explanation)
def explain_user(user_id: str, state: State, caller: Investigator) -> Explanation:
    """Top feature contributions (TreeSHAP) and the evidence behind them: the identifiers the user
    shares, with how many users and how many confirmed fraud.

    Users in the review and block bands are explained from the very row the batch scored, so the
    contributions add up to the raw score behind the published one; others are re-scored over
    their identifier neighbourhood first (``basis`` says which).
    """
    scorer = state.applicant_scorer
    cached = state.scores.get(user_id)
    if scorer is None or cached is None or user_id not in scorer.user_features.index:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scored user {user_id!r}")
    published = state.published_inputs(user_id)
    try:
        if published is not None:
            result, basis = scorer.explain_inputs(published), "published"
        else:
            result, basis = scorer.score_known(state.store, user_id), "rescored"
        rows = state.store.read("serving/user_evidence", id=user_id, max_others=10)
    except StoreError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), {"Retry-After": "30"}) from None
    reveal = caller.role in REVEAL_ROLES
    evidence = []
    for r in rows:
        if r["rel"] in ("PAID", "MEMBER_OF") or not r["shared_with"]:
            continue  # sharing a big merchant is not evidence
        confirmed = sum(1 for o in r["others"] if o in state.known_fraud)
        ident = r["node"] if reveal else (r["masked"] or f"{r['label']} {str(r['node'])[:6]}…")
        evidence.append(EvidenceItem(relationship=r["rel"], identifier=ident, shared_with=int(r["shared_with"]),
                                     confirmed_fraud=confirmed, others=list(r["others"])))  # fmt: skip
    reasons = [Reason(code=c, text=t, weight=round(w, 4)) for c, t, w in result.reasons]
    for e in evidence[:3]:
        reasons.append(Reason(code=f"shares_{e.relationship.lower()}",
                              text=f"shares {e.relationship.replace('_', ' ').lower()} {e.identifier} with {e.shared_with} users, {e.confirmed_fraud} confirmed fraud"))  # fmt: skip
    state.audit.append(
        caller.name, caller.role.value, "read_explanation", user_id, {"model_version": cached.model_version}
    )
    return Explanation(
        user_id=user_id,
        score=result.score,
        published_score=cached.score,
        basis=basis,
        model_version=cached.model_version,
        reasons=reasons,
        contributions=[
            FeatureContribution(feature=c.feature, value=c.value, contribution=c.contribution)
            for c in result.contributions
        ],
        evidence=evidence,
    )
