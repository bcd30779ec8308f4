"""The augmentation's geometry: a crop window per frame that drifts and zooms smoothly over the clip, flips, and the
resampling of frames and tracks through it.

Tracks stay exact: they go through the same per-frame affine map as the pixels (raster convention, (0,0) = the
top-left corner of the top-left pixel), and the resampling filter is symmetric around each output pixel's centre,
so a linear ramp is reproduced exactly (see `resampling_weights`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tapforge.train.augment_config import AugmentConfig
from tapforge.train.draws import coin, uniform


def sample_windows(
    config: AugmentConfig, batch: int, frames: int, height: int, width: int, gen, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame crop windows: centres (cx, cy) and sizes (w, h), each [B,T], inside the frame."""
    crop = config.crop
    cropped = coin(batch, crop.p, gen, device)
    area = uniform(batch, *crop.area, gen, device)
    log_aspect = uniform(batch, math.log(crop.aspect[0]), math.log(crop.aspect[1]), gen, device)
    w0 = torch.where(cropped, torch.sqrt(area * log_aspect.exp()) * width, torch.full_like(area, width))
    h0 = torch.where(cropped, torch.sqrt(area / log_aspect.exp()) * height, torch.full_like(area, height))
    w0, h0 = w0.clamp(max=width), h0.clamp(max=height)
    cx0 = w0 / 2 + torch.rand(batch, generator=gen, device=device) * (width - w0)
    cy0 = h0 / 2 + torch.rand(batch, generator=gen, device=device) * (height - h0)

    drifting = cropped & coin(batch, crop.drift_p, gen, device)
    zoom = torch.exp(uniform(batch, math.log(crop.zoom[0]), math.log(crop.zoom[1]), gen, device))
    zoom = torch.minimum(zoom, torch.minimum(width / w0, height / h0))
    zoom = torch.where(drifting, zoom, torch.ones_like(zoom))
    w1, h1 = w0 * zoom, h0 * zoom
    shift = uniform((2, batch), -crop.drift, crop.drift, gen, device) * drifting
    cx1 = (cx0 + shift[0] * width).clamp(w1 / 2, width - w1 / 2)
    cy1 = (cy0 + shift[1] * height).clamp(h1 / 2, height - h1 / 2)

    tau = torch.linspace(0.0, 1.0, frames, device=device) if frames > 1 else torch.zeros(1, device=device)
    tau = (tau * tau * (3 - 2 * tau))[None]  # smoothstep: the camera eases in and out
    cx = cx0[:, None] + (cx1 - cx0)[:, None] * tau
    cy = cy0[:, None] + (cy1 - cy0)[:, None] * tau
    # geometric interpolation of the size keeps every intermediate window inside the frame
    w = w0[:, None] * (w1 / w0)[:, None] ** tau
    h = h0[:, None] * (h1 / h0)[:, None] ** tau
    return cx, cy, w, h


def window_maps(
    cx, cy, w, h, out_size: tuple[int, int], hflip: torch.Tensor, vflip: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame affine maps from output to input raster coordinates: x_in = ax * u + bx, y_in = ay * v + by."""
    out_h, out_w = out_size
    ax, ay = w / out_w, h / out_h
    bx, by = cx - w / 2, cy - h / 2
    hf, vf = hflip[:, None], vflip[:, None]
    bx, ax = torch.where(hf, bx + w, bx), torch.where(hf, -ax, ax)
    by, ay = torch.where(vf, by + h, by), torch.where(vf, -ay, ay)
    return ax, bx, ay, by


def resampling_weights(
    scale: torch.Tensor, offset: torch.Tensor, out_n: int, in_n: int, taps: int = 16
) -> torch.Tensor:
    """[BT, out_n, in_n] weights along one axis: output pixel u samples the input at ``c = scale * (u + 0.5) + offset``.

    Enlarging (|scale| <= 1) is plain bilinear. Shrinking averages ``taps`` bilinear samples spread symmetrically
    around ``c`` with triangle weights, ``|scale| - 1`` pixels each way, so the filter is about ``|scale|`` input
    pixels wide (antialiased, like PIL's bilinear resize) and, being symmetric around ``c``, keeps a linear ramp
    exact (a track stays on its pixel to float precision). Samples beyond the edge take the edge pixel.
    """
    scale, offset = scale.reshape(-1, 1, 1), offset.reshape(-1, 1, 1)
    centres = scale * (torch.arange(out_n, device=scale.device, dtype=scale.dtype)[None, :, None] + 0.5) + offset
    pixels = torch.arange(in_n, device=scale.device, dtype=scale.dtype) + 0.5
    spread = (scale.abs() - 1.0).clamp(min=0.0)
    steps = (torch.arange(taps, device=scale.device, dtype=scale.dtype) + 0.5) / taps * 2.0 - 1.0  # in (-1, 1)
    weights = torch.zeros(scale.shape[0], out_n, in_n, device=scale.device, dtype=scale.dtype)
    for step in steps.tolist():
        at = (centres + spread * step).clamp(0.5, in_n - 0.5)
        weights += (1.0 - abs(step)) * (1.0 - (pixels - at).abs()).clamp(min=0.0)
    return weights / weights.sum(-1, keepdim=True)


def warp_frames(frames: torch.Tensor, ax, bx, ay, by, out_size: tuple[int, int]) -> torch.Tensor:
    """Resample frames [B*T,C,H,W] through per-frame maps ([B,T] each) to [B*T,C,out_h,out_w].

    The maps only scale, shift and flip each axis, so the resampling is separable: one weight matrix per axis and
    frame (`resampling_weights`). When no frame shrinks, that is plain bilinear, done by ``grid_sample`` (cheaper).
    """
    if bool((ax.abs() <= 1).all() and (ay.abs() <= 1).all()):
        return _bilinear(frames, ax, bx, ay, by, out_size)
    in_h, in_w = frames.shape[-2:]
    out_h, out_w = out_size
    rows = resampling_weights(ay.to(frames.dtype), by.to(frames.dtype), out_h, in_h)  # [BT, out_h, in_h]
    cols = resampling_weights(ax.to(frames.dtype), bx.to(frames.dtype), out_w, in_w)  # [BT, out_w, in_w]
    return rows[:, None] @ (frames @ cols.transpose(1, 2)[:, None])


def _bilinear(frames: torch.Tensor, ax, bx, ay, by, out_size: tuple[int, int]) -> torch.Tensor:
    in_h, in_w = frames.shape[-2:]
    out_h, out_w = out_size
    u = torch.arange(out_w, device=frames.device, dtype=frames.dtype) + 0.5
    v = torch.arange(out_h, device=frames.device, dtype=frames.dtype) + 0.5
    x_in = ax.reshape(-1, 1) * u[None] + bx.reshape(-1, 1)  # [BT, out_w]
    y_in = ay.reshape(-1, 1) * v[None] + by.reshape(-1, 1)  # [BT, out_h]
    gx = (2.0 * x_in / in_w - 1.0)[:, None, :].expand(-1, out_h, -1)
    gy = (2.0 * y_in / in_h - 1.0)[:, :, None].expand(-1, -1, out_w)
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)


def map_tracks(tracks: torch.Tensor, ax, bx, ay, by) -> torch.Tensor:
    """Move tracks [B,N,T,2] (x, y in input raster pixels) into the output frame."""
    x = (tracks[..., 0] - bx[:, None]) / ax[:, None]
    y = (tracks[..., 1] - by[:, None]) / ay[:, None]
    return torch.stack([x, y], dim=-1)
