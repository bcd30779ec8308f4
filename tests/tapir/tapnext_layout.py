"""A small TAPNext configuration with seeded parameters and inputs, shared by ``make_tapnext_reference.py`` (which
runs the official torch TAPNext on them) and ``test_tapnext.py`` (which runs ours without the official code).

Every value is drawn from the seed and the parameter's name alone, so the official model and ours get the same
numbers whatever order their modules list their parameters in.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np

TINY = {"image_size": (64, 64), "width": 32, "patch_size": (8, 8), "num_heads": 2, "lru_width": 32, "depth": 2}
BATCH, FRAMES = 2, 6
QUERY_FRAMES = ((0, 2, 5, 3), (1, 0, 4, 5))  # per batch element: frame 0, later frames, the last frame
TOKENS = ("mask_token", "unknown_token", "point_query_token", "image_pos_emb")


def random_parameters(shapes: Mapping[str, Sequence[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """float32 values for parameters named as the official TAPNext names them: fan-in scaled weights, norms near
    identity, small biases, strong tokens, RG-LRU decays spread over (0.3, 0.95), peaked position logits."""
    params = {}
    for key, shape in shapes.items():
        rng = np.random.RandomState(zlib.crc32(f"{seed}/{key}".encode()))
        name = key.rpartition(".")[2]
        shape = tuple(shape)
        if key in TOKENS or key.endswith("conv_1d.w"):
            value = rng.normal(0, 0.5, shape)
        elif name == "a_param":
            value = rng.uniform(-4.0, -1.0, shape)
        elif name == "scale":  # RMS norms, applied as 1 + scale
            value = rng.normal(0, 0.1, shape)
        elif name == "weight" and len(shape) == 1:  # layer norms
            value = 1 + rng.normal(0, 0.1, shape)
        elif name in ("bias", "b", "in_proj_bias"):
            value = rng.normal(0, 0.1, shape)
        else:  # weights: [out, in, ...], block-diagonal [H, in, out], gated MLP [2, in, out]
            fan_in = shape[1] if len(shape) == 3 else int(np.prod(shape[1:]))
            gain = 4.0 if key == "coordinate_head.6.weight" else 1.0  # peaked position logits
            value = rng.normal(0, gain / np.sqrt(fan_in), shape)
        params[key] = value.astype(np.float32)
    return params


def reference_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Video [BATCH, FRAMES, H, W, 3] uniform in [-1, 1] and queries [BATCH, 4, 3] (t, y, x) pixels."""
    rng = np.random.RandomState(seed)
    height, width = TINY["image_size"]
    video = rng.uniform(-1, 1, (BATCH, FRAMES, height, width, 3))
    frames = np.asarray(QUERY_FRAMES, np.float64)
    yx = rng.uniform(1, height - 1, frames.shape + (2,)) * [1, width / height]
    return video.astype(np.float32), np.concatenate([frames[..., None], yx], -1).astype(np.float32)


def layout_text(shapes: Mapping[str, Sequence[int]]) -> str:
    """``key shape`` lines, sorted, for storing a layout in the reference file."""
    return "\n".join(f"{k} {tuple(int(s) for s in shapes[k])}" for k in sorted(shapes))
