"""JSON routes of the investigator's console (``/console``): work queues, ring and user graphs,
one-hop expansion and timelines.

Same roles as the rest of ``/v1``: investigators and admins only. Identifier tokens never leave
here: an identifier's node id is a sealed handle bound to the caller and the view
(:mod:`api.console.handles`), and its text is the stored masked value. Users, devices and
merchants are business ids, shown as :mod:`api.routes.rings` shows them.

Queues are served from memory: the published ring table (``AppState.ring_summaries``, already
sorted by score) and the published user scores, each indexed once per publication into NumPy
columns, so a filtered page at 100,000 rings is a few vector comparisons and a slice.
"""

from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from api.console.handles import HandleError, Handles
from api.deps import Investigator, State, StrictJSONRoute
from api.pagination import decode_cursor, encode_cursor
from api.schemas import V1_ERRORS, RingSummary, error_responses
from api.state import AppState
from graphrisk.graph_schema import PSEUDONYMOUS_LABELS

router = APIRouter(prefix="/v1/console", tags=["console"], route_class=StrictJSONRoute)

RING_GRAPH_LIMIT = 5000  # rows of a ring's links read (get_ring reads as many)
TIMELINE_MAX = 300
EXPAND_CAP_MAX = 100
NEIGHBOURS_PER_IDENTIFIER = 8  # other users drawn per identifier in a user's link graph
FLAGGED_BANDS = ("review", "block")
# Decisions that close a case; anything else (needs_info) leaves it open.
FINAL_DECISIONS = frozenset({"confirmed_fraud", "false_positive"})
# The candidate view a ring was found in says which typology it most likely is (gnn/rings/
# candidates.py: each view is built for the typologies the synthetic generator plants).
TYPOLOGY_OF_VIEW = {"identity": "device_farm", "personal": "synthetic_identity", "flow": "mule_ring",
                    "money": "bust_out"}  # fmt: skip
TYPOLOGY_TEXT = {
    "device_farm": "members share devices, IPs and identity details (device farm?)",
    "synthetic_identity": "members share documents, phones or emails (synthetic identities?)",
    "mule_ring": "money moves along a chain or cycle of members (mule ring?)",
    "bust_out": "members share cards and pay the same merchants (bust-out?)",
    "unknown": "found by the ring model",
}
TYPOLOGIES = tuple(TYPOLOGY_TEXT)
TYPOLOGY_PATTERN = "^(" + "|".join(TYPOLOGIES) + ")$"
# Node id prefixes of business ids; identifiers get sealed handles (``h.``).
PLAIN_PREFIX = {"User": "u:", "Device": "d:", "Merchant": "m:"}
LABEL_OF_PREFIX = {v: k for k, v in PLAIN_PREFIX.items()}
# Parameter of cypher/serving/console_node_users.cypher per label.
EXPAND_PARAM = {"Device": "device", "IP": "ip", "Document": "document", "Email": "email", "Phone": "phone",
                "Address": "address", "Card": "card", "Merchant": "merchant",
                "Fingerprint": "fingerprint"}  # fmt: skip


# --- response models ---------------------------------------------------------------------------


class QueueRing(BaseModel):
    """A ring in the work queue, with one line saying why it is there."""

    id: str
    score: float
    size: int
    status: str = Field(description="the ring table's status: new (this run) or active (seen before)")
    queue_status: Literal["new", "open", "decided"]
    decision: str | None
    typology: str = Field(description="a guess from the view the ring was found in")
    first_seen: int
    last_seen: int
    members_flagged: int | None = Field(description="members in the review or block band (None: unknown)")
    why: str


class QueueUser(BaseModel):
    """A user in the review or block band, with one line saying why."""

    id: str
    score: float
    band: str
    model_version: str
    ring_id: str | None
    queue_status: Literal["new", "open", "decided"]
    decision: str | None
    why: str


class RingQueue(BaseModel):
    """A page of the ring queue."""

    data: list[QueueRing]
    count: int = Field(description="rings matching the filters, all pages")
    next_cursor: str | None
    typologies: list[str]


class UserQueue(BaseModel):
    """A page of the user queue."""

    data: list[QueueUser]
    count: int
    next_cursor: str | None


class ConsoleNode(BaseModel):
    """A node as the console draws it. ``id`` is a user ``u:…``, device ``d:…``, merchant
    ``m:…``, a sealed identifier handle ``h.…`` or a "more" marker ``more:…``."""

    id: str
    label: str
    display: str
    member: bool = False
    score: float | None = None
    band: str | None = None
    members_sharing: int = 0
    hidden: int = Field(0, description="more markers: neighbours the cap left out")


class ConsoleEdge(BaseModel):
    """A link: an identifier used, a payment, a transfer (source sent to target)."""

    id: str
    source: str
    target: str
    type: str
    count: int | None = None
    amount: float | None = None
    first_seen: int | None = None
    last_seen: int | None = None


class TimelineEvent(BaseModel):
    """One dated event of a ring or user."""

    at: int
    kind: str
    text: str


class DecisionView(BaseModel):
    """A decision already recorded."""

    decision: str
    note: str
    actor: str
    at: int


class RingGraph(RingSummary):
    """A ring for the console: graph, members, lineage, timeline, decisions."""

    typology: str
    why: str
    parents: list[str]
    successors: list[str]
    members: list[dict[str, Any]]
    nodes: list[ConsoleNode]
    edges: list[ConsoleEdge]
    timeline: list[TimelineEvent]
    decisions: list[DecisionView]
    truncated: bool = Field(description="the store returned as many rows as were asked for")


class Expansion(BaseModel):
    """One hop from a node: at most ``cap`` neighbours, and a "more" marker for the rest."""

    node: str
    nodes: list[ConsoleNode]
    edges: list[ConsoleEdge]
    total: int
    hidden: int


class UserView(BaseModel):
    """A user for the console: score, band, rings and link graph (the explanation is its own route)."""

    id: str
    score: float
    band: str
    model_version: str
    rings: list[RingSummary]
    nodes: list[ConsoleNode]
    edges: list[ConsoleEdge]
    decisions: list[DecisionView]


# --- in-memory indexes, one per publication ------------------------------------------------------


@dataclass
class RingIndex:
    """Columns of the ring table in ``ring_summaries`` order, for vector filters."""

    source: list[RingSummary]
    score: np.ndarray
    size: np.ndarray
    first_seen: np.ndarray
    typology: np.ndarray  # codes into TYPOLOGIES
    position: dict[str, int]
    parents: dict[str, list[str]]
    successors: dict[str, list[str]]
    rings_of: dict[str, list[str]]  # user id -> live rings it is a member of (one per view at most)


@dataclass
class UserIndex:
    """Users in the review and block bands, highest score first."""

    source: dict[str, Any]
    ids: list[str]
    score: np.ndarray
    block: np.ndarray
    position: dict[str, int]


_lock = threading.Lock()
_ring_index: RingIndex | None = None
_user_index: UserIndex | None = None
_handles: tuple[bytes, Handles] | None = None


def _split(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return [str(v) for v in value]


def _rings_of(ring_members: dict[str, list[str]]) -> dict[str, list[str]]:
    # AppState.ring_of keeps one ring per user; a user can sit in one ring per candidate view.
    out: dict[str, list[str]] = {}
    for ring_id, members in ring_members.items():
        for m in members:
            out.setdefault(m, []).append(ring_id)
    return out


def ring_index(state: AppState) -> RingIndex:
    """The ring index of the table ``state`` serves now (rebuilt when a reload replaced it)."""
    global _ring_index
    summaries = state.ring_summaries
    current = _ring_index
    if current is not None and current.source is summaries:
        return current
    with _lock:
        if _ring_index is not None and _ring_index.source is summaries:
            return _ring_index
        # View (typology guess) and lineage are in the ring table but not in the summaries.
        path = state.settings.data_dir / "rings" / "rings.parquet"
        extra = pd.DataFrame(columns=["ring_id", "view", "parents", "successors"])
        if path.exists():
            extra = pd.read_parquet(path, columns=["ring_id", "view", "parents", "successors"])
        view = dict(zip(extra["ring_id"], extra["view"], strict=True))
        code = {t: i for i, t in enumerate(TYPOLOGIES)}
        unknown = code["unknown"]
        # A typology the ring table names itself (AppState.ring_typology) wins over the view's.
        named = {k: v for k, v in getattr(state, "ring_typology", {}).items() if v in code}
        _ring_index = RingIndex(
            source=summaries,
            score=np.fromiter((r.score for r in summaries), np.float64, len(summaries)),
            size=np.fromiter((r.size for r in summaries), np.int64, len(summaries)),
            first_seen=np.fromiter((r.first_seen for r in summaries), np.int64, len(summaries)),
            typology=np.fromiter(
                (
                    code.get(named.get(r.id) or TYPOLOGY_OF_VIEW.get(str(view.get(r.id)), "unknown"), unknown)
                    for r in summaries
                ),
                np.int8,
                len(summaries),
            ),
            position={r.id: i for i, r in enumerate(summaries)},
            parents={r: _split(p) for r, p in zip(extra["ring_id"], extra["parents"], strict=True)},
            successors={r: _split(s) for r, s in zip(extra["ring_id"], extra["successors"], strict=True)},
            rings_of=_rings_of(state.ring_members),
        )
        return _ring_index


def user_index(state: AppState) -> UserIndex:
    """Users of the review and block bands in the scores ``state`` serves now."""
    global _user_index
    scores = state.scores
    current = _user_index
    if current is not None and current.source is scores:
        return current
    with _lock:
        if _user_index is not None and _user_index.source is scores:
            return _user_index
        flagged = sorted(
            ((u, s.score, s.band == "block") for u, s in scores.items() if s.band in FLAGGED_BANDS),
            key=lambda t: (-t[1], t[0]),
        )
        _user_index = UserIndex(
            source=scores,
            ids=[u for u, _, _ in flagged],
            score=np.array([s for _, s, _ in flagged], np.float64),
            block=np.array([b for _, _, b in flagged], bool),
            position={u: i for i, (u, _, _) in enumerate(flagged)},
        )
        return _user_index


def handles(state: AppState) -> Handles:
    """The handle sealer, keyed from the pseudonymisation key (shared by every worker)."""
    global _handles
    secret = state.settings.pseudonymisation_key.get_secret_value().encode()
    if _handles is None or _handles[0] != secret:
        _handles = (secret, Handles(secret))
    return _handles[1]


# --- decisions -----------------------------------------------------------------------------------


def latest_decisions(state: AppState, subject: Literal["ring", "user"]) -> dict[str, str]:
    """The latest decision per decided ring or user (api.decisions: a ring decision covers its
    members; the store caches this until a decision is added)."""
    return state.decisions.latest_for(subject) if state.decisions is not None else {}


def decision_history(
    state: AppState, ring_id: str | None = None, user_id: str | None = None
) -> list[DecisionView]:
    """Decisions on a ring, or labelling a user, oldest first."""
    if state.decisions is None:
        return []
    rows = state.decisions.history(ring_id=ring_id, user_id=user_id, limit=50)
    return [DecisionView(decision=r.decision, note=r.note, actor=r.investigator, at=r.at_ms)
            for r in reversed(rows)]  # fmt: skip


def _queue_status(decision: str | None) -> Literal["new", "open", "decided"]:
    # As api.decisions defines it: never decided, needs_info, or a verdict.
    if decision is None:
        return "new"
    return "decided" if decision in FINAL_DECISIONS else "open"


# --- pagination ----------------------------------------------------------------------------------


def _status_mask(status_: str, decided: dict[str, str], position: dict[str, int], n: int) -> np.ndarray:
    """Rows of a queue whose status is ``status_``: decisions are few, so mark their rows and
    compare (new = no decision at all)."""
    code = np.zeros(n, np.int8)  # 0 new, 1 open, 2 decided
    for key, d in decided.items():
        pos = position.get(key)
        if pos is not None:
            code[pos] = 2 if d in FINAL_DECISIONS else 1
    return code == {"new": 0, "open": 1, "decided": 2}[status_]


# --- queues --------------------------------------------------------------------------------------


def _ring_why(ring: RingSummary, typology: str, flagged: tuple[int, int] | None, parents: list[str]) -> str:
    parts = [TYPOLOGY_TEXT[typology]]
    if flagged is not None:
        parts.append(f"{flagged[0]} of {flagged[1]} members in review/block")
    parts.append(f"ring score {ring.score:.2f}")
    if parents:
        parts.append(f"grew out of {len(parents)} earlier ring{'s' if len(parents) > 1 else ''}")
    return "; ".join(parts)


def _members_flagged(state: AppState, ring_id: str) -> tuple[int, int] | None:
    """Members in the review or block band, and members known, at the last publication."""
    members = state.members_of(ring_id)
    if not members:
        return None
    flagged = sum(1 for m in members if (s := state.scores.get(m)) is not None and s.band in FLAGGED_BANDS)
    return flagged, len(members)


@router.get("/queue/rings", response_model=RingQueue, responses=error_responses(*V1_ERRORS))
def ring_queue(
    state: State,
    caller: Investigator,
    status_: Annotated[Literal["new", "open", "decided"] | None, Query(alias="status")] = None,
    typology: Annotated[str | None, Query(pattern=TYPOLOGY_PATTERN)] = None,
    min_size: Annotated[int | None, Query(ge=0)] = None,
    max_size: Annotated[int | None, Query(ge=0)] = None,
    first_seen_from: Annotated[int | None, Query(ge=0, description="epoch ms")] = None,
    first_seen_to: Annotated[int | None, Query(ge=0, description="epoch ms")] = None,
    min_score: Annotated[float, Query(ge=0, le=1)] = 0.0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> RingQueue:
    """Live rings by score, highest first, filtered; each with why it is in the queue.

    A worker thread (the decision store is read): filters are NumPy masks over the published
    table, so the cost does not grow with the page number.
    """
    idx = ring_index(state)
    mask = idx.score >= min_score
    if typology is not None:
        mask &= idx.typology == TYPOLOGIES.index(typology)
    if min_size is not None:
        mask &= idx.size >= min_size
    if max_size is not None:
        mask &= idx.size <= max_size
    if first_seen_from is not None:
        mask &= idx.first_seen >= first_seen_from
    if first_seen_to is not None:
        mask &= idx.first_seen <= first_seen_to
    decided = latest_decisions(state, "ring")
    if status_ is not None:
        mask &= _status_mask(status_, decided, idx.position, len(mask))
    hits = np.flatnonzero(mask)
    start = decode_cursor(cursor)
    page = hits[start : start + limit]
    rows = []
    for pos in page.tolist():
        ring = idx.source[pos]
        typ = TYPOLOGIES[idx.typology[pos]]
        flagged = _members_flagged(state, ring.id)
        decision = decided.get(ring.id)
        rows.append(QueueRing(
            id=ring.id, score=ring.score, size=ring.size, status=ring.status,
            queue_status=_queue_status(decision), decision=decision, typology=typ,
            first_seen=ring.first_seen, last_seen=ring.last_seen, members_flagged=flagged[0] if flagged else None,
            why=_ring_why(ring, typ, flagged, idx.parents.get(ring.id, [])),
        ))  # fmt: skip
    state.audit.append(caller.name, caller.role.value, "console_ring_queue", "rings",
                       {"returned": len(rows), "matching": len(hits)})  # fmt: skip
    nxt = encode_cursor(start + limit) if start + limit < len(hits) else None
    return RingQueue(data=rows, count=len(hits), next_cursor=nxt, typologies=list(TYPOLOGIES))


@router.get("/queue/users", response_model=UserQueue, responses=error_responses(*V1_ERRORS))
def user_queue(
    state: State,
    caller: Investigator,
    band: Annotated[Literal["review", "block"] | None, Query()] = None,
    status_: Annotated[Literal["new", "open", "decided"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> UserQueue:
    """Users in the review and block bands by score, highest first; each with why."""
    idx = user_index(state)
    mask = np.ones(len(idx.ids), bool)
    if band is not None:
        mask &= idx.block if band == "block" else ~idx.block
    decided = latest_decisions(state, "user")
    if status_ is not None:
        mask &= _status_mask(status_, decided, idx.position, len(mask))
    hits = np.flatnonzero(mask)
    start = decode_cursor(cursor)
    rows = []
    for pos in hits[start : start + limit].tolist():
        user_id = idx.ids[pos]
        cached = state.scores[user_id]
        ring_id = state.ring_of.get(user_id)
        ring = state.ring_index.get(ring_id) if ring_id else None
        why = f"{cached.band} band at {cached.score:.2f}; " + (
            f"member of ring {ring.id} ({ring.size} members, ring score {ring.score:.2f})"
            if ring is not None else "in no live ring"
        )  # fmt: skip
        decision = decided.get(user_id)
        rows.append(QueueUser(id=user_id, score=cached.score, band=cached.band, model_version=cached.model_version,
                              ring_id=ring.id if ring else None, decision=decision,
                              queue_status=_queue_status(decision),
                              why=why))  # fmt: skip
    state.audit.append(caller.name, caller.role.value, "console_user_queue", "users",
                       {"returned": len(rows), "matching": len(hits)})  # fmt: skip
    nxt = encode_cursor(start + limit) if start + limit < len(hits) else None
    return UserQueue(data=rows, count=len(hits), next_cursor=nxt)


# --- graphs --------------------------------------------------------------------------------------


class _Graph:
    """Nodes and edges of one response, with identifier tokens sealed for its scope."""

    def __init__(self, state: AppState, scope: str) -> None:
        self.state = state
        self.scope = scope
        self.sealer = handles(state)
        self.nodes: dict[str, ConsoleNode] = {}
        self.edges: dict[str, ConsoleEdge] = {}

    def node_id(self, label: str, node: str) -> str:
        prefix = PLAIN_PREFIX.get(label)
        if prefix is not None:
            return prefix + node
        return self.sealer.seal(self.scope, label, node)

    def add_user(self, user_id: str, member: bool = False) -> str:
        nid = PLAIN_PREFIX["User"] + user_id
        if nid not in self.nodes:
            cached = self.state.scores.get(user_id)
            self.nodes[nid] = ConsoleNode(id=nid, label="User", display=user_id, member=member,
                                          score=cached.score if cached else None,
                                          band=cached.band if cached else None)  # fmt: skip
        elif member:
            self.nodes[nid].member = True
        return nid

    def add_node(self, label: str, node: str, masked: str | None) -> str:
        if label == "User":
            return self.add_user(node)
        nid = self.node_id(label, node)
        if nid not in self.nodes:
            if label in PSEUDONYMOUS_LABELS or label not in PLAIN_PREFIX:
                # Never the token: the stored masked value, or the label alone.
                display = masked or f"{label} (masked)"
            else:
                display = node
            self.nodes[nid] = ConsoleNode(id=nid, label=label, display=display)
        return nid

    def add_edge(self, source: str, target: str, rel: str, row: dict[str, Any]) -> None:
        eid = f"{source}>{rel}>{target}"
        amount = row.get("amount")
        self.edges.setdefault(eid, ConsoleEdge(
            id=eid, source=source, target=target, type=rel,
            count=int(row["count"]) if row.get("count") is not None else None,
            amount=round(float(amount), 2) if amount is not None else None,
            first_seen=row.get("first_seen"), last_seen=row.get("last_seen"),
        ))  # fmt: skip

    def add_more(self, anchor: str, hidden: int) -> None:
        if hidden <= 0:
            return
        mid = f"more:{anchor}"
        self.nodes[mid] = ConsoleNode(id=mid, label="More", display=f"+{hidden} more", hidden=hidden)
        self.edges[f"{anchor}>MORE"] = ConsoleEdge(
            id=f"{anchor}>MORE", source=anchor, target=mid, type="MORE"
        )


def _scope(caller_name: str, view: str) -> str:
    return f"{caller_name}|{view}"


def _fmt_time(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


@router.get("/rings/{ring_id}", response_model=RingGraph, responses=error_responses(404, *V1_ERRORS))
async def ring_graph(ring_id: str, state: State, caller: Investigator) -> RingGraph:
    """A ring as a graph: members, the identifiers and merchants at least two members share,
    transfers between members (amounts, first and last time), and its timeline, lineage,
    members' scores and decisions."""
    ring = state.ring_by_id(ring_id)
    idx = ring_index(state)
    # The store and the decision database answer at the same time.
    rows, decisions = await asyncio.gather(
        state.store_calls.call(
            state.store.read, "serving/console_ring_graph", id=ring_id, limit=RING_GRAPH_LIMIT
        ),
        asyncio.to_thread(decision_history, state, ring_id),
    )
    members = sorted(set(state.members_of(ring_id)) | {r["member"] for r in rows})
    member_set = set(members)
    graph = _Graph(state, _scope(caller.name, f"ring:{ring_id}"))
    for m in members:
        graph.add_user(m, member=True)
    sharing: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        if r["label"] != "User":
            sharing.setdefault((r["label"], str(r["node"])), set()).add(r["member"])
    timeline: list[TimelineEvent] = []
    onboarded: dict[str, int] = {}
    for r in rows:
        if r["onboarded_at"] is not None:
            onboarded[r["member"]] = int(r["onboarded_at"])
        src = PLAIN_PREFIX["User"] + r["member"]
        if r["label"] == "User":
            if r["node"] not in member_set:
                continue  # money leaving the ring shows on expansion
            graph.add_edge(src, graph.add_user(r["node"], member=True), r["rel"], r)
            if r["first_seen"] is not None:
                amount = f" ({r['amount']:.2f} in {r['count']} transfers)" if r["amount"] is not None else ""
                timeline.append(TimelineEvent(at=int(r["first_seen"]), kind="transfer",
                                              text=f"{r['member']} first sent money to {r['node']}{amount}"))  # fmt: skip
            continue
        shared_by = sharing[(r["label"], str(r["node"]))]
        if len(shared_by) < 2:
            continue  # a member's own identifier ties nothing together; expansion shows it
        target = graph.add_node(r["label"], str(r["node"]), r["masked"])
        graph.nodes[target].members_sharing = len(shared_by)
        graph.add_edge(src, target, r["rel"], r)
        if r["first_seen"] is not None:
            what = graph.nodes[target].display
            verb = "paid" if r["rel"] == "PAID" else "first used"
            timeline.append(TimelineEvent(at=int(r["first_seen"]), kind=r["rel"].lower(),
                                          text=f"{r['member']} {verb} {r['label'].lower()} {what}"))  # fmt: skip
    for m, at in onboarded.items():
        timeline.append(TimelineEvent(at=at, kind="onboarded", text=f"{m} onboarded"))
    timeline.append(TimelineEvent(at=ring.first_seen, kind="ring", text="ring first detected"))
    for d in decisions:
        timeline.append(TimelineEvent(at=d.at, kind="decision", text=f"{d.actor} decided {d.decision}"))
    timeline.sort(key=lambda e: (e.at, e.kind, e.text))
    pos = idx.position.get(ring_id)
    typ = TYPOLOGIES[idx.typology[pos]] if pos is not None else "unknown"
    parents = idx.parents.get(ring_id, [])
    member_rows = []
    for m in members:
        cached = state.scores.get(m)
        member_rows.append(
            {"id": m, "score": cached.score if cached else None, "band": cached.band if cached else None}
        )
    state.audit.append(
        caller.name, caller.role.value, "console_read_ring", ring_id, {"members": len(members)}
    )
    return RingGraph(**ring.model_dump(), typology=typ,
                     why=_ring_why(ring, typ, _members_flagged(state, ring_id), parents),
                     parents=parents, successors=idx.successors.get(ring_id, []), members=member_rows,
                     nodes=list(graph.nodes.values()), edges=list(graph.edges.values()),
                     timeline=timeline[-TIMELINE_MAX:], decisions=decisions,
                     truncated=len(rows) >= RING_GRAPH_LIMIT)  # fmt: skip


def _view_exists(state: AppState, view: str) -> None:
    kind, _, key = view.partition(":")
    if (kind == "ring" and key in state.ring_index) or (kind == "user" and key in state.scores):
        return
    raise HTTPException(status.HTTP_404_NOT_FOUND, "no such ring or user to expand in")


@router.get("/expand", response_model=Expansion, responses=error_responses(404, *V1_ERRORS))
async def expand(
    state: State,
    caller: Investigator,
    view: Annotated[str, Query(pattern=r"^(ring|user):[^|]{1,128}$", description="ring:<id> or user:<id>")],
    node: Annotated[str, Query(min_length=3, max_length=512, description="a node id from this view")],
    cap: Annotated[int, Query(ge=1, le=EXPAND_CAP_MAX)] = 25,
) -> Expansion:
    """One hop from a node of a ring or user view, at most ``cap`` neighbours; when the cap
    hides some, a "more" marker node says how many."""
    _view_exists(state, view)
    graph = _Graph(state, _scope(caller.name, view))
    if node.startswith("h."):
        try:
            label, key = graph.sealer.open(graph.scope, node)
        except HandleError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such node in this view") from None
    else:
        prefix, key = node[:2], node[2:]
        label = LABEL_OF_PREFIX.get(prefix, "")
        if not label or not key:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such node in this view")
    if label == "User":
        rows = await state.store_calls.call(
            state.store.read, "serving/console_user_links", id=key, limit=2000
        )
        anchor = graph.add_user(key)
        total = int(rows[0]["total"]) if rows else 0
        # Money first (transfers), then identifiers, merchants last: a user pays many honest
        # merchants, and those are seldom what ties a ring together.
        order = {"TRANSFERRED_TO": 0, "PAID": 2}
        rows.sort(key=lambda r: (order.get(r["rel"], 1), -(r["last_seen"] or 0), str(r["node"])))
        for r in rows[:cap]:
            other = graph.add_node(r["label"], str(r["node"]), r["masked"])
            src, dst = (anchor, other) if r["dir"] == "out" else (other, anchor)
            graph.add_edge(src, dst, r["rel"], r)
    elif label in EXPAND_PARAM:
        params: dict[str, Any] = dict.fromkeys(EXPAND_PARAM.values())
        params[EXPAND_PARAM[label]] = key
        rows = await state.store_calls.call(
            state.store.read, "serving/console_node_users", limit=cap, **params
        )
        anchor = graph.node_id(label, key)
        total = int(rows[0]["total"]) if rows else 0
        for r in rows[:cap]:
            graph.add_edge(graph.add_user(str(r["user"])), anchor, r["rel"], r)
    else:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such node in this view")
    shown = sum(1 for e in graph.edges.values() if anchor in (e.source, e.target))
    hidden = max(0, total - shown)
    graph.add_more(anchor, hidden)
    graph.nodes.pop(anchor, None)  # already drawn by the caller
    state.audit.append(caller.name, caller.role.value, "console_expand", view[:160],
                       {"label": label, "shown": shown, "total": total})  # fmt: skip
    return Expansion(node=anchor, nodes=list(graph.nodes.values()), edges=list(graph.edges.values()),
                     total=total, hidden=hidden)  # fmt: skip


@router.get("/users/{user_id}", response_model=UserView, responses=error_responses(404, *V1_ERRORS))
async def user_view(user_id: str, state: State, caller: Investigator) -> UserView:
    """A user: score and band, live rings, and a link graph (its identifiers and, for each, a few
    of the other users on it, with a "more" marker for the rest)."""
    cached = state.scores.get(user_id)
    if cached is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no scored user with this id")
    rows, decisions = await asyncio.gather(
        state.store_calls.call(
            state.store.read, "serving/user_evidence", id=user_id, max_others=NEIGHBOURS_PER_IDENTIFIER
        ),
        asyncio.to_thread(decision_history, state, None, user_id),
    )
    graph = _Graph(state, _scope(caller.name, f"user:{user_id}"))
    me = graph.add_user(user_id, member=True)
    rings = [
        state.ring_index[r] for r in ring_index(state).rings_of.get(user_id, []) if r in state.ring_index
    ]
    for r in rows:
        if r["rel"] == "MEMBER_OF":
            continue
        if r["rel"] == "PAID" and int(r["shared_with"] or 0) > NEIGHBOURS_PER_IDENTIFIER:
            continue  # a big merchant everyone pays links nobody
        target = graph.add_node(r["label"], str(r["node"]), r["masked"])
        graph.add_edge(me, target, r["rel"], {"count": r["uses"]})
        if r["label"] == "User":
            continue
        others = sorted(str(o) for o in r["others"])
        for o in others:
            graph.add_edge(graph.add_user(o), target, r["rel"], {})
        graph.nodes[target].members_sharing = int(r["shared_with"] or 0) + 1
        graph.add_more(target, int(r["shared_with"] or 0) - len(others))
    rings.sort(key=lambda r: (-r.score, r.id))
    state.audit.append(caller.name, caller.role.value, "console_read_user", user_id,
                       {"model_version": cached.model_version})  # fmt: skip
    return UserView(id=user_id, score=cached.score, band=cached.band, model_version=cached.model_version,
                    rings=rings, nodes=list(graph.nodes.values()), edges=list(graph.edges.values()),
                    decisions=decisions)  # fmt: skip
