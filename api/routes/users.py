"""Users for investigators: explanations of a user's score, and decisions on a user."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi import APIRouter, HTTPException, status

from api.auth import REVEAL_ROLES
from api.deps import Investigator, State, StrictJSONRoute
from api.routes.decisions import decision_out
from api.schemas import (
    BODY_ERRORS,
    V1_ERRORS,
    DecisionIn,
    DecisionOut,
    EvidenceItem,
    Explanation,
    FeatureContribution,
    Reason,
    error_responses,
)
from gnn.feature_registry import IDENTIFIER_WORDS

router = APIRouter(prefix="/v1/users", tags=["users"], route_class=StrictJSONRoute)

# Relations that are not evidence of a shared identity: sharing a big merchant, or ring membership.
NOT_EVIDENCE = frozenset({"PAID", "MEMBER_OF"})
# Node labels whose id is a plain business id (shown as is), not a token of personal data.
PLAIN_ID_LABELS = frozenset({"Device", "Merchant", "User"})
LABEL_WORDS = {
    "Email": "email address", "Phone": "phone number", "Document": "identity document", "IP": "IP address",
    "Address": "postal address", "Card": "card", "Fingerprint": "device fingerprint",
}  # fmt: skip
SHOWN_OTHERS = 10
EVIDENCE_REASONS = 3


def identifier_display(row: dict[str, Any], reveal: bool) -> str:
    """How an identifier is shown: its masked value (``j***@example.org``), a plain business id
    (devices), or for an admin the pseudonymous token; never a bare token prefix to an
    investigator, which would let them follow one person across responses."""
    if reveal or row["label"] in PLAIN_ID_LABELS:
        return str(row["node"])
    masked = row.get("masked")
    if masked:
        return str(masked)
    noun = LABEL_WORDS.get(str(row["label"]), str(row["label"]).lower())
    return f"{'an' if noun[0] in 'aeiouAEIOU' else 'a'} {noun} (value withheld)"


def build_evidence(
    rows: list[dict[str, Any]], confirmed: Collection[str], reveal: bool
) -> list[EvidenceItem]:
    """Evidence items from ``serving/user_evidence`` rows, in an order that does not depend on
    the store's: most shared first, then by relation and identifier token.

    ``confirmed_fraud`` counts only users confirmed as fraud (``confirmed``: training labels and
    investigators' decisions) among the scanned others, never scores or neighbour averages.
    """
    kept = [r for r in rows if r["rel"] not in NOT_EVIDENCE and r["shared_with"]]
    kept.sort(key=lambda r: (-int(r["shared_with"]), str(r["rel"]), str(r["node"])))
    out = []
    for r in kept:
        scanned = sorted(set(r.get("scanned") or r["others"]))
        fraud = sorted(o for o in scanned if o in confirmed)
        # Confirmed fraud first (what an investigator opens next), then the rest by id.
        others = (fraud + [o for o in scanned if o not in confirmed])[:SHOWN_OTHERS]
        out.append(EvidenceItem(relationship=r["rel"], identifier=identifier_display(r, reveal),
                                shared_with=int(r["shared_with"]), confirmed_fraud=len(fraud), others=others))  # fmt: skip
    return out


def evidence_reasons(evidence: list[EvidenceItem]) -> list[Reason]:
    """Reasons naming the shared identifiers with confirmed fraud on them (most first).

    An identifier shared with nobody confirmed is evidence to look at, listed in ``evidence``,
    but not a reason by itself: the model's contributions say whether sharing it raised the score.
    """
    hits = sorted(
        (e for e in evidence if e.confirmed_fraud > 0),
        key=lambda e: (-e.confirmed_fraud, -e.shared_with, e.relationship, e.identifier),
    )
    reasons = []
    for e in hits[:EVIDENCE_REASONS]:
        noun = IDENTIFIER_WORDS.get(e.relationship, (e.relationship.replace("_", " ").lower(), ""))[0]
        users = "user" if e.shared_with == 1 else "users"
        reasons.append(Reason(code=f"shares_{e.relationship.lower()}",
                              text=f"shares {noun} {e.identifier} with {e.shared_with} other {users}, "
                                   f"{e.confirmed_fraud} of them confirmed fraud"))  # fmt: skip
    return reasons


@router.get("/{user_id}/explanation", response_model=Explanation, responses=error_responses(404, *V1_ERRORS))
async def explain_user(user_id: str, state: State, caller: Investigator) -> Explanation:
    """Why a user scored as it did: the feature contributions (TreeSHAP), the reasons (only
    contributions that raise the score, above a floor, and only for a score above
    ``explain_min_score``), and the evidence: the identifiers the user shares (masked), with how
    many other users and how many of them confirmed fraud.

    Users in the review and block bands are explained from the very row the batch scored, so the
    contributions add up to the raw score behind the published one; others are re-scored over
    their identifier neighbourhood first (``basis`` says which), independently of the order the
    store returns their links in.

    The store work runs on the store's own threads, bounded by the store timeout: a hung store
    gives 503 with Retry-After (``api.main``'s StoreError handler), never a hung request.
    """
    snap = state.snapshot  # one publication for the whole request, even across a reload
    scorer = snap.applicant_scorer
    cached = snap.scores.get(user_id)
    if scorer is None or cached is None or user_id not in scorer.user_features.index:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no scored user with this id")
    published = snap.published_inputs(user_id)

    def explain() -> tuple[Any, str, list[dict[str, Any]]]:
        if published is not None:
            result, basis = scorer.explain_inputs(published), "published"
        else:
            result, basis = scorer.score_known(state.store, user_id), "rescored"
        return result, basis, state.store.read("serving/user_evidence", id=user_id, max_others=SHOWN_OTHERS)

    result, basis, rows = await state.store_calls.call(explain)
    evidence = build_evidence(rows, state.confirmed_fraud(snap), caller.role in REVEAL_ROLES)
    floor = state.settings.explain_min_score
    if result.score < floor:
        reasons = [Reason(code="low_score",
                          text=f"scored {result.score:.4f}, under the {floor:g} floor: nothing here points to fraud")]  # fmt: skip
    else:
        reasons = [Reason(code=c, text=t, weight=round(w, 4)) for c, t, w in result.reasons]
        reasons += evidence_reasons(evidence)
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


@router.post("/{user_id}/decision", response_model=DecisionOut, status_code=status.HTTP_201_CREATED,
             responses=error_responses(*BODY_ERRORS, 404, *V1_ERRORS))  # fmt: skip
def decide_user(user_id: str, body: DecisionIn, state: State, caller: Investigator) -> DecisionOut:
    """Record confirmed fraud / false positive / needs more information on one user, with a note.

    The verdict labels the user for the next ``graphrisk train`` (outranking decisions on its
    rings). Stored with the investigator's name and audited. 404 for a user with no score.
    """
    snap = state.snapshot
    cached = snap.scores.get(user_id)
    if cached is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no scored user with this id")
    assert state.decisions is not None
    ring_id = snap.ring_of.get(user_id)
    record = state.decisions.record(
        "user", user_id, body.decision, body.note, caller.investigator, caller.name, [user_id],
        ring_id=ring_id, typology=body.typology or (snap.ring_typology.get(ring_id) if ring_id else None),
        score=cached.score, model_version=cached.model_version,
    )  # fmt: skip
    state.audit.append(caller.name, caller.role.value, "user_decision", user_id,
                       {"decision": record.decision, "decision_id": record.id,
                        "investigator": record.investigator})  # fmt: skip
    return decision_out(record)
