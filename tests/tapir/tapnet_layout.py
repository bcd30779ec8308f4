"""TAP-Net parameters in the official Haiku layout, with seeded random values, and the reference inputs.

The layout is that of tapnet's ``checkpoint.npy`` (``{"params": {module: {name: array}}, "state": {...}}``);
``make_tapnet_reference.py`` checks it against the official model's own initialisation. The values are
drawn from a seed, so the test rebuilds the same checkpoint without storing it.
"""

from __future__ import annotations

import numpy as np

PREFIX = "tap_net/~/"
BACKBONE = PREFIX + "tsm_resnet_video/"
UNITS = ((64, 64), (64, 128), (128, 256))  # (in, out) channels of units 0-2
NUM_FRAMES, SIZE, NUM_QUERIES = 8, 256, 16


def haiku_params_layout() -> dict[str, dict[str, tuple[int, ...]]]:
    """Module -> parameter -> shape, as the official TAP-Net has them."""
    layout = {BACKBONE + "tsm_resnet_stem": {"w": (7, 7, 3, 64)}}
    for unit, (c_in, c_out) in enumerate(UNITS):
        for block in (0, 1):
            first = c_in if block == 0 else c_out
            name = f"{BACKBONE}tsm_resnet_unit_{unit}/block_{block}/"
            layout[name + "batch_norm"] = {"scale": (1, 1, 1, first), "offset": (1, 1, 1, first)}
            if block == 0:
                layout[name + "shortcut_conv"] = {"w": (1, 1, first, c_out)}
            layout[name + "conv_0"] = {"w": (3, 3, first, c_out)}
            layout[name + "batch_norm_1"] = {"scale": (1, 1, 1, c_out), "offset": (1, 1, 1, c_out)}
            layout[name + "conv_2"] = {"w": (3, 3, c_out, c_out)}
    layout[PREFIX + "cost_volume_regression_1"] = {"w": (1, 3, 3, 1, 16), "b": (16,)}
    layout[PREFIX + "cost_volume_regression_2"] = {"w": (1, 3, 3, 16, 1), "b": (1,)}
    layout[PREFIX + "cost_volume_occlusion_1"] = {"w": (1, 3, 3, 16, 32), "b": (32,)}
    layout[PREFIX + "cost_volume_occlusion_2"] = {"w": (32, 16), "b": (16,)}
    layout[PREFIX + "occlusion_out"] = {"w": (16, 1), "b": (1,)}
    return layout


def random_haiku_checkpoint(seed: int = 0) -> dict:
    """``{"params", "state"}`` in the official layout: He-scaled kernels, batch norm near identity."""
    rng = np.random.default_rng(seed)
    params, state = {}, {}
    for module, shapes in haiku_params_layout().items():
        params[module] = {}
        for name, shape in shapes.items():
            if name == "w":
                fan_in = int(np.prod(shape[:-1]))
                value = rng.normal(0, np.sqrt(2 / fan_in), shape)
            elif name == "scale":
                value = rng.uniform(0.8, 1.2, shape)
            else:  # offset, b
                value = rng.normal(0, 0.1, shape)
            params[module][name] = value.astype(np.float32)
        if module.endswith(("batch_norm", "batch_norm_1")):
            shape = shapes["scale"]
            state[module + "/~/mean_ema"] = {
                "average": rng.normal(0, 0.2, shape).astype(np.float32),
                "hidden": np.zeros(shape, np.float32),
                "counter": np.int32(1000),
            }
            state[module + "/~/var_ema"] = {
                "average": rng.uniform(0.5, 2.0, shape).astype(np.float32),
                "hidden": np.zeros(shape, np.float32),
                "counter": np.int32(1000),
            }
    return {"params": params, "state": state}


def reference_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random image moving 3 px right and 2 px down per frame, [1,T,256,256,3] in [-1, 1], and
    query points [1,N,3] (t, y, x) pixels."""
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(SIZE), np.fft.fftfreq(SIZE), indexing="ij"))
    f[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.standard_normal((3, SIZE, SIZE))) * f**-1.0
    image = np.moveaxis(np.fft.ifft2(spectrum).real, 0, -1)
    image = np.tanh(image / image.std())
    video = np.stack([np.roll(image, (2 * t, 3 * t), axis=(0, 1)) for t in range(NUM_FRAMES)])[None]
    queries = np.stack(
        [
            rng.integers(0, NUM_FRAMES, NUM_QUERIES),
            rng.uniform(8, SIZE - 8, NUM_QUERIES),
            rng.uniform(8, SIZE - 8, NUM_QUERIES),
        ],
        -1,
    )[None]
    return video.astype(np.float32), queries.astype(np.float32)
