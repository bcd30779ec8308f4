"""Per-clip random draws on the device from one ``torch.Generator`` (the augmentation's only source of randomness)."""

from __future__ import annotations

import torch


def uniform(shape, low, high, gen, device) -> torch.Tensor:
    """Uniform draws in [low, high) of ``shape``."""
    return low + (high - low) * torch.rand(shape, generator=gen, device=device)


def coin(n: int, p: float, gen, device) -> torch.Tensor:
    """``n`` coin tosses, each True with probability ``p``."""
    return torch.rand(n, generator=gen, device=device) < p


def waves(
    shape: tuple[int, ...], count: int, amplitude: torch.Tensor, slow_freq, fast_freq, gen, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TAPNext++'s random sinusoids: for each entry of ``shape``, ``count`` slow and then ``count`` fast ones.

    ``amplitude`` [..., 2] (broadcast against ``shape``) holds the largest amplitude of a slow and of a fast sinusoid:
    each amplitude is drawn uniform in [0, that], each angular frequency uniform in ``slow_freq`` or ``fast_freq``
    times pi, each phase uniform in [0, 2 pi). Returns (amplitude, angular frequency, phase), each [*shape, 2 * count].
    """
    full = (*shape, 2, count)
    amp = torch.rand(full, generator=gen, device=device) * amplitude.to(device)[..., None]
    low = torch.tensor([slow_freq[0], fast_freq[0]], device=device)[:, None]
    high = torch.tensor([slow_freq[1], fast_freq[1]], device=device)[:, None]
    omega = (low + (high - low) * torch.rand(full, generator=gen, device=device)) * torch.pi
    phase = torch.rand(full, generator=gen, device=device) * (2 * torch.pi)
    return amp.flatten(-2), omega.flatten(-2), phase.flatten(-2)


def wave_signal(amplitude: torch.Tensor, omega: torch.Tensor, phase: torch.Tensor, frames: int) -> torch.Tensor:
    """[..., frames]: sum over the last axis of ``a * (sin(omega * t + phase) - sin(phase))`` at ``t = frame / frames``
    (TAPNext++'s law: 0 on the first frame; ``t`` stops one step short of 1 on the last)."""
    t = torch.arange(frames, device=amplitude.device, dtype=amplitude.dtype) / frames
    wave = torch.sin(omega[..., None] * t + phase[..., None]) - torch.sin(phase)[..., None]
    return (amplitude[..., None] * wave).sum(-2)
