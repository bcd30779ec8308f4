"""The augmentation's geometry: a crop window per frame that drifts and zooms smoothly over the clip, flips, and the
resampling of frames and tracks through it; then, at the training resolution, TAPNext++'s camera roll
(`roll_motion`) and homography sequence (`homography_motion`), which move pixels and tracks with one map each.

Tracks stay exact: they go through the same per-frame affine map as the pixels (raster convention, (0,0) = the
top-left corner of the top-left pixel), and the resampling filter is symmetric around each output pixel's centre,
so a linear ramp is reproduced exactly (see `resampling_weights`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tapforge.train.augment_config import AugmentConfig, HomographyConfig, RollConfig
from tapforge.train.draws import coin, uniform, wave_signal, waves


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


# --- TAPNext++'s camera roll and homography sequence ---
# Both follow tapnet/tapnextpp/augmentations (roll.py, homography.py) in raster coordinates: the same map moves pixels
# (sampled bilinearly through its inverse, as OpenCV's warps do) and tracks. Deviation: the roll rotates about the
# frame's true centre (w/2, h/2), not about the pixel w//2, h//2 of the padded frame (half a pixel off for even sizes).


def roll_padding(height: int, width: int) -> int:
    """The black border TAPNext++ pads a frame with before rolling it: wide enough for any rotation of the frame."""
    return math.ceil((math.hypot(height, width) - min(height, width)) / 2)


def roll_motion(config: RollConfig, batch: int, frames: int, gen, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame roll of each clip: whole-pixel shifts [B,T,2] (x, y) and angles [B,T] (degrees, counter-clockwise
    on screen), each a `wave_signal` of one `waves` draw for the three quantities (shifts rounded, as TAPNext++ does)."""
    amplitude = torch.tensor([config.shift_x, config.shift_y, config.angle], dtype=torch.float32) * config.strength
    drawn = waves((batch, 3), config.waves, amplitude, config.slow_freq, config.fast_freq, gen, device)
    signal = wave_signal(*drawn, frames)  # [B,3,T]
    return signal[:, :2].round().transpose(1, 2), signal[:, 2]


def roll_points(points: torch.Tensor, shift, angle, size: tuple[int, int]) -> torch.Tensor:
    """Move raster (x, y) positions [..., 2] as `roll_frames` moves pixels: shift by ``shift`` [..., 2], wrapping
    around the frame padded by `roll_padding`, then rotate by ``angle`` [...] degrees about the frame's centre."""
    height, width = size
    pad = roll_padding(height, width)
    period = points.new_tensor([width + 2 * pad, height + 2 * pad])
    return _rotate(torch.remainder(points + shift + pad, period) - pad, angle, size)


def roll_frames(frames: torch.Tensor, shift: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Roll frames [n,T,C,H,W] by per-frame ``shift`` [n,T,2] and ``angle`` [n,T] (see `roll_points`); the padding,
    and with it everything that did not come from the frame, is black."""
    n, t, c, height, width = frames.shape
    pad = roll_padding(height, width)
    period = frames.new_tensor([width + 2 * pad, height + 2 * pad])
    centres = _pixel_centres(height, width, frames)[None]
    unrotated = _rotate(centres, -angle.reshape(-1, 1, 1).to(frames.dtype), (height, width))
    source = torch.remainder(unrotated - shift.reshape(-1, 1, 1, 2) + pad, period) - pad
    return _sample(frames.reshape(n * t, c, height, width), source, "zeros").reshape(frames.shape)


def homography_motion(config: HomographyConfig, batch: int, frames: int, size: tuple[int, int], gen, device):
    """Per-frame homographies [B,T,3,3] of each clip (raster coordinates, frame -> warped frame): the frame's corner
    pixel centres moved inwards by the absolute value of a `wave_signal` per corner coordinate (one `waves` draw,
    corners top-left, top-right, bottom-right, bottom-left, x then y) times the frame side, reflected back into
    ``margin`` of the side."""
    height, width = size
    amplitude = torch.tensor(config.corner, dtype=torch.float32) * config.strength
    drawn = waves((batch, 8), config.waves, amplitude, config.slow_freq, config.fast_freq, gen, device)
    side = torch.tensor([width, height] * 4, dtype=torch.float32, device=device)[:, None]  # [8,1]
    bound = config.margin * side
    inward = bound - (torch.remainder(wave_signal(*drawn, frames).abs() * side, 2 * bound) - bound).abs()
    inward = inward.reshape(batch, 4, 2, frames).permute(0, 3, 1, 2)  # [B,T,4,2]
    direction = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], device=device)
    return corner_homography(_corner_centres(height, width, device) + direction * inward, size)


def corner_homography(corners: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[..., 3, 3]: the homography that takes the frame's corner pixel centres (top-left, top-right, bottom-right,
    bottom-left) to ``corners`` [..., 4, 2] (a convex quadrilateral), in raster coordinates.

    Closed form (the unit square onto a quadrilateral, Heckbert 1989) after the affine map of the corner pixel
    centres onto the unit square: no linear solve, so it runs batched on any device in float32."""
    height, width = size
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = (c.unbind(-1) for c in corners.unbind(-2))
    sum_x, sum_y = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    det = dx1 * dy2 - dx2 * dy1
    g, h = (sum_x * dy2 - dx2 * sum_y) / det, (dx1 * sum_y - sum_x * dy1) / det
    one = torch.ones_like(g)
    square = torch.stack(
        [
            torch.stack([x1 - x0 + g * x1, x3 - x0 + h * x3, x0], -1),
            torch.stack([y1 - y0 + g * y1, y3 - y0 + h * y3, y0], -1),
            torch.stack([g, h, one], -1),
        ],
        -2,
    )
    to_square = corners.new_tensor(
        [[1 / (width - 1), 0.0, -0.5 / (width - 1)], [0.0, 1 / (height - 1), -0.5 / (height - 1)], [0.0, 0.0, 1.0]]
    )
    return square @ to_square


def homography_points(points: torch.Tensor, homography: torch.Tensor) -> torch.Tensor:
    """Map raster (x, y) positions [..., 2] through ``homography`` [..., 3, 3]. A point beyond the homography's
    horizon (only far outside the frame) gets a far but finite position, so its track stays finite."""
    x, y = points.unbind(-1)
    m = homography
    den = (m[..., 2, 0] * x + m[..., 2, 1] * y + m[..., 2, 2]).clamp(min=1e-6)
    return torch.stack(
        [
            (m[..., 0, 0] * x + m[..., 0, 1] * y + m[..., 0, 2]) / den,
            (m[..., 1, 0] * x + m[..., 1, 1] * y + m[..., 1, 2]) / den,
        ],
        -1,
    )


def homography_frames(frames: torch.Tensor, homography: torch.Tensor, fill: str) -> torch.Tensor:
    """Warp frames [n,T,C,H,W] by per-frame ``homography`` [n,T,3,3] (see `homography_points`); pixels from outside
    the frame are black (``fill`` "black") or the nearest edge pixel ("edge")."""
    n, t, c, height, width = frames.shape
    inverse = torch.linalg.inv(homography.to(frames.dtype)).reshape(-1, 1, 1, 3, 3)
    source = homography_points(_pixel_centres(height, width, frames)[None], inverse)
    # beyond one pixel outside, every bilinear tap is outside: keep the grid small and finite
    source = torch.minimum(source.clamp(min=-1.0), frames.new_tensor([width + 1.0, height + 1.0]))
    padding = "zeros" if fill == "black" else "border"
    return _sample(frames.reshape(n * t, c, height, width), source, padding).reshape(frames.shape)


def _rotate(points: torch.Tensor, angle, size: tuple[int, int]) -> torch.Tensor:
    """Rotate (x, y) [..., 2] by ``angle`` [...] degrees, counter-clockwise on screen (y down), about the frame centre."""
    centre = points.new_tensor([size[1] / 2, size[0] / 2])
    theta = torch.deg2rad(torch.as_tensor(angle, dtype=points.dtype, device=points.device))
    cos, sin = theta.cos(), theta.sin()
    dx, dy = (points - centre).unbind(-1)
    return torch.stack([cos * dx + sin * dy, cos * dy - sin * dx], -1) + centre


def _pixel_centres(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """[H, W, 2] raster (x, y) of every pixel centre."""
    y = torch.arange(height, device=like.device, dtype=like.dtype) + 0.5
    x = torch.arange(width, device=like.device, dtype=like.dtype) + 0.5
    return torch.stack(torch.meshgrid(x, y, indexing="xy"), -1)


def _corner_centres(height: int, width: int, device) -> torch.Tensor:
    """[4, 2]: the corner pixel centres, top-left, top-right, bottom-right, bottom-left."""
    return torch.tensor(
        [[0.5, 0.5], [width - 0.5, 0.5], [width - 0.5, height - 0.5], [0.5, height - 0.5]], device=device
    )


def _sample(frames: torch.Tensor, source: torch.Tensor, padding: str) -> torch.Tensor:
    """Bilinear samples of frames [N,C,H,W] at raster positions ``source`` [N,H',W',2]."""
    height, width = frames.shape[-2:]
    grid = source / source.new_tensor([width, height]) * 2.0 - 1.0
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode=padding, align_corners=False)
