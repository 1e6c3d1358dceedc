"""Feature families for drift roll-ups.

The families are those of :mod:`gnn.feature_registry` (``degree``, ``shared_max``, ``via_mean``…),
which name every feature the risk models read. A name it does not know (a new column, a ring
feature) falls back to its prefix: the text before the first ``_`` (``score_mean`` -> ``score``).
"""

from __future__ import annotations

from functools import lru_cache

try:
    from gnn.feature_registry import describe as _describe
except ImportError:  # the registry is optional here: prefixes still group features
    _describe = None


@lru_cache(maxsize=65_536)
def family_of(feature: str) -> str:
    """The family of ``feature``: its feature-registry family, else its name's prefix."""
    if _describe is not None:
        d = _describe(feature)
        if d is not None:
            return d.family
    return prefix_family(feature)


def prefix_family(feature: str) -> str:
    """The text before the first ``_`` (or before the first ``.``), or the whole name."""
    head = feature.split(".", 1)[0]
    return head.split("_", 1)[0] if "_" in head.strip("_") else head
