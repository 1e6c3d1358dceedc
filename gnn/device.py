"""Pick the torch device once, so every module agrees on where tensors live."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def get_device(prefer: str | None = None) -> torch.device:
    """Return ``prefer`` if given, else CUDA when available, else CPU.

    Args:
        prefer: An explicit device string (``"cpu"``, ``"cuda:1"``); overrides detection.
            ``"auto"`` (the CLI's default) means detection, as ``None`` does.
    """
    if prefer is not None and prefer != "auto":
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(option: str) -> str | None:
    """A CLI ``--device`` value as a scorer's ``device`` argument (``None``: auto-detect).

    Raises:
        ValueError: an unknown choice, or ``cuda`` on a host without CUDA.
    """
    if option not in DEVICE_CHOICES and not option.startswith("cuda:"):
        raise ValueError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {option!r}")
    if option.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available on this host")
    return None if option == "auto" else option


def move_scorer(scorer: Any, device: str | torch.device | None, _seen: set[int] | None = None) -> Any:
    """Move every torch module a fitted scorer holds (GNN modules, nested scorers' too) to
    ``device`` (``None``: auto), for batch scoring there; returns ``scorer``.

    Pickles stay device-independent (:meth:`gnn.models.train.GNNScorer.__getstate__` saves a
    CPU copy), so a model moved to a GPU for scoring still loads on a host without CUDA.
    """
    dev = get_device(None if device is None else str(device))
    seen = set() if _seen is None else _seen
    if id(scorer) in seen:
        return scorer
    seen.add(id(scorer))
    for value in list(vars(scorer).values()) if hasattr(scorer, "__dict__") else []:
        if isinstance(value, nn.Module):
            value.to(dev)
        elif isinstance(value, list | tuple):
            for item in value:
                if hasattr(item, "__dict__") and not isinstance(item, torch.Tensor):
                    move_scorer(item, dev, seen)
        elif hasattr(value, "__dict__") and type(value).__module__.startswith("gnn."):
            move_scorer(value, dev, seen)
    return scorer
