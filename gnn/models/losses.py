"""Losses for rare positives: class-weighted BCE and focal loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_bce(logits: torch.Tensor, y: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Binary cross-entropy with positives weighted ``pos_weight`` (e.g. negatives/positives)."""
    return F.binary_cross_entropy_with_logits(logits, y, pos_weight=torch.tensor(pos_weight))


def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    r"""Focal loss (Lin et al., 2017, https://arxiv.org/abs/1708.02002).

    .. math::
        \mathcal{L} = -\alpha_t (1 - p_t)^{\gamma} \log p_t

    Easy, confident nodes weigh less, so the rare hard positives drive training.
    """
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    p_t = torch.exp(-bce)
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return (alpha_t * (1 - p_t) ** gamma * bce).mean()
