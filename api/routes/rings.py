"""Fraud rings for investigators: list by score, read one with its evidence, record decisions."""

from __future__ import annotations

from typing import Annotated

import networkx as nx
from fastapi import APIRouter, Query, status

from api.auth import REVEAL_ROLES
from api.deps import Investigator, State, StrictJSONRoute
from api.pagination import decode_cursor, encode_cursor
from api.routes.decisions import decision_out
from api.schemas import (
    BODY_ERRORS,
    V1_ERRORS,
    DecisionIn,
    DecisionOut,
    GraphEdge,
    GraphNode,
    Reason,
    RingDetail,
    RingList,
    error_responses,
)

router = APIRouter(prefix="/v1/rings", tags=["rings"], route_class=StrictJSONRoute)
HOUR_MS = 3_600_000
# Nodes whose id is a plain business id, not a pseudonymous token of personal data.
PLAIN_ID_LABELS = frozenset({"User", "Device", "Merchant"})


@router.get("", response_model=RingList, responses=error_responses(*V1_ERRORS))
async def list_rings(
    state: State,
    caller: Investigator,
    min_score: Annotated[float, Query(ge=0, le=1)] = 0.0,
    status_: Annotated[
        str | None, Query(alias="status", pattern="^(new|active|merged|split|closed)$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> RingList:
    """Rings by collusion score, highest first, from the published ring table (served from memory).

    Runs on the event loop: a binary search and a slice of an in-memory table, no I/O.
    """
    sel = state.snapshot.rings_above(min_score)
    if status_ is not None:
        sel = [r for r in sel if r.status == status_]
    start = decode_cursor(cursor)
    data = sel[start : start + limit]
    nxt = encode_cursor(start + limit) if start + limit < len(sel) else None
    state.audit.append(
        caller.name, caller.role.value, "list_rings", "rings", {"min_score": min_score, "returned": len(data)}
    )
    return RingList(data=data, count=len(sel), next_cursor=nxt)


@router.get("/{ring_id}", response_model=RingDetail, responses=error_responses(404, *V1_ERRORS))
async def get_ring(ring_id: str, state: State, caller: Investigator) -> RingDetail:
    """One ring: members, evidence subgraph, and what ties it together.

    Identifiers are shown masked; their node ids are handles (``n1``, ``n2``…) that mean
    something within this response only, not the store's pseudonymous tokens, which would let an
    investigator follow a person across rings and responses. Admins see the tokens.
    The subgraph is read on the store's own threads, bounded by the store timeout (503 past it).
    """
    snap = state.snapshot  # one publication for the whole request, even across a reload
    ring = snap.ring_by_id(ring_id)
    rows = await state.store_calls.call(state.store.read, "rings/ring_subgraph", id=ring_id, limit=5000)
    reveal = caller.role in REVEAL_ROLES
    handles: dict[str, str] = {}

    def handle(label: str, node: str) -> str:
        if reveal or label in PLAIN_ID_LABELS:
            return node
        return handles.setdefault(node, f"n{len(handles) + 1}")

    members = sorted(snap.members_of(ring_id))
    member_set = set(members)
    sharing: dict[tuple[str, str], set[str]] = {}
    nodes: dict[str, GraphNode] = {m: GraphNode(id=m, label="User", display=m) for m in members}
    edges: list[GraphEdge] = []
    first_seen: list[int] = []
    for r in rows:
        key = (r["label"], r["node"])
        sharing.setdefault(key, set()).add(r["member"])
        node_id = handle(r["label"], str(r["node"]))
        if r["label"] != "User":
            display = (
                node_id
                if reveal or r["label"] in ("Device", "Merchant")
                else (r["masked"] or f"{r['label']} …")
            )
            nodes.setdefault(node_id, GraphNode(id=node_id, label=r["label"], display=display))
        elif node_id not in member_set:
            continue  # transfers out of the ring are not part of its subgraph
        edges.append(
            GraphEdge(source=r["member"], target=node_id, type=r["rel"], count=r["count"], amount=r["amount"])
        )
        if r["first_seen"] is not None:
            first_seen.append(int(r["first_seen"]))
    for (label, node), users in sharing.items():
        node_id = handle(label, str(node))
        if node_id in nodes and label != "User":
            nodes[node_id].members_sharing = len(users)
    reasons: list[Reason] = []
    shared = sorted(
        ((len(u), lab) for (lab, _), u in sharing.items() if len(u) >= 2 and lab not in ("User", "Merchant")),
        reverse=True,
    )
    for n, label in shared[:3]:
        reasons.append(Reason(code=f"shared_{label.lower()}", text=f"{n} members share one {label.lower()}"))
    transfers = [e for e in edges if e.type == "TRANSFERRED_TO"]
    if transfers:
        reasons.append(Reason(code="internal_transfers", text=f"{len(transfers)} transfers between members"))
        flow = nx.DiGraph((e.source, e.target) for e in transfers)
        # Money that comes back to where it started: a strongly connected group of 2+ members.
        loop = max(nx.strongly_connected_components(flow), key=len)
        if len(loop) >= 2:
            reasons.append(Reason(code="transfer_cycle",
                                  text=f"money circulates among {len(loop)} members (a transfer cycle)"))  # fmt: skip
    if len(first_seen) >= 2:
        spread_h = (max(first_seen) - min(first_seen)) / HOUR_MS
        reasons.append(
            Reason(code="creation_velocity", text=f"members' links all made within {spread_h:.1f} hours")
        )
    state.audit.append(caller.name, caller.role.value, "read_ring", ring_id, {"members": len(members)})
    return RingDetail(**ring.model_dump(),
                      members=[{"id": m, "score": (snap.scores[m].score if m in snap.scores else None)} for m in members],
                      nodes=list(nodes.values()), edges=edges, reasons=reasons)  # fmt: skip


@router.post("/{ring_id}/decision", response_model=DecisionOut, status_code=status.HTTP_201_CREATED,
             responses=error_responses(*BODY_ERRORS, 404, *V1_ERRORS))  # fmt: skip
def decide(ring_id: str, body: DecisionIn, state: State, caller: Investigator) -> DecisionOut:
    """Record confirmed fraud / false positive / needs more information on a ring, with a note.

    The verdict labels every member the ring has now, with the ring's id and typology (the
    body's, else the ring's typology guess); the next ``graphrisk train`` merges those labels
    with the earlier ones. Stored with the investigator's name and audited.
    """
    snap = state.snapshot
    ring = snap.ring_by_id(ring_id)
    members = sorted(snap.members_of(ring_id))
    assert state.decisions is not None
    record = state.decisions.record(
        "ring", ring_id, body.decision, body.note, caller.investigator, caller.name, members,
        ring_id=ring_id, typology=body.typology or snap.ring_typology.get(ring_id), score=ring.score,
        model_version=ring.model_version,
    )  # fmt: skip
    state.audit.append(caller.name, caller.role.value, "ring_decision", ring_id,
                       {"decision": record.decision, "decision_id": record.id, "members": len(members),
                        "investigator": record.investigator, "typology": record.typology})  # fmt: skip
    return decision_out(record)
