"""Per-clip random draws on the device from one ``torch.Generator`` (the augmentation's only source of randomness)."""

from __future__ import annotations

import torch


def uniform(shape, low, high, gen, device) -> torch.Tensor:
    """Uniform draws in [low, high) of ``shape``."""
    return low + (high - low) * torch.rand(shape, generator=gen, device=device)


def coin(n: int, p: float, gen, device) -> torch.Tensor:
    """``n`` coin tosses, each True with probability ``p``."""
    return torch.rand(n, generator=gen, device=device) < p
