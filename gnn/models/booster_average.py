"""One LightGBM booster that scores the mean of several boosters' raw scores.

Boosters fitted on the same rows with different seeds (their bagging and column samples differ)
disagree more than their quality does: on the replayed onboarding rows, the seed alone moved the
recall of late ring members by 0.08. Their mean is steadier and ranks better. Kept as *one*
booster, so everything downstream (calibration, the tree SHAP reasons, pickling in the registry)
sees a plain ``lgb.Booster``: the trees of all boosters, each leaf and internal value divided by
their number. Raw scores, and so TreeSHAP contributions, are linear in those values.
"""

from __future__ import annotations

import re
from itertools import pairwise

import lightgbm as lgb

_TREE = re.compile(r"^Tree=\d+\n", flags=re.MULTILINE)
_SCALED = ("leaf_value=", "internal_value=")


class BoosterMismatchError(ValueError):
    """Boosters that do not read the same columns (or are not single-output) cannot be averaged."""


def average_boosters(boosters: list[lgb.Booster]) -> lgb.Booster:
    """A booster whose raw score is the mean of ``boosters``' raw scores, for every row.

    Each booster is taken as it is (truncate it to its best iteration first). The header and
    parameters are the first booster's; the feature-importance block is left out (it would
    describe the first booster only).

    Raises:
        BoosterMismatchError: the boosters read different features, or predict several classes.
        ValueError: no boosters.
    """
    if not boosters:
        raise ValueError("no boosters to average")
    if len(boosters) == 1:
        return boosters[0]
    texts = [b.model_to_string() for b in boosters]
    headers, blocks = [], []
    for text in texts:
        head, trees = _split(text)
        headers.append(head)
        blocks.extend(trees)
    if any(_features(h) != _features(headers[0]) for h in headers):
        raise BoosterMismatchError("boosters read different features; fit them on the same rows")
    if "num_tree_per_iteration=1\n" not in headers[0]:
        raise BoosterMismatchError("only single-output boosters (binary, regression) can be averaged")
    k = float(len(boosters))
    merged = [f"Tree={i}\n" + _scale(block, k) for i, block in enumerate(blocks)]
    # tree_sizes would describe the first booster's trees; without it LightGBM reads the trees
    # one after another.
    header = re.sub(r"^tree_sizes=.*\n", "", headers[0], flags=re.MULTILINE)
    tail = texts[0][texts[0].index("end of trees") :]
    tail = re.sub(r"feature_importances:\n(?:.+\n)*\n", "", tail)
    return lgb.Booster(model_str=header + "".join(merged) + tail)


def _split(text: str) -> tuple[str, list[str]]:
    end = text.index("end of trees")
    starts = [m.start() for m in _TREE.finditer(text, 0, end)]
    if not starts:
        raise BoosterMismatchError("a booster has no trees")
    bounds = [*starts, end]
    blocks = [text[a:b].split("\n", 1)[1] for a, b in pairwise(bounds)]
    return text[: starts[0]], blocks


def _features(header: str) -> str:
    found = re.search(r"^feature_names=.*$", header, flags=re.MULTILINE)
    return found.group(0) if found else ""


def _scale(block: str, k: float) -> str:
    lines = block.split("\n")
    for i, line in enumerate(lines):
        for key in _SCALED:
            if line.startswith(key):
                values = line[len(key) :].split(" ")
                lines[i] = key + " ".join(repr(float(v) / k) for v in values if v)
    return "\n".join(lines)
