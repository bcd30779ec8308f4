"""Photometric changes of clips x [n,T,3,H,W] in [0,1]: colour jitter (tapnet's), Gaussian and motion blur, sensor
noise. Each draws its factors per clip, the same for every frame of the clip."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tapforge.train.augment_config import ColorConfig, NoiseConfig
from tapforge.train.draws import uniform


def gray(x: torch.Tensor) -> torch.Tensor:
    """[...,3,H,W] RGB -> [...,1,H,W] luma (ITU-R BT.601 weights)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(3, 1, 1)
    return (x * weights).sum(dim=-3, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """[...,3,H,W] RGB in [0,1] -> HSV with hue in [0,1)."""
    r, g, b = x.unbind(-3)
    maxc, _ = x.max(dim=-3)
    minc, _ = x.min(dim=-3)
    delta = maxc - minc
    safe = delta.clamp_min(1e-12)
    hue = torch.where(maxc == r, (g - b) / safe, torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    return torch.stack([hue, sat, maxc], dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv` (the closed form f(n) = v - v s clamp(min(k, 4 - k), 0, 1))."""
    h, s, v = x.unbind(-3)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (n + h * 6.0) % 6.0
        channels.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(channels, dim=-3)


def color_jitter(x: torch.Tensor, config: ColorConfig, gen) -> torch.Tensor:
    """x [n,T,3,H,W]: brightness, saturation, contrast, hue (tapnet's order), then clip to [0,1]."""
    n, device = x.shape[0], x.device
    shape = (n, 1, 1, 1, 1)
    x = x + uniform(shape, -config.brightness, config.brightness, gen, device)
    luma = gray(x)
    x = luma + uniform(shape, *config.saturation, gen, device) * (x - luma)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    x = mean + uniform(shape, *config.contrast, gen, device) * (x - mean)
    x = x.clamp(0, 1)
    if config.hue > 0:
        hsv = rgb_to_hsv(x)
        shift = uniform((n, 1, 1, 1), -config.hue, config.hue, gen, device)
        hsv = torch.stack([hsv[:, :, 0] + shift, hsv[:, :, 1], hsv[:, :, 2]], dim=2)
        x = hsv_to_rgb(hsv)
    return x.clamp(0, 1)


def _grouped_conv(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each clip of x [n,T,C,H,W] with its own kernel [n,kh,kw] (same padding, reflect)."""
    n, frames, channels, height, width = x.shape
    kh, kw = kernels.shape[-2:]
    flat = x.reshape(1, n * frames * channels, height, width)
    weight = kernels[:, None, None].expand(n, frames * channels, 1, kh, kw).reshape(-1, 1, kh, kw)
    pad = (kw // 2, kw // 2, kh // 2, kh // 2)
    mode = "reflect" if kh // 2 < height and kw // 2 < width else "replicate"
    out = F.conv2d(F.pad(flat, pad, mode=mode), weight.to(x.dtype), groups=n * frames * channels)
    return out.reshape(n, frames, channels, height, width)


def gaussian_blur(x: torch.Tensor, sigma_range: tuple[float, float], gen) -> torch.Tensor:
    """Separable Gaussian blur of x [n,T,3,H,W], sigma (pixels) drawn per clip from ``sigma_range``."""
    n, device = x.shape[0], x.device
    sigma = uniform(n, *sigma_range, gen, device).clamp_min(1e-3)
    radius = max(1, math.ceil(3 * sigma_range[1]))
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    k1 = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    k1 = k1 / k1.sum(dim=1, keepdim=True)
    x = _grouped_conv(x, k1[:, :, None])
    return _grouped_conv(x, k1[:, None, :])


def motion_kernels(length: torch.Tensor, angle: torch.Tensor, size: int) -> torch.Tensor:
    """Line kernels [n,size,size]: a centred streak of ``length`` pixels at ``angle`` radians."""
    device = length.device
    steps = 4 * size
    s = torch.linspace(-0.5, 0.5, steps, device=device)[None] * length[:, None]  # [n,S]
    px = size // 2 + s * torch.cos(angle)[:, None]
    py = size // 2 + s * torch.sin(angle)[:, None]
    grid = torch.arange(size, device=device, dtype=torch.float32)
    wx = (1 - (grid[None, None] - px[..., None]).abs()).clamp_min(0)  # [n,S,size]
    wy = (1 - (grid[None, None] - py[..., None]).abs()).clamp_min(0)
    kernels = torch.einsum("nsy,nsx->nyx", wy, wx)
    return kernels / kernels.sum(dim=(1, 2), keepdim=True)


def motion_blur(x: torch.Tensor, length_range: tuple[float, float], gen) -> torch.Tensor:
    """Linear motion blur of x [n,T,3,H,W]: a streak of a length from ``length_range`` and any direction, per clip."""
    n, device = x.shape[0], x.device
    length = uniform(n, *length_range, gen, device)
    angle = uniform(n, 0.0, math.pi, gen, device)
    size = 2 * math.ceil(length_range[1] / 2) + 1
    return _grouped_conv(x, motion_kernels(length, angle, size))


def sensor_noise(x: torch.Tensor, config: NoiseConfig, gen) -> torch.Tensor:
    """Gaussian read noise plus shot noise growing with the signal (sigma^2 = read^2 + shot^2 x), then clip to [0,1]."""
    n, device = x.shape[0], x.device
    read = uniform((n, 1, 1, 1, 1), *config.read_sigma, gen, device)
    shot = uniform((n, 1, 1, 1, 1), *config.shot_sigma, gen, device)
    sigma = torch.sqrt(read**2 + shot**2 * x.clamp_min(0))
    return (x + sigma * torch.randn(x.shape, generator=gen, device=device, dtype=x.dtype)).clamp(0, 1)
