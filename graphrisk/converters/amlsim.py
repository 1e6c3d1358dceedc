"""IBM AMLSim simulations (``nodes.csv`` + ``transactions.csv``) as v1 P2P payment events.

``nodes.csv``: ``nodeid,isFraud,init_balance,fraudStep``; ``transactions.csv``:
``sourceNodeId,targetNodeId,value,time``. Labels are per account; there are no ring ids.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from graphrisk.converters.report import (
    DEFAULT_START,
    ConversionReport,
    check_start,
    prepare_out_dir,
    write_manifest,
)
from graphrisk.eventfiles import write_partitioned

# AMLSim advances its accounts one step at a time and its samples run 149 steps, which its
# configuration describes as days; a day per step keeps the patterns' pacing (a cycle spread
# over some days) and puts each step's transfers in one partition. Transfers within a step have
# no order in AMLSim, so they share the step's timestamp.
STEP_MS = 86_400_000


def _account(ids: pd.Series) -> pa.Array:
    return pc.binary_join_element_wise(
        "acct-", pc.cast(pa.array(ids.to_numpy(dtype=np.int64)), pa.string()), ""
    )


def convert_amlsim(
    sim_dir: Path, out_dir: Path, start: datetime = DEFAULT_START, *, overwrite: bool = False
) -> ConversionReport:
    """Write one AMLSim simulation as hourly P2P payment event files plus account labels.

    Each transfer becomes a payment with ``user_id`` = ``acct-<sourceNodeId>``,
    ``counterparty_id`` = ``acct-<targetNodeId>``, ``amount`` = value in EUR, ``time`` =
    ``start`` + time days, ``event_id`` = ``amlsim-<row>``. Self-transfers (source = target)
    are written unchanged and counted in ``expected_invalid``: the schema rejects them, so the
    pipeline dead-letters them.

    Labels go to ``out_dir/labels/users.parquet`` (user_id, is_fraud, fraud_step; fraud_step is
    null where AMLSim gives -1).

    Raises:
        ValueError: if the files lack AMLSim's columns.
        FileExistsError: if ``out_dir`` holds events of another source and ``overwrite`` is false.
    """
    sim_dir, out_dir = Path(sim_dir), Path(out_dir)
    start_ms = check_start(start)
    nodes = pd.read_csv(sim_dir / "nodes.csv")
    tx = pd.read_csv(sim_dir / "transactions.csv")
    for frame, cols, name in (
        (nodes, {"nodeid", "isFraud", "fraudStep"}, "nodes.csv"),
        (tx, {"sourceNodeId", "targetNodeId", "value", "time"}, "transactions.csv"),
    ):
        if not cols <= set(frame.columns):
            raise ValueError(f"{sim_dir / name} lacks AMLSim columns {sorted(cols - set(frame.columns))}")
    prepare_out_dir(out_dir, overwrite, "amlsim")

    n = len(tx)
    amount = tx["value"].to_numpy(dtype=np.float64)
    events = pa.table(
        {
            "event_id": pc.binary_join_element_wise(
                "amlsim-", pc.cast(pa.array(np.arange(n)), pa.string()), ""
            ),
            "event_type": pa.array(["payment"] * n, pa.string()),
            "schema_version": pa.array(np.ones(n, dtype=np.int64)),
            "user_id": _account(tx["sourceNodeId"]),
            "time": pa.array(start_ms + tx["time"].to_numpy(dtype=np.int64) * STEP_MS),
            "amount": pa.array(amount),
            "currency": pa.array(["EUR"] * n, pa.string()),
            "counterparty_id": _account(tx["targetNodeId"]),
        }
    )
    files = write_partitioned(events, out_dir, "parquet")

    is_fraud = nodes["isFraud"].to_numpy(dtype=np.int8)
    step = nodes["fraudStep"].to_numpy(dtype=np.int64)
    pq.write_table(
        pa.table(
            {
                "user_id": _account(nodes["nodeid"]),
                "is_fraud": pa.array(is_fraud),
                "fraud_step": pa.array(step, mask=step < 0),
            }
        ),
        out_dir / "labels" / "users.parquet",
    )
    report = ConversionReport(
        source=sim_dir,
        out_dir=out_dir,
        rows=n,
        events=events.num_rows,
        expected_invalid={
            "self_transfer": int(np.sum(tx["sourceNodeId"].to_numpy() == tx["targetNodeId"].to_numpy())),
            "non_positive_amount": int(np.sum(~(amount > 0))),
        },
        labels={"fraud": int(is_fraud.sum()), "legit": int(len(is_fraud) - is_fraud.sum())},
        partitions=len(files),
        files=files,
    )
    write_manifest(report, "amlsim", start, step_ms=STEP_MS)
    return report
