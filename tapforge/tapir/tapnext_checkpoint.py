"""TAPNext checkpoints: the released JAX ``.npz`` files (TAPNext, BootsTAPNext) and torch state dicts (TAPNext++).

The ``.npz`` holds the JAX model's parameters flattened to ``/``-joined names (``backbone/embedding/kernel``,
``backbone/Transformer/encoderblock_3/vit_block/MlpBlock_0/Dense_0/kernel``, ``visible_head/layers_0/kernel``,
...). :func:`state_dict_from_jax` maps them as the official ``restore_model_from_jax_checkpoint`` does: dense
kernels [in, out] are transposed, the patch kernel [1, ph, pw, 3, C] becomes [C, 3, ph, pw], the attention's
query/key/value kernels [C, heads, C/heads] are stacked into ``in_proj_weight`` and its output kernel
[heads, C/heads, C] flattened, layer-norm ``scale`` becomes ``weight``; the query position embedding, a fixed
function of the configuration, is not stored. :func:`jax_arrays` is the inverse (the official
``convert_pytorch_model_to_jax_checkpoint``). The configuration is read from the shapes (:func:`infer_jax_config`,
:func:`infer_torch_config`); every missing, unexpected or mis-shaped entry is named.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tapforge.base.errors import TapforgeError
from tapforge.tapir.tapnext import TAPNext, posemb_sincos_2d

BLOCK = "backbone/Transformer/encoderblock_{}"
BUFFERS = ("query_pos_embed",)  # computed from the configuration, never in a JAX checkpoint
TORCH_PREFIX = "tapnext."  # TAPNext++'s Lightning checkpoints prefix the model's keys with it
_SIMPLE = {
    "lin_proj.bias": "backbone/embedding/bias",
    "mask_token": "backbone/mask_token",
    "point_query_token": "backbone/point_query_token",
    "unknown_token": "backbone/unknown_token",
    "image_pos_emb": "backbone/pos_embedding",
    "encoder_norm.weight": "backbone/Transformer/encoder_norm/scale",
    "encoder_norm.bias": "backbone/Transformer/encoder_norm/bias",
}
_VIT = {
    "ln_1.weight": "LayerNorm_0/scale",
    "ln_1.bias": "LayerNorm_0/bias",
    "ln_2.weight": "LayerNorm_1/scale",
    "ln_2.bias": "LayerNorm_1/bias",
    "mlp.0.weight": "MlpBlock_0/Dense_0/kernel",
    "mlp.0.bias": "MlpBlock_0/Dense_0/bias",
    "mlp.3.weight": "MlpBlock_0/Dense_1/kernel",
    "mlp.3.bias": "MlpBlock_0/Dense_1/bias",
    "self_attention.out_proj.bias": "MultiHeadDotProductAttention_0/out/bias",
}
_ATTENTION = "MultiHeadDotProductAttention_0/{}/{}"
_QKV = ("query", "key", "value")


def _jax_key(key: str) -> str:
    """The JAX name of a tensor that maps one to one (all but the attention's input and output projections)."""
    if key in _SIMPLE:
        return _SIMPLE[key]
    match = re.fullmatch(r"blocks\.(\d+)\.(ssm_block|vit_block)\.(.+)", key)
    if match:
        layer, part, name = match.groups()
        name = name.replace(".", "/").replace("weight", "kernel") if part == "ssm_block" else _VIT[name]
        return f"{BLOCK.format(layer)}/{part}/{name}"
    head, index, name = key.split(".")  # visible_head.4.weight
    name = {"weight": "scale" if index in ("1", "4") else "kernel", "bias": "bias"}[name]
    return f"{head}/layers_{index}/{name}"


def _is_dense_kernel(key: str) -> bool:
    return key.endswith("weight") and not key.startswith("encoder_norm") and not re.search(r"(ln_\d|head\.[14])\.", key)


def _jax_tensors(state_dict: Mapping[str, torch.Tensor], num_heads: int) -> dict[str, torch.Tensor]:
    """JAX name -> tensor in the JAX layout (torch ops only, so it also runs on the meta device)."""
    out = {}
    for key, value in state_dict.items():
        if key in BUFFERS:
            continue
        prefix, _, name = key.rpartition("self_attention.")
        if name in ("in_proj_weight", "in_proj_bias", "out_proj.weight"):
            block = _jax_key(prefix + "ln_1.weight").rsplit("/", 2)[0]
            width = value.shape[-1] if name != "in_proj_bias" else value.shape[0] // 3
            heads = (num_heads, width // num_heads)
            if name == "out_proj.weight":
                out[f"{block}/{_ATTENTION.format('out', 'kernel')}"] = value.T.reshape(*heads, width)
                continue
            for part, chunk in zip(_QKV, value.chunk(3, dim=0)):
                if name == "in_proj_weight":
                    out[f"{block}/{_ATTENTION.format(part, 'kernel')}"] = chunk.T.reshape(width, *heads)
                else:
                    out[f"{block}/{_ATTENTION.format(part, 'bias')}"] = chunk.reshape(heads)
        elif key == "lin_proj.weight":
            out["backbone/embedding/kernel"] = value.permute(2, 3, 1, 0)[None]
        else:
            out[_jax_key(key)] = value.T if _is_dense_kernel(key) else value
    return out


def jax_layout(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """JAX name -> shape of every entry of the ``.npz`` of a TAPNext built with ``config``."""
    with torch.device("meta"):
        model = TAPNext(**{k: v for k, v in config.items() if k != "architecture"})
    return {k: tuple(v.shape) for k, v in _jax_tensors(model.state_dict(), model.num_heads).items()}


def jax_arrays(model: TAPNext) -> dict[str, np.ndarray]:
    """The model's parameters as the official JAX ``.npz`` names and lays them out (float32)."""
    state_dict = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    return {k: np.ascontiguousarray(v.numpy()) for k, v in _jax_tensors(state_dict, model.num_heads).items()}


def state_dict_from_jax(arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A :class:`TAPNext` state dict from the JAX entries (already checked against :func:`jax_layout`)."""
    config = {k: v for k, v in config.items() if k != "architecture"}
    with torch.device("meta"):
        own = TAPNext(**config).state_dict()
    out = {}
    for key, meta in own.items():
        if key in BUFFERS:
            image_size = config.get("image_size", (256, 256))
            out[key] = posemb_sincos_2d(image_size[0], image_size[1], meta.shape[-1])
            continue
        prefix, _, name = key.rpartition("self_attention.")
        if name in ("in_proj_weight", "in_proj_bias", "out_proj.weight"):
            block = _jax_key(prefix + "ln_1.weight").rsplit("/", 2)[0]
            width = meta.shape[-1]
            if name == "out_proj.weight":
                value = _tensor(arrays[f"{block}/{_ATTENTION.format('out', 'kernel')}"]).reshape(width, width).T
            elif name == "in_proj_weight":
                parts = [_tensor(arrays[f"{block}/{_ATTENTION.format(p, 'kernel')}"]) for p in _QKV]
                value = torch.cat([p.reshape(width, width).T for p in parts])
            else:
                value = torch.cat([_tensor(arrays[f"{block}/{_ATTENTION.format(p, 'bias')}"]).flatten() for p in _QKV])
        elif key == "lin_proj.weight":
            value = _tensor(arrays["backbone/embedding/kernel"])[0].permute(3, 2, 0, 1)
        else:
            value = _tensor(arrays[_jax_key(key)])
            value = value.T if _is_dense_kernel(key) else value
        out[key] = value.contiguous()
    return out


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, np.float32).copy())


def _required(source: Mapping[str, Any], key: str, what: str) -> tuple[int, ...]:
    if key not in source:
        raise TapforgeError(
            f"{what} has no {key!r}, so it is not a TAPNext checkpoint; fix: pass the official tapnext_ckpt.npz, "
            "bootstapnext_ckpt.npz or a TAPNext++ .pt"
        )
    return tuple(np.shape(source[key]))


def _square_side(tokens: int, what: str) -> int:
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise TapforgeError(
            f"{what} has {tokens} patch positions, not a square grid, so its image_size cannot be read from it; "
            "fix: load it with an explicit image_size"
        )
    return side


def infer_jax_config(arrays: Mapping[str, np.ndarray], what: str = "the checkpoint") -> dict[str, Any]:
    """TAPNext constructor arguments read from the shapes of a JAX ``.npz`` (square images assumed)."""
    kernel = _required(arrays, "backbone/embedding/kernel", what)
    block = BLOCK.format(0) + "/ssm_block/recurrent_block/"
    lru_width = _required(arrays, block + "linear_x/kernel", what)[-1]
    num_heads = _required(arrays, block + "rg_lru/input_gate/w", what)[0]
    side = _square_side(_required(arrays, "backbone/pos_embedding", what)[1], what)
    layers = {int(m.group(1)) for k in arrays if (m := re.match(r"backbone/Transformer/encoderblock_(\d+)/", k))}
    return {
        "architecture": "tapnext",
        "image_size": (side * kernel[1], side * kernel[2]),
        "width": kernel[-1],
        "patch_size": (kernel[1], kernel[2]),
        "num_heads": num_heads,
        "lru_width": lru_width,
        "depth": max(layers) + 1,
    }


def is_tapnext_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """True for the keys of a torch TAPNext (official or ours)."""
    return "lin_proj.weight" in state_dict and "blocks.0.ssm_block.temporal_pre_norm.scale" in state_dict


def strip_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A TAPNext++ checkpoint's keys without their ``tapnext.`` prefix (as the official loader strips it)."""
    return {k.removeprefix(TORCH_PREFIX): v for k, v in state_dict.items()}


def infer_torch_config(state_dict: Mapping[str, torch.Tensor], what: str = "the checkpoint") -> dict[str, Any]:
    """TAPNext constructor arguments read from the shapes of a torch state dict (square images assumed)."""
    width, _, patch_h, patch_w = _required(state_dict, "lin_proj.weight", what)
    block = "blocks.0.ssm_block.recurrent_block."
    side = _square_side(_required(state_dict, "image_pos_emb", what)[1], what)
    layers = {int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}
    return {
        "architecture": "tapnext",
        "image_size": (side * patch_h, side * patch_w),
        "width": width,
        "patch_size": (patch_h, patch_w),
        "num_heads": _required(state_dict, block + "rg_lru.input_gate.w", what)[0],
        "lru_width": _required(state_dict, block + "linear_x.weight", what)[0],
        "depth": max(layers) + 1,
    }


def _listed(label: str, items: list[str]) -> str:
    shown = ", ".join(items[:6]) + (f" ... (+{len(items) - 6} more)" if len(items) > 6 else "")
    return f"{len(items)} {label}: {shown}"


def read_jax_npz(path: str | os.PathLike, **overrides: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, config) of a TAPNext from the official JAX ``.npz``; ``overrides`` replace inferred values.

    Raises TapforgeError naming every missing, unexpected and mis-shaped entry. Arrays are read without pickle."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise TapforgeError(
            f"cannot read {path!r} as a TAPNext .npz ({err}); fix: re-download the official tapnext_ckpt.npz"
        ) from None
    config = {**infer_jax_config(arrays, repr(path)), **overrides}
    expected = jax_layout(config)
    found = {k: tuple(np.shape(v)) for k, v in arrays.items()}
    problems = [
        _listed(label, items)
        for label, items in (
            ("missing", sorted(set(expected) - set(found))),
            ("unexpected", sorted(set(found) - set(expected))),
            (
                "of the wrong shape",
                [
                    f"{k} {found[k]} vs {expected[k]}"
                    for k in sorted(set(found) & set(expected))
                    if found[k] != expected[k]
                ],
            ),
        )
        if items
    ]
    if problems:
        shown = ", ".join(f"{k}={v!r}" for k, v in config.items() if k != "architecture")
        raise TapforgeError(
            f"{path!r} does not fit TAPNext({shown}): " + "; ".join(problems) + "; fix: pass the official "
            "tapnext_ckpt.npz or bootstapnext_ckpt.npz unchanged"
        )
    return state_dict_from_jax(arrays, config), config
