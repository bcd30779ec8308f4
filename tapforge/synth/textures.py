"""Textures with natural-image statistics, generated in numpy from a seed (no downloads, no licences).

Families, after "Learning to See by Looking at Noise" (Baradad et al., NeurIPS 2021), whose best
procedural families were textured dead leaves and coloured spectral noise:

- ``dead_leaves``: overlapping discs, rotated rectangles and strokes with a power-law size
  distribution (p(r) ~ r^-3, scale invariant), each leaf its own colour and sub-texture;
- ``spectral``: coloured 1/f^alpha noise, alpha drawn around natural images' ~2;
- ``stripes``: stripes and grids warped by low-frequency spectral noise;
- ``mosaic``: Voronoi cells, each with its own colour and sub-texture;
- ``mixture``: two of the above, cut by a thresholded low-frequency field.

Every texture is square and tiles seamlessly (it is periodic in both axes), so box projection and
repeats show no seams; colours stay inside a linear albedo range that neither blows out nor crushes
under the scene's light. ``spectrum_slope`` measures the radially averaged power spectrum slope.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np

from tapforge.base import seeds

FAMILIES = ("dead_leaves", "spectral", "stripes", "mosaic", "mixture")
SRGB_RANGE = (0.1, 0.9)  # sRGB value range of generated albedos: linear ~0.01-0.79


def _frequencies(size: int) -> np.ndarray:
    """Radial frequency (cycles per pixel) of every FFT bin of a size x size image."""
    f = np.fft.fftfreq(size)
    return np.hypot(f[:, None], f[None, :])


def spectral_field(rng: np.random.Generator, size: int, alpha: float, channels: int = 1) -> np.ndarray:
    """Zero-mean, unit-variance periodic noise [size,size,channels] with power spectrum ~ 1/f^alpha."""
    f = _frequencies(size)
    f[0, 0] = 1.0
    amplitude = f ** (-alpha / 2)
    amplitude[0, 0] = 0.0
    spectrum = np.fft.fft2(rng.standard_normal((channels, size, size))) * amplitude
    field = np.fft.ifft2(spectrum).real
    field /= field.std(axis=(1, 2), keepdims=True) + 1e-12
    return np.moveaxis(field, 0, -1)


def _palette(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` sRGB colours around one or two dominant hues, mostly muted, values widely spread."""
    hues = rng.uniform(0, 1, 2)
    hue = np.where(rng.random(count) < 0.7, hues[0], hues[1]) + rng.normal(0, 0.06, count)
    saturation = rng.beta(1.6, 2.6, count)
    value = rng.beta(2.0, 2.0, count)
    rgb = np.array([colorsys.hsv_to_rgb(h % 1.0, s, v) for h, s, v in zip(hue, saturation, value)])
    return rgb.reshape(count, 3)


def _colour_noise(rng: np.random.Generator, size: int, alpha: float) -> np.ndarray:
    """Spectral noise in an opponent colour space: strong luminance, weaker chroma -> sRGB-ish [0,1]."""
    field = spectral_field(rng, size, alpha, 3)
    mean = _palette(rng, 1)[0]
    lum, red_green, blue_yellow = field[..., 0] * 0.18, field[..., 1] * 0.06, field[..., 2] * 0.06
    rgb = mean + np.stack([lum + red_green, lum - red_green, lum + blue_yellow], -1)
    return rgb


def _sub_textures(rng: np.random.Generator, size: int, count: int = 6) -> np.ndarray:
    """A bank of zero-mean modulation fields [count,size,size] (spectral noise and warped stripes)."""
    bank = [spectral_field(rng, size, rng.uniform(1.5, 2.5))[..., 0] for _ in range(count // 2)]
    bank += [_warped_stripes(rng, size) * 2 - 1 for _ in range(count - count // 2)]
    return np.stack(bank)


def _warped_stripes(rng: np.random.Generator, size: int, grid: bool = False) -> np.ndarray:
    """Periodic stripes (or a grid) of random frequency and angle, warped by smooth noise; values in [0,1]."""
    y, x = np.mgrid[0:size, 0:size] / size
    warp = spectral_field(rng, size, 3.0)[..., 0] * rng.uniform(0.02, 0.12)
    out = np.ones((size, size))
    for _ in range(2 if grid else 1):
        # integer wave vectors keep the pattern periodic on the tile
        kx, ky = rng.integers(-24, 25, 2)
        if kx == 0 and ky == 0:
            kx = 8
        phase = 2 * np.pi * (kx * x + ky * y + warp * np.hypot(kx, ky))
        sharpness = rng.uniform(0.5, 4.0)
        out = out * (0.5 + 0.5 * np.tanh(sharpness * np.sin(phase)))
    return out


def _dead_leaves(rng: np.random.Generator, size: int) -> np.ndarray:
    """Painter's-algorithm dead leaves (later leaves on top), wrapped on the torus so the tile is periodic."""
    r_min, r_max = max(1.0, size / 256), size / 4
    coverage = 4.0  # expected layers per pixel: the first layer is nearly hidden
    mean_area = np.pi * 2 * r_min**2 * np.log(r_max / r_min)  # E[pi r^2] for p(r) ~ r^-3 on [r_min, r_max]
    count = int(coverage * size * size / mean_area)
    u = rng.random(count)  # inverse cdf of p(r) ~ r^-3
    radius = 1 / np.sqrt(r_min**-2 - u * (r_min**-2 - r_max**-2))
    kind = rng.choice(3, count, p=[0.5, 0.3, 0.2])  # disc, rectangle, stroke
    aspect = np.where(kind == 0, 1.0, np.where(kind == 1, rng.uniform(0.3, 1.0, count), rng.uniform(0.05, 0.2, count)))
    angle = rng.uniform(0, np.pi, count)
    centre = rng.uniform(0, size, (count, 2))
    half = np.ceil(radius).astype(np.int64)
    # rasterise every leaf's bounding box at once, then keep the topmost leaf per pixel
    box = (2 * half + 1) ** 2
    leaf = np.repeat(np.arange(count), box)
    local = np.arange(box.sum()) - np.repeat(np.cumsum(box) - box, box)
    side = 2 * half[leaf] + 1
    oy, ox = np.divmod(local, side)
    py = np.floor(centre[leaf, 1]).astype(np.int64) + oy - half[leaf]
    px = np.floor(centre[leaf, 0]).astype(np.int64) + ox - half[leaf]
    dy, dx = py + 0.5 - centre[leaf, 1], px + 0.5 - centre[leaf, 0]
    c, s = np.cos(angle[leaf]), np.sin(angle[leaf])
    u_, v_ = (c * dx + s * dy) / radius[leaf], (-s * dx + c * dy) / (radius[leaf] * aspect[leaf])
    is_disc = kind[leaf] == 0
    inside = np.where(is_disc, u_ * u_ + v_ * v_ <= 1.0, (np.abs(u_) <= 1.0) & (np.abs(v_) <= 1.0))
    top = np.full(size * size, -1, np.int64)
    np.maximum.at(top, ((py[inside] % size) * size + px[inside] % size), leaf[inside])
    top = top.reshape(size, size)
    colours = _palette(rng, count)
    bank = _sub_textures(rng, size)
    which = rng.integers(len(bank), size=count)
    gain = rng.uniform(0.0, 0.35, count) * (rng.random(count) < 0.7)
    base = _colour_noise(rng, size, 2.0)  # shows where no leaf fell
    covered = top >= 0
    index = np.where(covered, top, 0)
    yy, xx = np.mgrid[0:size, 0:size]
    modulation = 1 + gain[index] * bank[which[index], yy, xx]
    return np.where(covered[..., None], colours[index] * modulation[..., None], base)


def _mosaic(rng: np.random.Generator, size: int) -> np.ndarray:
    """Voronoi cells of a jittered grid (nearest seed among the 3x3 neighbour cells, wrapped)."""
    cells = int(rng.integers(6, 40))
    seeds = (np.mgrid[0:cells, 0:cells].transpose(1, 2, 0) + rng.random((cells, cells, 2))) / cells  # (y, x)
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    cy, cx = np.floor(y * cells).astype(int), np.floor(x * cells).astype(int)
    best = np.full((size, size), np.inf)
    owner = np.zeros((size, size), np.int64)
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            ny, nx = cy + oy, cx + ox
            seed = seeds[ny % cells, nx % cells] + np.stack([ny // cells, nx // cells], -1)
            dist = (seed[..., 0] - y) ** 2 + (seed[..., 1] - x) ** 2
            closer = dist < best
            best = np.where(closer, dist, best)
            owner = np.where(closer, (ny % cells) * cells + nx % cells, owner)
    colours = _palette(rng, cells * cells)
    bank = _sub_textures(rng, size, 4)
    which = rng.integers(len(bank), size=cells * cells)
    gain = rng.uniform(0.05, 0.35, cells * cells)
    yy, xx = np.mgrid[0:size, 0:size]
    return colours[owner] * (1 + gain[owner] * bank[which[owner], yy, xx])[..., None]


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    pattern = _warped_stripes(rng, size, grid=bool(rng.random() < 0.4))
    a, b = _palette(rng, 2)
    a, b = a * rng.uniform(0.2, 0.6), np.clip(b * rng.uniform(1.2, 2.0), 0, 1)  # a dark and a light band
    detail = 1 + 0.15 * spectral_field(rng, size, 2.0)
    return (a + pattern[..., None] * (b - a)) * detail


def _spectral(rng: np.random.Generator, size: int) -> np.ndarray:
    return _colour_noise(rng, size, rng.uniform(1.6, 2.6))


def _mixture(rng: np.random.Generator, size: int) -> np.ndarray:
    first, second = rng.choice(("dead_leaves", "spectral", "stripes", "mosaic"), 2, replace=False)
    mask = spectral_field(rng, size, 3.5)[..., 0] > rng.normal(0, 0.5)
    return np.where(mask[..., None], GENERATORS[first](rng, size), GENERATORS[second](rng, size))


GENERATORS = {
    "dead_leaves": _dead_leaves,
    "spectral": _spectral,
    "stripes": _stripes,
    "mosaic": _mosaic,
    "mixture": _mixture,
}


@lru_cache(maxsize=32)
def generate_texture(family: str, seed: int, size: int = 512) -> np.ndarray:
    """A seamless sRGB texture, uint8 [size,size,3], of one family; the same (family, seed, size), the same pixels."""
    if family not in GENERATORS:
        raise ValueError(f"unknown texture family {family!r}; choose one of {FAMILIES}")
    rng = seeds.rng(seed, "texture", family)
    srgb = np.clip(GENERATORS[family](rng, size), *SRGB_RANGE)
    out = np.round(srgb * 255).astype(np.uint8)
    out.setflags(write=False)  # shared by the cache
    return out


def spectrum_slope(image: np.ndarray, low: float = 4.0, high: float = 0.25) -> float:
    """Slope alpha of the radially averaged power spectrum P(f) ~ 1/f^alpha of an image's luminance.

    Fitted in log-log between ``low`` cycles per image and ``high`` cycles per pixel, on the central
    square crop with a Hann window (so the image border adds no spurious 1/f^2 edge).
    Natural photographs give alpha ~ 2.
    """
    gray = np.asarray(image, np.float64)
    if gray.ndim == 3:
        gray = gray[..., :3] @ [0.2126, 0.7152, 0.0722]
    side = min(gray.shape)
    top, left = (gray.shape[0] - side) // 2, (gray.shape[1] - side) // 2
    gray = gray[top : top + side, left : left + side]
    window = np.hanning(side)
    gray = (gray - gray.mean()) * np.outer(window, window)
    power = np.abs(np.fft.fft2(gray)) ** 2
    f = _frequencies(side)
    bins = np.round(f * side).astype(int)  # integer radius in cycles per image
    total = np.bincount(bins.ravel(), power.ravel())
    count = np.bincount(bins.ravel())
    radius = np.arange(len(total))
    keep = (radius >= low) & (radius <= high * side) & (count > 0)
    slope, _ = np.polyfit(np.log(radius[keep]), np.log(total[keep] / count[keep]), 1)
    return float(-slope)
