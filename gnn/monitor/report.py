"""``graphrisk monitor report``: an HTML page with PNG charts of one monitoring run and its history.

Charts: features ranked by PSI (threshold marked), families, the score distribution against
training, band shares and score PSI over time, and served-vs-batch skew when measured.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and in tests
import matplotlib.pyplot as plt
import pandas as pd

from gnn.monitor.run import MonitorResult


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _feature_chart(result: MonitorResult, out: Path, psi_alert: float, top: int) -> str | None:
    if result.features is None or not len(result.features):
        return None
    t = result.features.dropna(subset=["psi"]).head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.22 * len(t) + 1)))
    colours = ["#c0392b" if v >= psi_alert else "#2c7fb8" for v in t["psi"]]
    ax.barh(t["feature"], t["psi"], color=colours)
    ax.axvline(psi_alert, color="#c0392b", linestyle="--", linewidth=1, label=f"alert {psi_alert}")
    ax.set_xlabel("PSI vs training (decile bins)")
    ax.set_title(f"Feature drift, top {len(t)} of {len(result.features)} ({result.point} model)")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right")
    return _save(fig, out / "feature_drift.png")


def _family_chart(result: MonitorResult, out: Path, psi_alert: float) -> str | None:
    if result.families is None or not len(result.families):
        return None
    t = result.families.dropna(subset=["psi_max"]).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.25 * len(t) + 1)))
    ax.barh(t["family"], t["psi_max"], color="#7fa7c9", label="largest PSI")
    ax.barh(t["family"], t["psi_mean"], color="#2c7fb8", label="mean PSI")
    ax.axvline(psi_alert, color="#c0392b", linestyle="--", linewidth=1)
    ax.set_xlabel("PSI")
    ax.set_title("Drift per feature family")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(loc="lower right")
    return _save(fig, out / "family_drift.png")


def _score_chart(result: MonitorResult, out: Path) -> str | None:
    if result.score_hist is None or result.prediction is None:
        return None
    h = result.score_hist
    p = result.prediction
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    pos = range(len(h))
    a1.bar([i - 0.2 for i in pos], h["reference"], width=0.4, label="training", color="#999999")
    a1.bar([i + 0.2 for i in pos], h["current"], width=0.4, label="now", color="#2c7fb8")
    a1.set_xticks(list(pos), [f"{v:.2g}" for v in h["from"]], rotation=45, fontsize=7)
    a1.set_xlabel("score bin (training deciles, lower edge)")
    a1.set_ylabel("share of users")
    a1.set_title(f"Score distribution (PSI {p.score_psi:.3f})")
    a1.legend()
    bands = list(p.band_shares)
    a2.bar([i - 0.2 for i in range(len(bands))], [p.band_shares_ref.get(b, 0) for b in bands], width=0.4,
           color="#999999", label="training")  # fmt: skip
    a2.bar([i + 0.2 for i in range(len(bands))], [p.band_shares[b] for b in bands], width=0.4,
           color="#2c7fb8", label="now")  # fmt: skip
    a2.set_xticks(range(len(bands)), bands)
    a2.set_yscale("log")
    a2.set_title("Share of users per band")
    a2.legend()
    return _save(fig, out / "scores.png")


def _history_chart(history: list[dict[str, Any]], out: Path) -> str | None:
    rows = [h for h in history if "prediction" in h]
    if len(rows) < 2:
        return None
    t = pd.to_datetime([h["at_ms"] for h in rows], unit="ms")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    a1.plot(t, [h["prediction"]["score_psi"] for h in rows], marker="o", label="score PSI")
    a1.plot(t, [h.get("features", {}).get("psi_max", float("nan")) for h in rows], marker="o",
            label="largest feature PSI")  # fmt: skip
    a1.set_title("Drift over time")
    a1.legend()
    for band in ("review", "block"):
        a2.plot(t, [h["prediction"]["band_shares"].get(band, 0.0) for h in rows], marker="o", label=band)
    a2.set_title("Band shares over time")
    a2.legend()
    fig.autofmt_xdate()
    return _save(fig, out / "history.png")


def _skews(result: MonitorResult) -> dict[str, Any]:
    return getattr(result, "skews", None) or ({"served": result.skew} if result.skew is not None else {})


def _skew_chart(result: MonitorResult, out: Path, top: int) -> list[str]:
    """One bar chart per comparison (served applicant rows, known users' online rows)."""
    paths = []
    for name, report in _skews(result).items():
        if not len(report.table):
            continue
        t = report.table.head(top).iloc[::-1]
        fig, ax = plt.subplots(figsize=(8, max(3.0, 0.22 * len(t) + 1)))
        ax.barh(t["feature"], t["mismatch_rate"], color="#d95f0e")
        ax.set_xlabel("share of users whose served value differs from the batch value")
        ax.set_title(f"Training-serving skew, {name.replace('_', ' ')} rows ({report.users} users, "
                     f"{report.rows_mismatched:.1%} with a difference)")  # fmt: skip
        ax.tick_params(axis="y", labelsize=7)
        paths.append(_save(fig, out / f"skew-{name}.png"))
    return paths


def _skew_tables(result: MonitorResult) -> str:
    named = _skews(result)
    if not named:
        return "<p>not measured</p>"
    return "".join(
        f"<h3>{html.escape(name.replace('_', ' '))} rows: {r.users} users compared, {r.only_online} served "
        f"without a batch row yet, {r.rows_mismatched:.2%} of rows with a difference</h3>{_table(r.table)}"
        for name, r in named.items()
    )


def _table(frame: pd.DataFrame | None, rows: int = 30) -> str:
    if frame is None or not len(frame):
        return "<p>not measured</p>"
    return frame.head(rows).to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)


def write_report(
    result: MonitorResult,
    out_dir: Path,
    history: list[dict[str, Any]] | None = None,
    psi_alert: float = 0.2,
    top: int = 30,
) -> Path:
    """Write ``index.html`` and its PNG charts under ``out_dir``; returns the HTML's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    charts = [c for c in (
        _feature_chart(result, out, psi_alert, top), _family_chart(result, out, psi_alert), _score_chart(result, out),
        _history_chart(history or [], out),
    ) if c] + _skew_chart(result, out, top)  # fmt: skip
    alarms = "".join(
        f"<li><b>{html.escape(a.kind)}</b> {html.escape(a.subject)}: {a.value:.4g} (threshold {a.threshold:.4g})</li>"
        for a in result.alarms[:100]
    )
    graph = html.escape(str(result.graph.to_dict())) if result.graph is not None else "not measured"
    ring = html.escape(str(result.ring_check.to_dict())) if result.ring_check is not None else "not measured"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>graphrisk monitoring</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:2px 8px;font-size:12px}}
img{{max-width:100%}}</style></head><body>
<h1>graphrisk monitoring: model {html.escape(result.version)} ({html.escape(result.point)})</h1>
<p>Run at {pd.Timestamp(result.at_ms, unit="ms").isoformat()} UTC.</p>
<h2>Alarms ({len(result.alarms)})</h2><ul>{alarms or "<li>none</li>"}</ul>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
{"".join(f'<p><img src="{c}" alt="{c}"></p>' for c in charts)}
<h2>Features, ranked by PSI</h2>{_table(result.features)}
<h2>Families</h2>{_table(result.families, 100)}
<h2>Label drift (fraud rate by onboarding day)</h2>{_table(result.labels, 100)}
<h2>Training-serving skew</h2>{_skew_tables(result)}
<h2>Graph structure</h2><pre>{graph}</pre>
<h2>Ring model inputs</h2><pre>{ring}</pre>
</body></html>"""
    path = out / "index.html"
    path.write_text(body)
    return path
