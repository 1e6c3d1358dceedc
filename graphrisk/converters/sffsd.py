"""S-FFSD (AI4Risk ``antifraud``) card transactions as v1 payment events.

``S-FFSD.csv`` has ``Time,Source,Target,Amount,Location,Type,Labels``: Source is the
cardholder, Target the merchant, Type the merchant type, Labels 1 fraud / 0 legitimate /
2 unlabelled.
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

COLUMNS = ("Time", "Source", "Target", "Amount", "Location", "Type", "Labels")
# ``Time`` is 0..77,880 with every value once, in file order: a sequence number, not a clock.
# One second per step keeps the order and gives a plausible network-wide rate (one payment a
# second, about 22 hourly partitions); a minute per step would stretch it over 54 days in 1,300
# near-empty partitions.
STEP_MS = 1_000


def convert_sffsd(
    csv_path: Path, out_dir: Path, start: datetime = DEFAULT_START, *, overwrite: bool = False
) -> ConversionReport:
    """Write S-FFSD transactions as hourly payment event files plus per-transaction labels.

    Each row becomes a card payment: ``user_id`` = Source, ``merchant_id`` = Target,
    ``merchant_category`` = Type, ``amount`` = Amount in EUR, ``time`` = ``start`` + Time
    seconds, ``event_id`` = ``sffsd-<row>``. Rows with Amount <= 0 (6,812, mostly labelled
    legitimate) are written unchanged and counted in ``expected_invalid``: the event schema
    rejects them, so the pipeline dead-letters them. Location has no place in the event schema
    and is dropped; the GNN benchmarks read it from the original CSV.

    Labels go to ``out_dir/labels/transactions.parquet`` (event_id, label: 1 fraud, 0 legit,
    2 unlabelled).

    Raises:
        ValueError: if the CSV lacks the S-FFSD columns.
        FileExistsError: if ``out_dir`` holds events of another source and ``overwrite`` is false.
    """
    csv_path, out_dir = Path(csv_path), Path(out_dir)
    start_ms = check_start(start)
    df = pd.read_csv(csv_path, dtype={"Source": str, "Target": str, "Location": str, "Type": str})
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{csv_path} is not S-FFSD: missing columns {sorted(missing)}")
    prepare_out_dir(out_dir, overwrite, "sffsd")

    n = len(df)
    event_id = pc.binary_join_element_wise("sffsd-", pc.cast(pa.array(np.arange(n)), pa.string()), "")
    amount = df["Amount"].to_numpy(dtype=np.float64)
    events = pa.table(
        {
            "event_id": event_id,
            "event_type": pa.array(["payment"] * n, pa.string()),
            "schema_version": pa.array(np.ones(n, dtype=np.int64)),
            "user_id": pa.array(df["Source"], pa.string()),
            "time": pa.array(start_ms + df["Time"].to_numpy(dtype=np.int64) * STEP_MS),
            "amount": pa.array(amount),
            "currency": pa.array(["EUR"] * n, pa.string()),
            "merchant_id": pa.array(df["Target"], pa.string()),
            "merchant_category": pa.array(df["Type"], pa.string()),
        }
    )
    files = write_partitioned(events, out_dir, "parquet")

    labels = df["Labels"].to_numpy(dtype=np.int8)
    pq.write_table(
        pa.table({"event_id": event_id, "label": pa.array(labels)}),
        out_dir / "labels" / "transactions.parquet",
    )
    values, counts = np.unique(labels, return_counts=True)
    names = {1: "fraud", 0: "legit", 2: "unlabelled"}
    report = ConversionReport(
        source=csv_path,
        out_dir=out_dir,
        rows=n,
        events=events.num_rows,
        expected_invalid={"non_positive_amount": int(np.sum(~(amount > 0)))},
        labels={names.get(int(v), str(int(v))): int(c) for v, c in zip(values, counts, strict=True)},
        partitions=len(files),
        files=files,
    )
    write_manifest(report, "sffsd", start, step_ms=STEP_MS)
    return report
