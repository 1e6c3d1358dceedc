"""Scores for the onboarding service: known users from the published scores, new applicants online."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.exceptions import RequestValidationError

from api.deps import Onboarding, ScoreCaller, State, StrictJSONRoute
from api.lineage import batch_lineage, online_lineage
from api.metrics import SCORES
from api.redact import scrub
from api.schemas import BODY_ERRORS, V1_ERRORS, Applicant, Reason, ScoreResponse, error_responses
from api.served_rows import ServedRows, served_row
from api.state import AppState, Snapshot
from graphrisk.errors import NormalisationError, StoreError
from graphrisk.events import FieldError, parse_event

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["scores"], route_class=StrictJSONRoute)

STALE_AFTER_S = 15.0


def _request_hash(payload: dict[str, object]) -> str:
    # Only a hash of the applicant goes to the audit trail: it holds personal data.
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _unavailable(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, reason, {"Retry-After": "30"})


def _score_new(
    state: AppState, snap: Snapshot, applicant: Applicant, payload: dict[str, object]
) -> tuple[ScoreResponse, dict[str, Any]]:
    """A new applicant's score from its k-hop neighbourhood, and its lineage (CPU and store
    bound: runs on a worker thread)."""
    scorer = snap.applicant_scorer
    if scorer is None:
        raise _unavailable("no production model is loaded")
    if time.time() - state.store_ok_at > STALE_AFTER_S:
        raise _unavailable("the graph store is unavailable; retry later")
    event_fields = {k: v for k, v in payload.items() if v is not None}
    event_fields.setdefault("time", int(time.time() * 1000))
    try:
        event = parse_event(
            {**event_fields, "event_id": f"api-{applicant.user_id}", "event_type": "onboarding"}
        )
        now = int(event_fields["time"])  # type: ignore[call-overload]
        result = scorer.score(state.store, event, now, state.applications)  # type: ignore[arg-type]
        if state.applications is not None:
            state.applications.record(applicant.user_id, result.nodes, now)
        if state.served_rows is not None:  # the app's log (None: served_rows_log is off)
            assert snap.model_meta is not None
            _log_served_row(state.served_rows, scorer, result, event.user_id, now, snap.model_meta.version)
    except (FieldError, NormalisationError) as exc:
        # FastAPI's shape; the reason loses any part of the applicant it quoted (an invalid IP's
        # message is the IP itself).
        raise RequestValidationError(
            [
                {
                    "loc": ("body", *exc.field.split(".")),
                    "msg": scrub(exc.reason, payload),
                    "type": "value_error",
                }
            ]
        ) from None
    except StoreError:
        # No driver message: it names hosts, users and statements.
        raise _unavailable("the graph store is unavailable; retry later") from None
    reasons = [Reason(code=c, text=t, weight=round(w, 4)) for c, t, w in result.reasons]
    if result.known_fraud_neighbours:
        reasons.insert(0, Reason(code="linked_to_confirmed_fraud",
                                 text=f"shares identifiers with {len(result.known_fraud_neighbours)} confirmed fraud users"))  # fmt: skip
    assert snap.model_meta is not None
    ring = next((snap.ring_of[u] for u in result.known_fraud_neighbours if u in snap.ring_of), None)
    response = ScoreResponse(user_id=applicant.user_id, score=result.score, band=result.band,  # type: ignore[arg-type]
                             model_version=snap.model_meta.version, known_user=False, reasons=reasons,
                             ring_id=ring, linked_users=result.linked_users)  # fmt: skip
    return response, online_lineage(snap, result, now)


def _log_served_row(
    served_rows: ServedRows, scorer: Any, result: Any, user_id: str, now: int, version: str
) -> None:
    """Keep the model-input row just served (api.served_rows), for the training-serving skew
    check; a failure here is logged and never fails the applicant's score."""
    try:
        served = served_row(scorer, result)
        if served is not None:
            row, names = served
            served_rows.record(user_id, now, version, row, names, str(result.input_row_hash))
    except Exception:
        log.warning("could not keep the served row of an applicant", exc_info=True)


@router.post("/score", response_model=ScoreResponse, responses=error_responses(*BODY_ERRORS, *V1_ERRORS))
async def score_applicant(applicant: Applicant, state: State, caller: ScoreCaller) -> ScoreResponse:
    """Score an applicant: from the published score if already in the graph, else from its
    neighbourhood in the graph (nothing is written)."""
    payload = applicant.model_dump(mode="json")
    snap = state.snapshot  # one publication for the whole request, even across a reload
    cached = snap.scores.get(applicant.user_id)
    if cached is not None:
        # Known users stay on the event loop: a dict lookup needs no worker thread.
        stale = time.time() - state.store_ok_at > STALE_AFTER_S
        response = ScoreResponse(user_id=applicant.user_id, score=cached.score, band=cached.band,  # type: ignore[arg-type]
                                 model_version=cached.model_version, known_user=True, stale=stale,
                                 ring_id=snap.ring_of.get(applicant.user_id))  # fmt: skip
        lineage = batch_lineage(snap, applicant.user_id, cached)
        kind = "known"
    else:
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(state.scoring_pool, _score_new, state, snap, applicant, payload)
        try:
            response, lineage = await asyncio.wait_for(work, state.settings.new_applicant_timeout_s)
        except TimeoutError:
            # A hung store must not hold the onboarding service: it gets a clear retry instead.
            raise _unavailable("scoring took too long; retry later") from None
        kind = "new"
    SCORES.labels(kind, response.band).inc()
    state.audit.append(caller.name, caller.role.value, "score", applicant.user_id,
                       {"request_hash": _request_hash(payload), "model_version": response.model_version,
                        "score": response.score, "band": response.band, "reasons": [r.code for r in response.reasons],
                        "known_user": response.known_user, "lineage": lineage})  # fmt: skip
    return response


@router.get(
    "/users/{user_id}/score", response_model=ScoreResponse, responses=error_responses(404, *V1_ERRORS)
)
async def user_score(user_id: str, state: State, caller: Onboarding) -> ScoreResponse:
    """A known user's last computed score: a lookup in memory, on the event loop, so that it keeps
    answering while the store hangs and every worker thread is taken."""
    snap = state.snapshot
    cached = snap.scores.get(user_id)
    if cached is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no score for this user")
    state.audit.append(caller.name, caller.role.value, "read_score", user_id,
                       {"model_version": cached.model_version, "score": cached.score, "band": cached.band,
                        "lineage": batch_lineage(snap, user_id, cached)})  # fmt: skip
    return ScoreResponse(user_id=user_id, score=cached.score, band=cached.band, model_version=cached.model_version,  # type: ignore[arg-type]
                         known_user=True, stale=time.time() - state.store_ok_at > STALE_AFTER_S,
                         ring_id=snap.ring_of.get(user_id))  # fmt: skip
