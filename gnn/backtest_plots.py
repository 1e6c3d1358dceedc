"""PNG plots of a backtest: detection times, money moved before detection, review load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from gnn.backtest import HOUR_MS, BacktestResult


def write_plots(report: dict[str, Any], result: BacktestResult, out_dir: Path) -> list[Path]:
    """Write the three plots under ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rings = pd.DataFrame(report.get("rings", {}).get("rings", []))
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4))
    if len(rings):
        for typ, part in rings.groupby("typology"):
            hours = part["hours_from_first_onboarding"].dropna().to_numpy()
            if len(hours):
                ax.hist(hours, bins=20, alpha=0.6, label=str(typ))
        ax.legend()
    paths.append(_save(fig, ax, out_dir / "detection_time.png", "hours from the ring's first onboarding to detection",
                       "rings", "Detection time (replayed, hourly refreshes)"))  # fmt: skip

    fig, ax = plt.subplots(figsize=(7, 4))
    if len(rings):
        share = rings["money_out_before"] / rings["money_out_total"].where(rings["money_out_total"] > 0)
        for typ, part in rings.assign(share=share).groupby("typology"):
            ax.scatter(part["money_out_total"], part["share"], label=str(typ), alpha=0.7)
        ax.legend()
    paths.append(_save(fig, ax, out_dir / "money_before_detection.png",
                       "money moved out of the ring in the window (base currency)", "share moved before detection",
                       "Money out before detection"))  # fmt: skip

    fig, ax = plt.subplots(figsize=(9, 4))
    flagged = result.flagged_users
    if len(flagged):
        hour = flagged["hour"] // HOUR_MS * HOUR_MS
        load = flagged.groupby([hour, "point"]).size().unstack(fill_value=0)
        hours = (load.index.to_numpy() - result.first_cutoff) / HOUR_MS
        bottom = np.zeros(len(load))
        for point in load.columns:
            ax.bar(hours, load[point].to_numpy(), bottom=bottom, width=1.0, label=str(point))
            bottom += load[point].to_numpy()
        ax.legend()
    paths.append(_save(fig, ax, out_dir / "review_load.png", "hours after the first cut-off",
                       "users entering review or block", "Review load per hour"))  # fmt: skip
    return paths


def _save(fig: plt.Figure, ax: plt.Axes, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
