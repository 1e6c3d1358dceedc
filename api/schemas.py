"""Request and response models of the v1 API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.decisions import canonical
from graphrisk.events import DeviceInfo, Id, IdentityDocument, PostalAddress


class Applicant(BaseModel):
    """An applicant, as the onboarding service sends it (the fields of an onboarding event)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user_id: Id
    document: IdentityDocument
    device: DeviceInfo
    email: str = Field(min_length=3, max_length=320)
    phone: str = Field(min_length=4, max_length=32)
    ip: str = Field(min_length=2, max_length=64)
    address: PostalAddress
    time: int | str | None = Field(None, description="ISO-8601 with zone or epoch ms; default now")


class Reason(BaseModel):
    """One reason behind a score."""

    code: str
    text: str
    weight: float | None = None


class ScoreResponse(BaseModel):
    """A calibrated risk score with its decision band and reasons."""

    user_id: str
    score: float = Field(ge=0, le=1)
    band: Literal["allow", "review", "block"]
    model_version: str
    known_user: bool
    stale: bool = False
    reasons: list[Reason] = []
    ring_id: str | None = None
    linked_users: dict[str, int] = Field(
        default_factory=dict,
        description="New applicants: existing users on each of the applicant's identifiers, per relationship "
        "(counts only, no identities); a step-up check can key on them.",
    )


class FeatureContribution(BaseModel):
    """How much one feature moved the score (log-odds, from TreeSHAP)."""

    feature: str
    value: float | None
    contribution: float


class EvidenceItem(BaseModel):
    """An identifier the user shares, with whom."""

    relationship: str
    identifier: str
    shared_with: int
    confirmed_fraud: int
    others: list[str]


class Explanation(BaseModel):
    """Why a user scored as it did."""

    user_id: str
    score: float = Field(description="the score the contributions explain")
    published_score: float | None = Field(description="the last batch score")
    basis: Literal["published", "rescored"] = Field(
        description="published: the batch's own input row was explained, so score equals published_score "
        "(users in the review and block bands); rescored: the user was re-scored over its identifier "
        "neighbourhood now, and score may differ"
    )
    model_version: str | None
    reasons: list[Reason]
    contributions: list[FeatureContribution]
    evidence: list[EvidenceItem]


class HealthResponse(BaseModel):
    """Liveness / readiness."""

    status: Literal["ok", "degraded", "unavailable"]
    detail: dict[str, object] = {}


class RingSummary(BaseModel):
    """A candidate ring in a list."""

    id: str
    score: float
    size: int
    status: str
    model_version: str
    first_seen: int
    last_seen: int


class RingList(BaseModel):
    """A page of rings, highest score first."""

    data: list[RingSummary]
    count: int
    next_cursor: str | None = None


class GraphNode(BaseModel):
    """A node of a ring's evidence subgraph."""

    id: str
    label: str
    display: str
    members_sharing: int = 0


class GraphEdge(BaseModel):
    """An edge of a ring's evidence subgraph."""

    source: str
    target: str
    type: str
    count: int | None = None
    amount: float | None = None


class RingDetail(RingSummary):
    """A ring with its members, evidence subgraph and what ties it together."""

    members: list[dict[str, object]]
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    reasons: list[Reason]


class DecisionIn(BaseModel):
    """An investigator's decision on a ring or a user.

    ``cleared`` and ``needs_review`` (the earlier names) are accepted and stored as
    ``false_positive`` and ``needs_info``.
    """

    model_config = ConfigDict(extra="forbid")

    decision: Annotated[
        Literal["confirmed_fraud", "false_positive", "needs_info", "cleared", "needs_review"],
        AfterValidator(canonical),
        Field(description="confirmed_fraud | false_positive | needs_info (aliases: cleared, needs_review)"),
    ]
    note: str = Field("", max_length=4000)
    typology: str | None = Field(
        None, max_length=64, pattern=r"^[a-z0-9_]+$",
        description="Ring decisions: the investigator's typology (default: the ring's typology guess, if any)",
    )  # fmt: skip


class DecisionOut(BaseModel):
    """A stored decision."""

    id: int
    at_ms: int
    subject: Literal["ring", "user"]
    subject_id: str
    decision: Literal["confirmed_fraud", "false_positive", "needs_info"]
    note: str
    investigator: str = Field(description="the key holder's name (the key hash when the key names none)")
    ring_id: str | None = None
    user_id: str | None = None
    typology: str | None = None
    score: float | None = None
    model_version: str | None = None
    members: int = Field(description="users the decision labels (a ring's members, or 1)")
    status: Literal["open", "decided"]


class DecisionList(BaseModel):
    """Decisions, newest first."""

    data: list[DecisionOut]
    next_cursor: str | None = None


class ReloadOut(BaseModel):
    """What was served before a reload and what is served now (``/readyz``'s fields)."""

    previous: dict[str, object]
    serving: dict[str, object]


class ErrorResponse(BaseModel):
    """An error: what went wrong, in words (never the submitted values)."""

    detail: str


class ValidationIssue(BaseModel):
    """One invalid part of a request (FastAPI's shape, without the submitted value)."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """422: the request is malformed; each issue names where."""

    detail: list[ValidationIssue]


_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}
_ERRORS: dict[int, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the body could not be read (not UTF-8 JSON, too deep)"},
    401: {"model": ErrorResponse, "description": "missing or unknown API key",
          "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}},
    403: {"model": ErrorResponse, "description": "the key's role may not do this"},
    404: {"model": ErrorResponse, "description": "no such resource"},
    413: {"model": ErrorResponse, "description": "request body over the configured limit"},
    422: {"model": ValidationErrorResponse, "description": "invalid request (NaN and Infinity included)"},
    429: {"model": ErrorResponse, "description": "rate limit, or too many failed authentications from this address",
          "headers": _RETRY_AFTER},
    503: {"model": ErrorResponse, "description": "graph store, model or audit trail unavailable",
          "headers": _RETRY_AFTER},
}  # fmt: skip


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer."""
    return {code: _ERRORS[code] for code in codes}


# The statuses every /v1/ route can answer (authentication, rate limits, the audit guard,
# query or path validation), and those of routes that take a JSON body.
V1_ERRORS = (401, 403, 422, 429, 503)
BODY_ERRORS = (400, 413)
