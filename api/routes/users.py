"""Explanations of a user's score, for investigators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from api.auth import REVEAL_ROLES
from api.deps import Investigator, State, StrictJSONRoute
from api.schemas import V1_ERRORS, EvidenceItem, Explanation, FeatureContribution, Reason, error_responses

router = APIRouter(prefix="/v1/users", tags=["users"], route_class=StrictJSONRoute)


@router.get("/{user_id}/explanation", response_model=Explanation, responses=error_responses(404, *V1_ERRORS))
async def explain_user(user_id: str, state: State, caller: Investigator) -> Explanation:
    """Top feature contributions (TreeSHAP) and the evidence behind them: the identifiers the user
    shares, with how many users and how many confirmed fraud.

    Users in the review and block bands are explained from the very row the batch scored, so the
    contributions add up to the raw score behind the published one; others are re-scored over
    their identifier neighbourhood first (``basis`` says which).

    The store work runs on the store's own threads, bounded by the store timeout: a hung store
    gives 503 with Retry-After (``api.main``'s StoreError handler), never a hung request.
    """
    scorer = state.applicant_scorer
    cached = state.scores.get(user_id)
    if scorer is None or cached is None or user_id not in scorer.user_features.index:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no scored user with this id")
    published = state.published_inputs(user_id)

    def explain() -> tuple[Any, str, list[dict[str, Any]]]:
        if published is not None:
            result, basis = scorer.explain_inputs(published), "published"
        else:
            result, basis = scorer.score_known(state.store, user_id), "rescored"
        return result, basis, state.store.read("serving/user_evidence", id=user_id, max_others=10)

    result, basis, rows = await state.store_calls.call(explain)
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
