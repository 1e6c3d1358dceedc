"""Investigators' decisions: the list the console shows (decisions are made on
``/v1/rings/{ring_id}/decision`` and ``/v1/users/{user_id}/decision``)."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from api.decisions import DecisionRecord
from api.deps import Investigator, State, StrictJSONRoute
from api.schemas import V1_ERRORS, DecisionList, DecisionOut, error_responses

router = APIRouter(prefix="/v1/decisions", tags=["decisions"], route_class=StrictJSONRoute)


def decision_out(record: DecisionRecord) -> DecisionOut:
    """The response model of a stored decision."""
    return DecisionOut(
        id=record.id, at_ms=record.at_ms, subject=record.subject, subject_id=record.subject_id,
        decision=record.decision,  # type: ignore[arg-type]
        note=record.note, investigator=record.investigator, ring_id=record.ring_id,
        user_id=record.subject_id if record.subject == "user" else None, typology=record.typology,
        score=record.score, model_version=record.model_version, members=record.users,
        status="open" if record.decision == "needs_info" else "decided",
    )  # fmt: skip


def _before(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode())
    except ValueError:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": "invalid cursor", "type": "value_error"}]
        ) from None


@router.get("", response_model=DecisionList, responses=error_responses(*V1_ERRORS))
def list_decisions(
    state: State,
    caller: Investigator,
    ring_id: Annotated[str | None, Query(max_length=128)] = None,
    user_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> DecisionList:
    """Decisions, newest first: all of them, those on one ring, or those labelling one user
    (its own and those on rings it was a member of). Each says who decided, when and why.

    A plain ``def``: it queries the decision database, so FastAPI runs it on a worker thread.
    """
    assert state.decisions is not None
    rows = state.decisions.history(ring_id, user_id, limit + 1, _before(cursor))
    page = rows[:limit]
    nxt = base64.urlsafe_b64encode(str(page[-1].id).encode()).decode() if len(rows) > limit else None
    state.audit.append(caller.name, caller.role.value, "list_decisions", ring_id or user_id or "all",
                       {"returned": len(page)})  # fmt: skip
    return DecisionList(data=[decision_out(r) for r in page], next_cursor=nxt)
