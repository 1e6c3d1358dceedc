"""Snapshot tables straight from event files, with pandas: for benchmarks and quick evaluations.

The pipeline (``graphrisk refresh``) is the production path: it validates, pseudonymises and
writes the store. Ring evaluation on tens of thousands of users and the 1M-user benchmark only
need the snapshot *tables* (the same columns as :func:`pipelines.snapshot.load_snapshot`), so
this module builds them directly from the generator's Parquet events:

* events are deduplicated by ``event_id``; events whose identifiers do not normalise are dropped
  (the pipeline dead-letters them);
* with ``exact=True`` identifiers go through the pipeline's own normalisers
  (:mod:`graphrisk.normalise`), applied once per distinct raw value, so the same variants merge
  as in the store (ids are the normalised values, not keyed hashes: clustering only needs
  equality). ``exact=False`` uses a cheap canonical form (case-folded, separators removed) for
  speed at the 1M-user scale;
* amounts are converted to the base currency with the configured rates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads

from graphrisk.config import _DEFAULT_FX
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel, RelType
from graphrisk.normalise import (
    normalise_address,
    normalise_card,
    normalise_document,
    normalise_email,
    normalise_ip,
    normalise_phone,
)
from pipelines.snapshot import EDGE_COLUMNS, node_schema

_SEP = re.compile(r"[\s\-./,]+")


def _canon(s: pd.Series) -> pd.Series:
    return s.str.upper().str.replace(_SEP, "", regex=True)


def _per_unique(values: pd.Series, fn: Callable[[str], str]) -> pd.Series:
    """``fn`` applied once per distinct value; failures become NaN (the event is dropped)."""
    uniq = values.dropna().unique()
    out: dict[str, object] = {}
    for v in uniq:
        try:
            out[v] = fn(v)
        except Exception:
            out[v] = np.nan
    return values.map(out)


def read_events(events_dir: Path) -> pd.DataFrame:
    """All events under ``events_dir`` (Parquet partitions), one row per ``event_id``."""
    table = pads.dataset(str(events_dir), format="parquet", partitioning=None).to_table()
    df = table.to_pandas()
    return df.drop_duplicates("event_id", keep="first").reset_index(drop=True)


def _node_table(label: NodeLabel, ids: pd.Series, t: pd.Series) -> pd.DataFrame:
    g = pd.DataFrame({"id": ids.to_numpy(), "t": t.to_numpy()}).groupby("id", sort=True)["t"]
    df = pd.DataFrame({"first_seen": g.min(), "last_seen": g.max(), "event_count": g.size()})
    df = df.reset_index()
    for f in node_schema(label):
        if f.name not in df:
            df[f.name] = None
    return df[[f.name for f in node_schema(label)]]


def _edge_table(src: pd.Series, dst: pd.Series, t: pd.Series, amount: pd.Series | None) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "src": src.to_numpy(),
            "dst": dst.to_numpy(),
            "t": t.to_numpy(),
            "a": amount.to_numpy() if amount is not None else np.zeros(len(src)),
        }
    ).dropna(subset=["src", "dst"])
    out = df.groupby(["src", "dst"], sort=True, as_index=False).agg(
        count=("t", "size"), first_seen=("t", "min"), last_seen=("t", "max"),
        amount_total=("a", "sum"), amount_max=("a", "max"),
    )  # fmt: skip
    return out[list(EDGE_COLUMNS)]


def snapshot_from_events(
    events_dir: Path, exact: bool = True, fx_rates: dict[str, float] | None = None
) -> tuple[dict[NodeLabel, pd.DataFrame], dict[RelType, pd.DataFrame]]:
    """Node and edge tables in :func:`~pipelines.snapshot.load_snapshot`'s format."""
    ev = read_events(Path(events_dir))
    rates = fx_rates or dict(_DEFAULT_FX)
    typ = ev["event_type"]
    onb = ev[typ == "onboarding"]
    if exact:
        ids = {
            RelType.HAS_DOCUMENT: _per_unique(
                onb["document.type"]
                + "\x1f"
                + onb["document.number"]
                + "\x1f"
                + onb["document.issuing_country"],
                lambda v: normalise_document(*v.split("\x1f")).value,
            ),
            RelType.HAS_EMAIL: _per_unique(onb["email"], lambda v: normalise_email(v).value),
            RelType.HAS_PHONE: _per_unique(onb["phone"], lambda v: normalise_phone(v).value),
            RelType.LIVES_AT: _per_unique(
                onb["address.line1"]
                + "\x1f"
                + onb["address.city"]
                + "\x1f"
                + onb["address.postcode"].fillna("")
                + "\x1f"
                + onb["address.country"],
                lambda v: normalise_address(*v.split("\x1f")).value,
            ),
        }
    else:
        ids = {
            RelType.HAS_DOCUMENT: onb["document.type"] + ":" + _canon(onb["document.number"]),
            RelType.HAS_EMAIL: onb["email"].str.lower(),
            RelType.HAS_PHONE: onb["phone"].str.replace(r"\D", "", regex=True),
            RelType.LIVES_AT: _canon(onb["address.line1"] + onb["address.postcode"].fillna("")),
        }
    # An onboarding event whose identity fields fail normalisation is dropped whole, as the pipeline does.
    ok_onb = np.logical_and.reduce([s.notna().to_numpy() for s in ids.values()])
    dev_ip = ev[typ.isin(["onboarding", "login"])]
    ip = _per_unique(dev_ip["ip"], lambda v: normalise_ip(v).value) if exact else dev_ip["ip"]
    pay = ev[typ == "payment"]
    card = _per_unique(pay["card_number"], lambda v: normalise_card(v).value) if exact else pay["card_number"]
    rate = pay["currency"].map(rates)
    amount = (pay["amount"] * rate).round(4)
    ok_pay = rate.notna() & (pay["card_number"].isna() | card.notna())

    bad_onb = set(onb.index[~ok_onb])
    keep_dev = ip.notna() & ~dev_ip.index.isin(bad_onb)
    edges: dict[RelType, pd.DataFrame] = {}
    nodes: dict[NodeLabel, pd.DataFrame] = {}
    onb_ok = onb[ok_onb]
    for rel, vals in ids.items():
        v = vals[ok_onb]
        edges[rel] = _edge_table(onb_ok["user_id"], v, onb_ok["time"], None)
        nodes[EDGE_TYPES[rel].dst] = _node_table(EDGE_TYPES[rel].dst, v, onb_ok["time"])
    d = dev_ip[keep_dev]
    edges[RelType.USED_DEVICE] = _edge_table(d["user_id"], d["device.id"], d["time"], None)
    nodes[NodeLabel.DEVICE] = _node_table(NodeLabel.DEVICE, d["device.id"], d["time"])
    edges[RelType.USED_IP] = _edge_table(d["user_id"], ip[keep_dev], d["time"], None)
    nodes[NodeLabel.IP] = _node_table(NodeLabel.IP, ip[keep_dev], d["time"])
    p = pay[ok_pay]
    a = amount[ok_pay]
    is_m = p["merchant_id"].notna()
    edges[RelType.PAID] = _edge_table(p["user_id"][is_m], p["merchant_id"][is_m], p["time"][is_m], a[is_m])
    nodes[NodeLabel.MERCHANT] = _node_table(NodeLabel.MERCHANT, p["merchant_id"][is_m], p["time"][is_m])
    is_p = p["counterparty_id"].notna() & ~is_m
    edges[RelType.TRANSFERRED_TO] = _edge_table(
        p["user_id"][is_p], p["counterparty_id"][is_p], p["time"][is_p], a[is_p]
    )
    has_card = card[ok_pay].notna()
    edges[RelType.USED_CARD] = _edge_table(
        p["user_id"][has_card], card[ok_pay][has_card], p["time"][has_card], None
    )
    nodes[NodeLabel.CARD] = _node_table(NodeLabel.CARD, card[ok_pay][has_card], p["time"][has_card])

    kept = pd.concat([onb_ok[["user_id", "time"]], d[["user_id", "time"]], p[["user_id", "time"]]])
    users = _node_table(NodeLabel.USER, kept["user_id"], kept["time"])
    onboarded = onb_ok.groupby("user_id")["time"].min()
    users["onboarded_at"] = users["id"].map(onboarded).astype("Int64")
    nodes[NodeLabel.USER] = users
    return nodes, edges


def write_snapshot(
    nodes: dict[NodeLabel, pd.DataFrame], edges: dict[RelType, pd.DataFrame], snapshot_dir: Path
) -> None:
    """Write tables where :func:`~pipelines.snapshot.load_snapshot` finds them (``current/``)."""
    cur = Path(snapshot_dir) / "current"
    (cur / "nodes").mkdir(parents=True, exist_ok=True)
    (cur / "edges").mkdir(parents=True, exist_ok=True)
    for label, df in nodes.items():
        df.to_parquet(cur / "nodes" / f"{label.value}.parquet", index=False)
    for rel, df in edges.items():
        df.to_parquet(cur / "edges" / f"{rel.value}.parquet", index=False)


def amlsim_transfer_graph(
    directory: Path,
) -> tuple[dict[NodeLabel, pd.DataFrame], dict[RelType, pd.DataFrame], pd.DataFrame]:
    """An AMLSim folder as snapshot tables (users and transfers only) and ``user_id, is_fraud`` labels.

    AMLSim has accounts and transfers, no identifiers: rings show only in how money moves.
    ``time`` is a simulation step, used as hours.
    """
    directory = Path(directory)
    acc = pd.read_csv(directory / "nodes.csv")
    tx = pd.read_csv(directory / "transactions.csv")
    ids = acc["nodeid"].astype(str)
    t = tx["time"].astype(np.int64) * 3_600_000
    edges = {rel: pd.DataFrame(columns=list(EDGE_COLUMNS)) for rel in EDGE_TYPES}
    edges[RelType.TRANSFERRED_TO] = _edge_table(
        tx["sourceNodeId"].astype(str), tx["targetNodeId"].astype(str), t, tx["value"].astype(float)
    )
    nodes = {lab: pd.DataFrame(columns=[f.name for f in node_schema(lab)]) for lab in NodeLabel}
    both = pd.concat([tx["sourceNodeId"], tx["targetNodeId"]]).astype(str)
    users = _node_table(NodeLabel.USER, both, pd.concat([t, t]))
    users = pd.DataFrame({"id": ids}).merge(users, on="id", how="left")
    users[["first_seen", "last_seen", "event_count"]] = users[
        ["first_seen", "last_seen", "event_count"]
    ].fillna(0)
    users["onboarded_at"] = users["first_seen"]
    nodes[NodeLabel.USER] = users[[f.name for f in node_schema(NodeLabel.USER)]]
    labels = pd.DataFrame({"user_id": ids, "is_fraud": acc["isFraud"].astype(int)})
    return nodes, edges, labels
