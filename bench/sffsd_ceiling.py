"""How much of S-FFSD's average precision the protocol's hidden labels hold.

The S-FFSD protocol trains on 40 % of the labelled transactions and hides the other 60 %. Our
label features (:func:`gnn.features.history_label_features`) read only *earlier training*
transactions. This benchmark runs the same GBDT twice on the same splits:

- ``protocol``: label features from earlier training transactions (what ``bench/quality.py``
  reports);
- ``all_earlier``: label features from *every* earlier labelled transaction, test ones
  included. That is the information a production system would have if each label arrived the
  moment its transaction ended. It breaks the protocol on purpose and is never a result: it
  bounds what any feature or model can gain from labels it cannot see.

A scored transaction never reads its own label or a later one in either run. Example::

    python bench/sffsd_ceiling.py --seeds 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quality import SFFSD_TABULAR  # noqa: E402
from gnn.data import load_sffsd  # noqa: E402
from gnn.data.dataset import NodeDataset  # noqa: E402
from gnn.evaluate import evaluate_dataset  # noqa: E402
from gnn.models import make_model  # noqa: E402
from gnn.models.gbdt import GBDTScorer  # noqa: E402


class AllEarlierLabels(GBDTScorer):
    """The protocol GBDT, except that label features read every labelled row (still only
    rows strictly earlier than the scored one)."""

    name = "gbdt_all_earlier"

    def _features(self, dataset: NodeDataset, label_mask: np.ndarray) -> tuple[np.ndarray, list[str]]:
        return super()._features(dataset, dataset.y >= 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    ds = load_sffsd(args.data_dir / "sffsd" / "S-FFSD.csv", seeds=list(range(args.seeds)))
    t0 = time.perf_counter()
    report = evaluate_dataset(
        ds,
        {
            "protocol": lambda s: make_model("gbdt", s, features=SFFSD_TABULAR, n_jobs=args.threads),
            "all_earlier": lambda s: AllEarlierLabels(features=SFFSD_TABULAR, seed=s, n_jobs=args.threads),
        },
        log=print,
    )
    print(f"{'labels read':<14} {'AUROC':>15} {'AUPRC':>15}")
    for name, label in (("protocol", "training only"), ("all_earlier", "every earlier")):
        s = report["models"][name]["summary"]
        print(
            f"{label:<14} {100 * s['auroc']['mean']:8.2f} ± {100 * s['auroc']['std']:.2f}"
            f" {100 * s['auprc']['mean']:8.2f} ± {100 * s['auprc']['std']:.2f}"
        )
    print(f"(mean ± std over {args.seeds} seeds, in %; {time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
