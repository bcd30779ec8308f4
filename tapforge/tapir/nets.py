"""TAPIR building blocks: ResNet backbone, extra convs, the PIPs mixer and the sampling helpers.

Module and parameter names follow the official tapnet PyTorch modules, so ``state_dict`` keys and
shapes are interchangeable with the released ``.pt`` checkpoints. The computations follow the
official code on square inputs; the sampling helpers are written for any grid shape.

Conventions: feature grids are channels-last ``[batch, time, height, width, channels]``; image
points are raster ``(x, y)`` with (0, 0) the top-left corner of the top-left pixel; query points
are ``(t, y, x)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def gelu(x: torch.Tensor) -> torch.Tensor:
    """The tanh-approximated GELU used throughout TAPIR (Haiku's default)."""
    return F.gelu(x, approximate="tanh")


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Normalise the last axis to unit length (with the 1e-12 floor of the reference code)."""
    return x / torch.sqrt(torch.clamp_min(torch.sum(torch.square(x), dim=-1, keepdim=True), 1e-12))


def convert_grid_coordinates(
    coords: torch.Tensor, input_grid_size: Sequence[int], output_grid_size: Sequence[int]
) -> torch.Tensor:
    """Rescale coordinates between grids of different sizes (corners aligned).

    ``coords[..., i]`` is measured on an axis of length ``input_grid_size[i]``: pass (width, height)
    for (x, y) points and (frames, height, width) for (t, y, x) points.
    """
    if len(input_grid_size) != coords.shape[-1] or len(output_grid_size) != coords.shape[-1]:
        raise ValueError(f"grid sizes {input_grid_size}, {output_grid_size} do not match coords {coords.shape}")
    out_size = torch.tensor(tuple(output_grid_size), device=coords.device)
    in_size = torch.tensor(tuple(input_grid_size), device=coords.device)
    return coords * out_size / in_size


def generate_default_resolutions(
    full_size: Sequence[int], train_size: Sequence[int], num_levels: int | None = None
) -> list[tuple[int, int]]:
    """Log-spaced (height, width) refinement resolutions from ``train_size`` up to ``full_size``.

    Each size is rounded down to a multiple of 8. A video no larger than ``train_size`` is refined
    once, at ``train_size``.
    """
    train_size = (int(train_size[0]), int(train_size[1]))
    if tuple(int(s) for s in full_size[:2]) == train_size:
        return [train_size]
    if num_levels is None:
        size_ratio = np.array(full_size[:2], dtype=np.float64) / np.array(train_size, dtype=np.float64)
        num_levels = int(np.ceil(np.max(np.log2(size_ratio))) + 1)
    if num_levels <= 1:
        return [train_size]
    h, w = full_size[:2]
    ll_h, ll_w = train_size
    sizes = []
    for i in range(num_levels):
        frac = i / (num_levels - 1)
        sizes.append(
            (int(round((ll_h * (h / ll_h) ** frac) // 8)) * 8, int(round((ll_w * (w / ll_w) ** frac) // 8)) * 8)
        )
    return sizes


def resize_video(video: torch.Tensor, resolution: Sequence[int]) -> torch.Tensor:
    """Bilinearly resize ``[B, T, H, W, C]`` frames to ``resolution`` = (height, width).

    Downsampling is antialiased, as ``jax.image.resize`` does in the reference JAX model.
    """
    b, t, h, w, c = video.shape
    x = video.permute(0, 1, 4, 2, 3).reshape(b, t * c, h, w)
    antialias = resolution[0] < h or resolution[1] < w
    x = F.interpolate(x, size=tuple(resolution), mode="bilinear", align_corners=False, antialias=antialias)
    return x.reshape(b, t, c, *x.shape[-2:]).permute(0, 1, 3, 4, 2)


def sample_query_features(grid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Trilinearly sample ``grid`` [B, T, H, W, C] at ``positions`` [B, N, 3] = (t, y, x).

    (y, x) are raster coordinates in grid cells and t is a frame index; positions outside the grid
    are clamped to its border. Returns [B, N, C].
    """
    dtype = torch.promote_types(grid.dtype, torch.float32)  # sub-pixel positions need >= fp32
    x = grid.permute(0, 4, 1, 2, 3).to(dtype)
    y = positions[:, :, None, None, :].to(dtype)
    y = y + torch.tensor([0.5, 0.0, 0.0], device=y.device)
    y = 2 * (y / torch.tensor(x.shape[2:], device=y.device)) - 1
    y = torch.flip(y, dims=(-1,))
    out = F.grid_sample(x, y, mode="bilinear", align_corners=False, padding_mode="border")
    return out[:, :, :, 0, 0].permute(0, 2, 1)  # indexing, not squeeze(dim=tuple): exportable to ONNX


def patch_correlation(
    grid: torch.Tensor,
    points: torch.Tensor,
    query: torch.Tensor,
    radius: int,
    max_elements: int = 1 << 25,
) -> torch.Tensor:
    """Correlate ``query`` with a bilinearly sampled square patch of ``grid`` around each point.

    Args:
      grid: features [B, T, H, W, C].
      points: patch centres [B, N, T, 2] as raster (x, y) in grid cells; H and W may differ.
      query: [B, N, C], or [B, N, T, C] for a per-frame query.
      radius: the patch is (2 * radius + 1) squared samples at integer offsets from the centre;
        samples outside the grid read zeros.
      max_elements: frames are processed in chunks so that the gathered features stay below this
        many elements.

    Returns:
      [B, N, T, (2 * radius + 1) ** 2] dot products, offsets in row-major (dy, dx) order.

    All samples share the centre's fractional offset, so each patch is a bilinear blend of four
    shifted windows of one (2 * radius + 2) squared block of integer-position correlations.
    """
    b, t, h, w, c = grid.shape
    n = points.shape[1]
    side = 2 * radius + 2
    table = grid.reshape(b * t * h * w, c)
    u = points[..., 1] - 0.5
    v = points[..., 0] - 0.5
    y0 = torch.floor(u)
    x0 = torch.floor(v)
    fy = (u - y0)[..., None, None]
    fx = (v - x0)[..., None, None]
    offsets = torch.arange(-radius, radius + 2, device=grid.device)
    ys = y0.long()[..., None] + offsets
    xs = x0.long()[..., None] + offsets
    valid = ((ys >= 0) & (ys < h))[..., :, None] & ((xs >= 0) & (xs < w))[..., None, :]
    frame_base = (torch.arange(b, device=grid.device)[:, None, None] * t + torch.arange(t, device=grid.device)) * (
        h * w
    )
    index = (
        frame_base[..., None, None] + ys.clamp(0, h - 1)[..., :, None] * w + xs.clamp(0, w - 1)[..., None, :]
    ).reshape(b, n, t, side * side)

    frames_per_chunk = max(1, max_elements // max(1, b * n * side * side * c))
    corrs = []
    for start in range(0, t, frames_per_chunk):
        stop = min(t, start + frames_per_chunk)
        feats = table[index[:, :, start:stop].reshape(-1)].view(b, n, stop - start, side * side, c)
        if query.dim() == 3:
            corrs.append(torch.einsum("bntsc,bnc->bnts", feats, query))
        else:
            corrs.append(torch.einsum("bntsc,bntc->bnts", feats, query[:, :, start:stop]))
    corr = torch.cat(corrs, dim=2) if len(corrs) > 1 else corrs[0]
    corr = corr.view(b, n, t, side, side) * valid
    top = corr[..., :-1, :-1] * (1 - fx) + corr[..., :-1, 1:] * fx
    bottom = corr[..., 1:, :-1] * (1 - fx) + corr[..., 1:, 1:] * fx
    return (top * (1 - fy) + bottom * fy).reshape(b, n, t, (side - 1) ** 2)


def soft_argmax_heatmap(heatmap: torch.Tensor, threshold: float = 5.0) -> torch.Tensor:
    """Soft argmax of probability maps [..., H, W] around their argmax.

    Averages the cell centres within ``threshold`` cells of the argmax cell, weighted by the map.
    Returns [..., 2] = (x, y) in grid cells. Differentiable with respect to ``heatmap``.
    """
    h, w = heatmap.shape[-2:]
    argmax = torch.argmax(heatmap.flatten(-2), dim=-1)
    ys = torch.arange(h, device=heatmap.device, dtype=heatmap.dtype) + 0.5
    xs = torch.arange(w, device=heatmap.device, dtype=heatmap.dtype) + 0.5
    peak_y = ys[argmax // w][..., None]
    peak_x = xs[argmax % w][..., None]
    valid = (torch.square(ys - peak_y)[..., :, None] + torch.square(xs - peak_x)[..., None, :]) < threshold**2
    weights = heatmap * valid
    total = torch.clamp_min(weights.sum(dim=(-2, -1)), 1e-12)
    x = (weights.sum(dim=-2) * xs).sum(dim=-1) / total
    y = (weights.sum(dim=-1) * ys).sum(dim=-1) / total
    return torch.stack([x, y], dim=-1)


def temporal_depthwise_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    causal: bool,
    history: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depthwise convolution along time on channels-last input.

    Args:
      x: [M, T, C].
      weight: [C * multiplier, 1, K], the ``nn.Conv1d(C, C * multiplier, K, groups=C)`` layout.
      bias: [C * multiplier].
      causal: pad K - 1 frames in front (causal) instead of (K - 1) / 2 on each side.
      history: for causal convs, the K - 1 input frames preceding ``x`` (zeros when None).

    Returns [M, T, C * multiplier], output channel ``c * multiplier + m`` reading input channel c.
    The input is repeated to one channel per output so that the conv runs as a channels-last
    depthwise conv, the fast path of oneDNN and cuDNN.
    """
    m_, t, c = x.shape
    k = weight.shape[-1]
    multiplier = weight.shape[0] // c
    padding = 0
    if causal:
        if history is None:
            history = x.new_zeros(m_, k - 1, c)
        x = torch.cat([history, x], dim=1)
    else:
        padding = (k - 1) // 2
    if multiplier > 1:
        x = x[..., None].expand(*x.shape, multiplier).reshape(m_, x.shape[1], c * multiplier)
    images = x.unsqueeze(1).permute(0, 3, 1, 2)
    out = F.conv2d(images, weight.unsqueeze(2), bias, padding=(0, padding), groups=c * multiplier)
    return out.permute(0, 2, 3, 1).reshape(m_, t, c * multiplier)


class ExtraConvBlock(nn.Module):
    """Residual block of the BootsTAPIR extra convs (channels-last in and out)."""

    def __init__(self, channel_dim: int, channel_multiplier: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(channel_dim, elementwise_affine=True, bias=True)
        self.conv = nn.Conv2d(channel_dim, channel_dim * channel_multiplier, kernel_size=3, padding=1)
        self.conv_1 = nn.Conv2d(channel_dim * channel_multiplier, channel_dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(x).permute(0, 3, 1, 2)
        x = x + self.conv_1(gelu(self.conv(x)))
        return x.permute(0, 2, 3, 1)


class ExtraConvs(nn.Module):
    """The BootsTAPIR convolutions applied to the low-resolution features."""

    def __init__(self, num_layers: int = 5, channel_dim: int = 256, channel_multiplier: int = 4):
        super().__init__()
        self.blocks = nn.ModuleList(ExtraConvBlock(channel_dim, channel_multiplier) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class ConvChannelsMixer(nn.Module):
    """Channel MLP of a mixer block."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.mlp2_up = nn.Linear(in_channels, in_channels * 4)
        self.mlp2_down = nn.Linear(in_channels * 4, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp2_down(gelu(self.mlp2_up(x)))


class PIPsConvBlock(nn.Module):
    """Mixer block: temporal depthwise convs (x4 channels, summed back) then a channel MLP."""

    def __init__(self, in_channels: int, kernel_shape: int = 3, use_causal_conv: bool = False):
        super().__init__()
        if kernel_shape % 2 == 0 and not use_causal_conv:
            raise ValueError(f"mixer_kernel_shape must be odd for non-causal convs, got {kernel_shape}")
        self.kernel_shape = kernel_shape
        self.use_causal_conv = use_causal_conv
        self.layer_norm = nn.LayerNorm(in_channels, elementwise_affine=True, bias=False)
        self.mlp1_up = nn.Conv1d(in_channels, in_channels * 4, kernel_shape, groups=in_channels)
        self.mlp1_up_1 = nn.Conv1d(in_channels * 4, in_channels * 4, kernel_shape, groups=in_channels * 4)
        self.layer_norm_1 = nn.LayerNorm(in_channels, elementwise_affine=True, bias=False)
        self.conv_channels_mixer = ConvChannelsMixer(in_channels)

    def forward(
        self, x: torch.Tensor, history: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """x: [M, T, C]. ``history`` (causal only): the last K - 1 frames entering each temporal
        conv before ``x``. Returns the output and, for causal blocks, the history after ``x``."""
        m_, t, c = x.shape
        k = self.kernel_shape
        h = self.layer_norm(x)
        causal = self.use_causal_conv
        hist1, hist2 = history if history is not None else (None, None)
        new_history = None
        if causal:
            hist1 = h.new_zeros(m_, k - 1, c) if hist1 is None else hist1
            hist2 = h.new_zeros(m_, k - 1, 4 * c) if hist2 is None else hist2
        up = gelu(temporal_depthwise_conv(h, self.mlp1_up.weight, self.mlp1_up.bias, causal, hist1))
        if causal:
            new_history = (torch.cat([hist1, h], dim=1)[:, -(k - 1) :], torch.cat([hist2, up], dim=1)[:, -(k - 1) :])
        up = temporal_depthwise_conv(up, self.mlp1_up_1.weight, self.mlp1_up_1.bias, causal, hist2)
        x = x + (up[..., 0::4] + up[..., 1::4] + up[..., 2::4] + up[..., 3::4])
        x = x + self.conv_channels_mixer(self.layer_norm_1(x))
        return x, new_history


class PIPSMLPMixer(nn.Module):
    """Depthwise-conv MLP mixer that refines each track over time."""

    def __init__(
        self,
        input_channels: int,
        output_channels: int,
        hidden_dim: int = 512,
        num_blocks: int = 12,
        kernel_shape: int = 3,
        use_causal_conv: bool = False,
    ):
        super().__init__()
        self.use_causal_conv = use_causal_conv
        self.linear = nn.Linear(input_channels, hidden_dim)
        self.layer_norm = nn.LayerNorm(hidden_dim, elementwise_affine=True, bias=False)
        self.linear_1 = nn.Linear(hidden_dim, output_channels)
        self.blocks = nn.ModuleList(PIPsConvBlock(hidden_dim, kernel_shape, use_causal_conv) for _ in range(num_blocks))

    def forward(
        self, x: torch.Tensor, causal_context: dict[str, torch.Tensor] | None = None, get_causal_context: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: [M, T, input_channels] -> ([M, T, output_channels], causal context).

        ``causal_context`` maps ``block_{i}_causal_1`` / ``block_{i}_causal_2`` to the last K - 1
        frames entering block i's two temporal convs ([M, K - 1, C] and [M, K - 1, 4C]); missing
        context means zeros, i.e. the start of the video.
        """
        if causal_context is not None and not self.use_causal_conv:
            raise ValueError("causal_context needs a model built with use_casual_conv=True")
        x = self.linear(x)
        new_context = {}
        for i, block in enumerate(self.blocks):
            names = (f"block_{i}_causal_1", f"block_{i}_causal_2")
            history = None
            if causal_context is not None:
                history = (causal_context[names[0]], causal_context[names[1]])
            x, new_history = block(x, history)
            if get_causal_context and new_history is not None:
                new_context.update(zip(names, new_history))
        return self.linear_1(self.layer_norm(x)), new_context


class BlockV2(nn.Module):
    """Pre-activation ResNet block with instance norm."""

    def __init__(self, channels_in: int, channels_out: int, stride: int, use_projection: bool):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        # "SAME" padding of the JAX model; for stride 2 on even sizes only the far side matters.
        self.padding = (1, 1, 1, 1) if stride == 1 else (0, 2, 0, 2)
        self.use_projection = use_projection
        if use_projection:
            self.proj_conv = nn.Conv2d(channels_in, channels_out, kernel_size=1, stride=stride, bias=False)
        self.bn_0 = nn.InstanceNorm2d(channels_in, eps=1e-5, affine=True, track_running_stats=False)
        self.conv_0 = nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=stride, bias=False)
        self.conv_1 = nn.Conv2d(channels_out, channels_out, kernel_size=3, padding=1, bias=False)
        self.bn_1 = nn.InstanceNorm2d(channels_out, eps=1e-5, affine=True, track_running_stats=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn_0(inputs))
        shortcut = self.proj_conv(x) if self.use_projection else inputs
        x = self.conv_0(F.pad(x, self.padding))
        x = torch.relu(self.bn_1(x))
        return self.conv_1(x) + shortcut


class BlockGroup(nn.Module):
    """A stage of ResNet blocks; only the first may stride and project."""

    def __init__(self, channels_in: int, channels_out: int, num_blocks: int, stride: int, use_projection: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            BlockV2(
                channels_in if i == 0 else channels_out,
                channels_out,
                stride if i == 0 else 1,
                use_projection and i == 0,
            )
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class ResNet(nn.Module):
    """TAPIR's ResNet-v2 feature extractor (no max-pool, instance norm)."""

    def __init__(
        self,
        blocks_per_group: Sequence[int],
        channels_per_group: Sequence[int] = (64, 128, 256, 256),
        strides: Sequence[int] = (1, 2, 2, 1),
        use_projection: Sequence[bool] = (True, True, True, True),
    ):
        super().__init__()
        self.initial_conv = nn.Conv2d(3, channels_per_group[0], kernel_size=7, stride=2, bias=False)
        self.block_groups = nn.ModuleList(
            BlockGroup(
                channels_per_group[i - 1] if i > 0 else channels_per_group[0],
                channels_per_group[i],
                blocks_per_group[i],
                strides[i],
                use_projection[i],
            )
            for i in range(len(strides))
        )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images [F, 3, H, W] -> the output of every block group (NCHW)."""
        out = self.initial_conv(F.pad(images, (2, 4, 2, 4)))
        outputs = []
        for group in self.block_groups:
            out = group(out)
            outputs.append(out)
        return outputs
