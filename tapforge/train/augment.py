"""Sim2real augmentation, batched on the device with plain torch ops (no torchvision).

Applied after the batch reaches the accelerator. Geometry first (a crop window per frame that
drifts and zooms smoothly over the clip, flips, resampled to the training resolution with
antialiased bilinear weights that keep tracks exact), then occluder patches, then photometric
changes (colour, blur, sensor noise, JPEG-style compression). Every augmentation has its own probability (drawn per clip) and range.

Ground truth stays exact: tracks go through the same per-frame affine map as the pixels
(raster convention, (0,0) = top-left corner of the top-left pixel), points that leave the frame
or fall under an occluder patch become occluded, and every query is moved to a frame where its
point is still visible (or the point is replaced by another visible point of the same clip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass

import torch
import torch.nn.functional as F

from tapforge.base.errors import TapforgeError
from tapforge.train.batches import ClipBatch, TrainBatch


@dataclass(frozen=True)
class ColorConfig:
    """Colour jitter as in tapnet's training (same factors for every frame of a clip)."""

    p: float = 0.8
    brightness: float = 32.0 / 255.0  # max |added offset|, in [0,1] intensity units
    contrast: tuple[float, float] = (0.6, 1.4)
    saturation: tuple[float, float] = (0.6, 1.4)
    hue: float = 0.2  # max |hue shift|, as a fraction of the colour circle
    grayscale_p: float = 0.2


@dataclass(frozen=True)
class BlurConfig:
    gaussian_p: float = 0.1
    gaussian_sigma: tuple[float, float] = (0.3, 1.5)  # pixels at the training resolution
    motion_p: float = 0.1
    motion_length: tuple[float, float] = (2.0, 8.0)  # streak length in pixels


@dataclass(frozen=True)
class NoiseConfig:
    """Sensor noise: signal-independent read noise plus signal-dependent shot noise."""

    p: float = 0.2
    read_sigma: tuple[float, float] = (0.0, 0.03)
    shot_sigma: tuple[float, float] = (0.0, 0.05)


@dataclass(frozen=True)
class JpegConfig:
    """JPEG-style compression: YCbCr 4:2:0, 8x8 DCT quantised with the IJG tables at ``quality``."""

    p: float = 0.2
    quality: tuple[float, float] = (30.0, 90.0)


@dataclass(frozen=True)
class CropConfig:
    """Random crop window (Kubric-style area and aspect), optionally drifting and zooming over time."""

    p: float = 1.0
    area: tuple[float, float] = (0.3, 1.0)  # window area as a fraction of the frame
    aspect: tuple[float, float] = (0.5, 2.0)  # window aspect change (stretch) range
    drift_p: float = 0.5  # probability that the window moves over the clip (simulated camera motion)
    drift: float = 0.15  # max shift of the window centre from first to last frame, fraction of the frame
    zoom: tuple[float, float] = (0.8, 1.25)  # window scale factor from first to last frame


@dataclass(frozen=True)
class FlipConfig:
    horizontal_p: float = 0.5
    vertical_p: float = 0.0


@dataclass(frozen=True)
class OccluderConfig:
    """Patches pasted over the video; points under a patch become occluded."""

    p: float = 0.3
    max_patches: int = 3
    size: tuple[float, float] = (0.1, 0.35)  # patch sides as a fraction of the training resolution
    replace_p: float = 0.5  # a patch shows another clip's content; otherwise a flat noisy colour (eraser)
    max_speed: float = 0.02  # patch motion, fraction of the frame per frame


@dataclass(frozen=True)
class AugmentConfig:
    """All sim2real augmentations; set a probability to 0 to turn that one off."""

    enabled: bool = True
    crop: CropConfig = field(default_factory=CropConfig)
    flip: FlipConfig = field(default_factory=FlipConfig)
    occluder: OccluderConfig = field(default_factory=OccluderConfig)
    color: ColorConfig = field(default_factory=ColorConfig)
    blur: BlurConfig = field(default_factory=BlurConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    jpeg: JpegConfig = field(default_factory=JpegConfig)


_RANGE_LIMITS = {
    "contrast": (0.0, math.inf),
    "saturation": (0.0, math.inf),
    "gaussian_sigma": (0.0, 20.0),
    "motion_length": (0.0, 64.0),
    "read_sigma": (0.0, 1.0),
    "shot_sigma": (0.0, 1.0),
    "quality": (1.0, 100.0),
    "area": (1e-3, 1.0),
    "aspect": (1e-2, 100.0),
    "zoom": (0.1, 10.0),
    "size": (1e-3, 1.0),
}
_SCALAR_LIMITS = {
    "brightness": (0.0, 1.0),
    "hue": (0.0, 0.5),
    "drift": (0.0, 1.0),
    "max_speed": (0.0, 1.0),
    "max_patches": (1, 64),
}


def validate_augment_config(config: AugmentConfig, prefix: str = "data.augment") -> None:
    """Raise TapforgeError naming the key of the first out-of-range value."""
    for f in fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}.{f.name}"
        if is_dataclass(value):
            validate_augment_config(value, key)
        elif f.name == "p" or f.name.endswith("_p"):
            if not 0.0 <= float(value) <= 1.0:
                raise TapforgeError(f"{key} is {value}; fix: set it to a probability in [0, 1]")
        elif f.name in _RANGE_LIMITS:
            low, high = _RANGE_LIMITS[f.name]
            if len(value) != 2 or not low <= value[0] <= value[1] <= high:
                raise TapforgeError(f"{key} is {value}; fix: set it to [low, high] with {low} <= low <= high <= {high}")
        elif f.name in _SCALAR_LIMITS:
            low, high = _SCALAR_LIMITS[f.name]
            if not low <= value <= high:
                raise TapforgeError(f"{key} is {value}; fix: set it to a value in [{low}, {high}]")


def _uniform(shape, low, high, gen, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen, device=device)


def _coin(n: int, p: float, gen, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


# ---------------------------------------------------------------------------------------------
# geometry


def sample_windows(
    config: AugmentConfig, batch: int, frames: int, height: int, width: int, gen, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame crop windows: centres (cx, cy) and sizes (w, h), each [B,T], inside the frame."""
    crop = config.crop
    cropped = _coin(batch, crop.p, gen, device)
    area = _uniform(batch, *crop.area, gen, device)
    log_aspect = _uniform(batch, math.log(crop.aspect[0]), math.log(crop.aspect[1]), gen, device)
    w0 = torch.where(cropped, torch.sqrt(area * log_aspect.exp()) * width, torch.full_like(area, width))
    h0 = torch.where(cropped, torch.sqrt(area / log_aspect.exp()) * height, torch.full_like(area, height))
    w0, h0 = w0.clamp(max=width), h0.clamp(max=height)
    cx0 = w0 / 2 + torch.rand(batch, generator=gen, device=device) * (width - w0)
    cy0 = h0 / 2 + torch.rand(batch, generator=gen, device=device) * (height - h0)

    drifting = cropped & _coin(batch, crop.drift_p, gen, device)
    zoom = torch.exp(_uniform(batch, math.log(crop.zoom[0]), math.log(crop.zoom[1]), gen, device))
    zoom = torch.minimum(zoom, torch.minimum(width / w0, height / h0))
    zoom = torch.where(drifting, zoom, torch.ones_like(zoom))
    w1, h1 = w0 * zoom, h0 * zoom
    shift = _uniform((2, batch), -crop.drift, crop.drift, gen, device) * drifting
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


def outside(tracks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    x, y = tracks[..., 0], tracks[..., 1]
    return ~((x >= 0) & (x < width) & (y >= 0) & (y < height))


# ---------------------------------------------------------------------------------------------
# occluder patches


def paste_occluders(
    frames: torch.Tensor, tracks: torch.Tensor, occluded: torch.Tensor, config: OccluderConfig, gen
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste moving rectangular patches into some clips; points they cover become occluded.

    ``frames`` [B,T,3,H,W] in [0,1], ``tracks`` [B,N,T,2], ``occluded`` [B,N,T]. Patches have
    integer pixel edges: a patch spanning columns [x0, x1) covers the points with x0 <= x < x1.
    """
    batch, frames_n, _, height, width = frames.shape
    device = frames.device
    chosen = _coin(batch, config.p, gen, device)
    if not bool(chosen.any()):
        return frames, occluded
    count = torch.randint(1, config.max_patches + 1, (batch,), generator=gen, device=device)
    t = torch.arange(frames_n, device=device)
    cols = torch.arange(width, device=device)
    rows = torch.arange(height, device=device)
    # another clip's content, flipped so that it differs from the host clip even for a batch of one
    donors = torch.flip(frames[torch.randperm(batch, generator=gen, device=device)], dims=(-2, -1))
    frames = frames.clone()
    occluded = occluded.clone()
    for k in range(config.max_patches):
        on = chosen & (count > k)
        pw = (_uniform(batch, *config.size, gen, device) * width).round().clamp(1, width)
        ph = (_uniform(batch, *config.size, gen, device) * height).round().clamp(1, height)
        x0 = torch.rand(batch, generator=gen, device=device) * (width - pw + 1)
        y0 = torch.rand(batch, generator=gen, device=device) * (height - ph + 1)
        speed = _uniform((2, batch), -config.max_speed, config.max_speed, gen, device)
        start = torch.randint(0, frames_n, (batch,), generator=gen, device=device)
        stop = start + 1 + (torch.rand(batch, generator=gen, device=device) * (frames_n - start)).long()
        active = on[:, None] & (t[None] >= start[:, None]) & (t[None] < stop[:, None])  # [B,T]
        dt = (t[None] - start[:, None]).float()
        left = (x0[:, None] + speed[0][:, None] * width * dt).round()  # [B,T]
        top = (y0[:, None] + speed[1][:, None] * height * dt).round()
        right, bottom = left + pw[:, None], top + ph[:, None]
        in_cols = (cols[None, None] >= left[..., None]) & (cols[None, None] < right[..., None])  # [B,T,W]
        in_rows = (rows[None, None] >= top[..., None]) & (rows[None, None] < bottom[..., None])  # [B,T,H]
        mask = (in_rows[..., :, None] & in_cols[..., None, :]) & active[..., None, None]  # [B,T,H,W]

        replace = _coin(batch, config.replace_p, gen, device)[:, None, None, None, None]
        colour = torch.rand((batch, 1, 3, 1, 1), generator=gen, device=device)
        grain = _uniform((batch, 1, 1, 1, 1), 0.0, 0.1, gen, device)
        texture = torch.randn((batch, 1, 3, height, width), generator=gen, device=device)
        flat = (colour + grain * texture).clamp(0, 1)
        content = torch.where(replace, donors, flat)
        frames = torch.where(mask[:, :, None], content, frames)

        x, y = tracks[..., 0], tracks[..., 1]  # [B,N,T]
        covered = (x >= left[:, None]) & (x < right[:, None]) & (y >= top[:, None]) & (y < bottom[:, None])
        occluded = occluded | (covered & active[:, None])
    return frames, occluded


# ---------------------------------------------------------------------------------------------
# photometric


def _gray(x: torch.Tensor) -> torch.Tensor:
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
    x = x + _uniform(shape, -config.brightness, config.brightness, gen, device)
    gray = _gray(x)
    x = gray + _uniform(shape, *config.saturation, gen, device) * (x - gray)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    x = mean + _uniform(shape, *config.contrast, gen, device) * (x - mean)
    x = x.clamp(0, 1)
    if config.hue > 0:
        hsv = rgb_to_hsv(x)
        shift = _uniform((n, 1, 1, 1), -config.hue, config.hue, gen, device)
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
    n, device = x.shape[0], x.device
    sigma = _uniform(n, *sigma_range, gen, device).clamp_min(1e-3)
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
    n, device = x.shape[0], x.device
    length = _uniform(n, *length_range, gen, device)
    angle = _uniform(n, 0.0, math.pi, gen, device)
    size = 2 * math.ceil(length_range[1] / 2) + 1
    return _grouped_conv(x, motion_kernels(length, angle, size))


def sensor_noise(x: torch.Tensor, config: NoiseConfig, gen) -> torch.Tensor:
    n, device = x.shape[0], x.device
    read = _uniform((n, 1, 1, 1, 1), *config.read_sigma, gen, device)
    shot = _uniform((n, 1, 1, 1, 1), *config.shot_sigma, gen, device)
    sigma = torch.sqrt(read**2 + shot**2 * x.clamp_min(0))
    return (x + sigma * torch.randn(x.shape, generator=gen, device=device, dtype=x.dtype)).clamp(0, 1)


_JPEG_LUMA = [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
]
_JPEG_CHROMA = [
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
] + [[99] * 8] * 4


def _dct_matrix(device) -> torch.Tensor:
    k = torch.arange(8, device=device, dtype=torch.float32)
    m = torch.cos((2 * k[None] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] = m[0] / math.sqrt(2)
    return m


def _quant_tables(quality: torch.Tensor, base: list) -> torch.Tensor:
    """IJG scaling of a base table for each quality in [1,100] -> [n,8,8]."""
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    table = torch.tensor(base, device=q.device, dtype=torch.float32)
    return torch.floor((table[None] * scale[:, None, None] + 50.0) / 100.0).clamp(1, 255)


def _dct_quantise(plane: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """plane [n,T,H,W] (H, W multiples of 8, values centred on 0); quantise 8x8 DCT blocks."""
    n, frames, height, width = plane.shape
    d = _dct_matrix(plane.device)
    blocks = plane.reshape(n, frames, height // 8, 8, width // 8, 8).transpose(3, 4)  # [n,T,hb,wb,8,8]
    coeffs = d @ blocks @ d.T
    q = tables[:, None, None, None]
    coeffs = torch.round(coeffs / q) * q
    blocks = d.T @ coeffs @ d
    return blocks.transpose(3, 4).reshape(n, frames, height, width)


def jpeg_compress(x: torch.Tensor, quality_range: tuple[float, float], gen) -> torch.Tensor:
    """Approximate JPEG round trip of x [n,T,3,H,W] in [0,1] at a random quality per clip."""
    n, frames, _, height, width = x.shape
    quality = _uniform(n, *quality_range, gen, x.device).round()
    pad_h, pad_w = (-height) % 16, (-width) % 16
    rgb = F.pad(x.reshape(n * frames, 3, height, width) * 255.0, (0, pad_w, 0, pad_h), mode="replicate")
    rgb = rgb.reshape(n, frames, 3, height + pad_h, width + pad_w)
    r, g, b = rgb.unbind(2)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    y = _dct_quantise(y - 128.0, _quant_tables(quality, _JPEG_LUMA)) + 128.0
    chroma_tables = _quant_tables(quality, _JPEG_CHROMA)
    planes = []
    for c in (cb, cr):
        small = F.avg_pool2d(c.reshape(n * frames, 1, *c.shape[-2:]), 2).reshape(
            n, frames, *[s // 2 for s in c.shape[-2:]]
        )
        small = _dct_quantise(small, chroma_tables)
        up = F.interpolate(small.reshape(n * frames, 1, *small.shape[-2:]), scale_factor=2, mode="bilinear")
        planes.append(up.reshape(c.shape))
    cb, cr = planes
    out = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=2)
    return (out[..., :height, :width] / 255.0).clamp(0, 1)


def _apply_some(x: torch.Tensor, p: float, fn, gen) -> torch.Tensor:
    """Apply ``fn`` to the clips of x [B,...] that win a coin toss with probability ``p``."""
    if p <= 0:
        return x
    chosen = torch.nonzero(_coin(x.shape[0], p, gen, x.device)).flatten()
    if chosen.numel() == 0:
        return x
    out = x.clone()
    out[chosen] = fn(x[chosen]).to(x.dtype)
    return out


# ---------------------------------------------------------------------------------------------
# queries


def repair_queries(
    tracks: torch.Tensor, occluded: torch.Tensor, query_frame: torch.Tensor, gen
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Make every query frame a frame where its point is visible.

    A query whose point became hidden moves to the nearest visible frame of the same track; a
    track with no visible frame left is replaced by a random visible track of the same clip.
    Returns (tracks, occluded, query_frame, source_index [B,N] (which input row each output row
    is), clip_has_no_visible_track [B]).
    """
    batch, num, frames = occluded.shape
    source = torch.arange(num, device=tracks.device)[None].expand(batch, num)
    visible = ~occluded
    ok = visible.gather(-1, query_frame[..., None])[..., 0]
    empty = torch.zeros(batch, dtype=torch.bool, device=tracks.device)
    if bool(ok.all()):
        return tracks, occluded, query_frame, source, empty
    t = torch.arange(frames, device=tracks.device)
    distance = (t[None, None] - query_frame[..., None]).abs().float() + (~visible).float() * (2 * frames)
    query_frame = torch.where(ok, query_frame, distance.argmin(dim=-1))
    alive = visible.any(dim=-1)  # [B,N]
    empty = ~alive.any(dim=-1)
    if bool((~alive).any()):
        weights = alive.float() + empty[:, None].float()  # a clip with no visible track keeps its rows
        donor = torch.multinomial(weights, num, replacement=True, generator=gen)  # [B,N]
        source = torch.where(alive | empty[:, None], source, donor)
        tracks = tracks.gather(1, source[..., None, None].expand(-1, -1, frames, 2))
        occluded = occluded.gather(1, source[..., None].expand(-1, -1, frames))
        query_frame = query_frame.gather(1, source)
    return tracks, occluded, query_frame, source, empty


def query_points(tracks: torch.Tensor, query_frame: torch.Tensor) -> torch.Tensor:
    """(t, y, x) queries [B,N,3] read off the tracks [B,N,T,2] at the query frames [B,N]."""
    xy = tracks.gather(2, query_frame[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
    return torch.stack([query_frame.to(tracks.dtype), xy[..., 1], xy[..., 0]], dim=-1)


# ---------------------------------------------------------------------------------------------


class Sim2RealAugment:
    """Callable that turns a raw training batch into an augmented model batch on its device."""

    def __init__(self, config: AugmentConfig, resolution: tuple[int, int]):
        validate_augment_config(config)
        self.config = config
        self.resolution = (int(resolution[0]), int(resolution[1]))

    def __call__(self, batch: ClipBatch, gen: torch.Generator | None = None) -> TrainBatch:
        """Clips (video uint8 [B,T,H,W,3], tracks [B,N,T,2], occluded [B,N,T], query_frame [B,N]) -> the
        model's batch at ``resolution`` (see :class:`~tapforge.train.batches.TrainBatch`; ``source_index`` as in
        :func:`repair_queries`)."""
        cfg = self.config
        video = batch.video
        batch_n, frames_n, in_h, in_w, _ = video.shape
        out_h, out_w = self.resolution
        device = video.device
        x = video.permute(0, 1, 4, 2, 3).reshape(batch_n * frames_n, 3, in_h, in_w).float() / 255.0
        tracks, occluded = batch.tracks.float(), batch.occluded.bool()

        if cfg.enabled:
            cx, cy, w, h = sample_windows(cfg, batch_n, frames_n, in_h, in_w, gen, device)
            hflip = _coin(batch_n, cfg.flip.horizontal_p, gen, device)
            vflip = _coin(batch_n, cfg.flip.vertical_p, gen, device)
        else:
            full = torch.ones(batch_n, frames_n, device=device)
            cx, cy, w, h = full * in_w / 2, full * in_h / 2, full * in_w, full * in_h
            hflip = vflip = torch.zeros(batch_n, dtype=torch.bool, device=device)
        ax, bx, ay, by = window_maps(cx, cy, w, h, (out_h, out_w), hflip, vflip)
        if (in_h, in_w) != (out_h, out_w) or cfg.enabled:
            x = warp_frames(x, ax, bx, ay, by, (out_h, out_w))
        tracks = map_tracks(tracks, ax, bx, ay, by)
        occluded = occluded | outside(tracks, out_h, out_w)
        x = x.reshape(batch_n, frames_n, 3, out_h, out_w)

        if cfg.enabled:
            if cfg.occluder.p > 0:
                x, occluded = paste_occluders(x, tracks, occluded, cfg.occluder, gen)
            x = _apply_some(x, cfg.color.p, lambda v: color_jitter(v, cfg.color, gen), gen)
            x = _apply_some(x, cfg.color.grayscale_p, lambda v: _gray(v).expand_as(v), gen)
            x = _apply_some(x, cfg.blur.gaussian_p, lambda v: gaussian_blur(v, cfg.blur.gaussian_sigma, gen), gen)
            x = _apply_some(x, cfg.blur.motion_p, lambda v: motion_blur(v, cfg.blur.motion_length, gen), gen)
            x = _apply_some(x, cfg.noise.p, lambda v: sensor_noise(v, cfg.noise, gen), gen)
            x = _apply_some(x, cfg.jpeg.p, lambda v: jpeg_compress(v, cfg.jpeg.quality, gen), gen)

        tracks, occluded, query_frame, source, empty = repair_queries(tracks, occluded, batch.query_frame.long(), gen)
        return TrainBatch(
            video=x.permute(0, 1, 3, 4, 2) * 2.0 - 1.0,
            tracks=tracks,
            occluded=occluded,
            query_frame=query_frame,
            query_points=query_points(tracks, query_frame),
            source_index=source,
            no_visible_track=empty,
            object_ids=batch.object_ids.gather(1, source),
            keys=batch.keys,
        )
