"""Pick the torch device once, so every module agrees on where tensors live."""

from __future__ import annotations

import torch


def get_device(prefer: str | None = None) -> torch.device:
    """Return ``prefer`` if given, else CUDA when available, else CPU.

    Args:
        prefer: An explicit device string (``"cpu"``, ``"cuda:1"``); overrides detection.
    """
    if prefer is not None:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
