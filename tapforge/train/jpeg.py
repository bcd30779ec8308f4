"""JPEG-style compression, batched on the device: YCbCr 4:2:0, 8x8 DCT blocks quantised with the IJG tables at a
quality drawn per clip."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tapforge.train.draws import uniform

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
    quality = uniform(n, *quality_range, gen, x.device).round()
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
