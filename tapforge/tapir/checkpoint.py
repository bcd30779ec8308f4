"""Load TAPIR from any checkpoint format and export it to others.

Formats read by :func:`load_model` (sniffed from the content, not the suffix):

* official tapnet ``.pt``: a bare state_dict. Its config is inferred from the keys (rule below);
* our Lightning ``.ckpt``: ``state_dict`` with keys prefixed ``model.`` and the TAPIR keyword
  arguments in ``hyper_parameters["model"]``;
* our ``.safetensors``: the TAPIR config as JSON in the metadata under ``tapir_config``
  (a safetensors file without it is treated like a tapnet ``.pt``);
* the official TAP-Net ``checkpoint.npy`` (Haiku parameters and batch-norm state): a TAP-Net, see
  ``tapforge.tapir.tapnet``;
* TAPNext: the official JAX ``.npz`` (TAPNext, BootsTAPNext) and torch state dicts, bare or under
  ``state_dict`` with keys prefixed ``tapnext.`` (TAPNext++), their configuration read from the shapes; see
  ``tapforge.tapir.tapnext_checkpoint``.

Config inference for bare state_dicts: ``pyramid_level`` comes from the width of
``torch_pips_mixer.linear.weight`` (388 + 49 * (pyramid_level + 2) inputs); ``extra_convs`` from the
presence of ``extra_convs.*`` keys; ``softmax_temperature`` is 10.0 when extra convs are present
(BootsTAPIR) and 20.0 otherwise (TAPIR); ``use_casual_conv`` cannot be seen in the weights (causal
convs only pad differently), so it is True exactly when the file name contains "causal", as the
official ``causal_*checkpoint.pt`` files do. Explicit overrides win over every inferred or stored value.

Loading is always strict: a mismatch names the missing, unexpected and shape-mismatched keys.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import pickle
import re
import warnings
import zipfile
from typing import Any, Mapping

import torch

from tapforge.base.atomic import atomic_write
from tapforge.base.errors import TapforgeError
from tapforge.tapir.model import TAPIR, postprocess
from tapforge.tapir.tapnet import TAPNet, load_tapnet_checkpoint
from tapforge.tapir.tapnext import TAPNext, track_both_ways
from tapforge.tapir.tapnext_checkpoint import infer_torch_config, is_tapnext_state_dict, read_jax_npz, strip_prefix

MIXER_INPUT_KEY = "torch_pips_mixer.linear.weight"
MIXER_BASE_INPUTS = 4 + 128 + 256
LIGHTNING_PREFIX = "model."
SAFETENSORS_CONFIG_KEY = "tapir_config"
EXPORT_FORMATS = ("tapnet-pt", "safetensors", "onnx", "torchscript")
# settings a tapnet .pt loader is given at load time (tapnet's TAPIR arguments, our --softmax-temperature / --causal)
TAPNET_PT_LOAD_OPTIONS = ("initial_resolution", "softmax_temperature", "use_casual_conv")
ONNX_OPSET = 20  # GridSample-20 accepts the 5-D (volumetric) sampling TAPIR uses for query features


def infer_config(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike = "") -> dict[str, Any]:
    """TAPIR keyword arguments for a bare (official tapnet) state_dict; see the module docstring."""
    if MIXER_INPUT_KEY not in state_dict:
        raise TapforgeError(
            f"checkpoint {os.fspath(path)!r} has no {MIXER_INPUT_KEY!r}, so it is not a TAPIR state_dict; "
            "fix: pass a tapnet TAPIR/BootsTAPIR .pt, a tapforge .ckpt or a tapforge .safetensors file"
        )
    width = state_dict[MIXER_INPUT_KEY].shape[-1]
    pyramid_level, remainder = divmod(width - MIXER_BASE_INPUTS, 49)
    pyramid_level -= 2
    if remainder or pyramid_level < 0:
        raise TapforgeError(
            f"{MIXER_INPUT_KEY} has {width} inputs, which matches no pyramid_level (388 + 49*(level+2)); "
            "fix: use a checkpoint of the TAPIR architecture"
        )
    extra_convs = any(k.startswith("extra_convs.") for k in state_dict)
    return {
        "pyramid_level": int(pyramid_level),
        "extra_convs": extra_convs,
        "softmax_temperature": 10.0 if extra_convs else 20.0,
        "use_casual_conv": "causal" in os.path.basename(os.fspath(path)).lower(),
    }


def _is_numpy_file(path: str) -> bool:
    """True for a ``.npy`` file (the official TAP-Net checkpoint format)."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


def _is_npz(path: str) -> bool:
    """True for a numpy ``.npz`` archive (a zip of ``.npy`` files: the official TAPNext checkpoint format)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return bool(names) and all(name.endswith(".npy") for name in names)


def _read_file(path: str) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, str]:
    """(state_dict, stored config or None, format name) for any supported file."""
    if not os.path.isfile(path):
        raise TapforgeError(f"checkpoint {path!r} does not exist; fix: check the path")
    with open(path, "rb") as f:
        head = f.read(16)
    if zipfile.is_zipfile(path) or head[:1] == b"\x80":
        return _read_torch(path)
    return _read_safetensors(path)


def load_plain(path: str, what: str, fix: str) -> Any:
    """``torch.load(weights_only=True)``: never the full unpickler, since a checkpoint that pickles Python objects
    could run code while it loads. Such a file is one error line naming ``what`` it is, the first object it holds
    and the ``fix``; other read errors pass through."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", str(err))
        if not found:  # a damaged file, not one that names objects
            raise
        raise TapforgeError(
            f"{what} holds Python objects ({found[1]}) besides tensors and plain values, "
            f"which tapforge does not load (unpickling them could run code; nothing was run); fix: {fix}"
        ) from None


def _read_torch(path: str) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, str]:
    try:
        obj = load_plain(path, repr(path), "pass a tapforge checkpoint, an official .pt state_dict, or a .safetensors")
    except TapforgeError:
        raise
    except Exception as err:
        raise TapforgeError(
            f"cannot read checkpoint {path!r} ({type(err).__name__}: {err}); fix: re-download or re-export it"
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        tapnext = strip_prefix(obj["state_dict"])
        if is_tapnext_state_dict(tapnext):  # TAPNext++: keys under "tapnext."
            return tapnext, None, "tapnext-pt"
        state_dict = {
            k[len(LIGHTNING_PREFIX) :]: v for k, v in obj["state_dict"].items() if k.startswith(LIGHTNING_PREFIX)
        }
        if not state_dict:
            raise TapforgeError(
                f"Lightning checkpoint {path!r} has no '{LIGHTNING_PREFIX}*' weights; "
                "fix: pass a checkpoint written by tapforge train"
            )
        config = (obj.get("hyper_parameters") or {}).get("model")
        if isinstance(config, Mapping) and "init_args" in config:
            config = config["init_args"]
        return state_dict, (dict(config) if isinstance(config, Mapping) else None), "lightning"
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), None, "tapnet-pt"
    raise TapforgeError(
        f"{path!r} is neither a state_dict nor a Lightning checkpoint (it holds a {type(obj).__name__}); "
        "fix: pass a tapnet .pt, a tapforge .ckpt or a .safetensors file"
    )


def _read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, str]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            state_dict = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise TapforgeError(
            f"cannot read checkpoint {path!r}: not a torch or safetensors file ({err}); fix: re-download or re-export it"
        ) from None
    config = None
    if SAFETENSORS_CONFIG_KEY in metadata:
        try:
            config = json.loads(metadata[SAFETENSORS_CONFIG_KEY])
        except json.JSONDecodeError as err:
            raise TapforgeError(
                f"{path!r}: metadata {SAFETENSORS_CONFIG_KEY!r} is not JSON ({err}); fix: re-export it"
            ) from None
    return state_dict, config, "safetensors"


ARCHITECTURES = {"tapir": TAPIR, "tapnet": TAPNet, "tapnext": TAPNext}
# what to check when a state dict does not fit the model built for it
_FIT_HINTS = {
    "TAPNext": "a TAPNext checkpoint of this configuration (image_size, width, patch_size, num_heads, lru_width, "
    "depth)",
}


def tracking_outputs(
    model: torch.nn.Module, video: torch.Tensor, query_points: torch.Tensor, query_chunk_size: int = 64
) -> dict[str, torch.Tensor]:
    """The outputs that tracking reads, in eval mode: the model's own, and for a TAPNext those of
    :func:`tapforge.tapir.tapnext.track_both_ways` (frames before a query's frame tracked on the reversed video)."""
    if isinstance(model, TAPNext):
        return track_both_ways(model, video, query_points)
    return model(video, query_points, is_training=False, query_chunk_size=query_chunk_size)


def visibility_uncertainty(model: torch.nn.Module, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """The ``expected_dist`` logits that enter the visibility beside the occlusion logits (``postprocess``), or None:
    TAPIR's (visible where (1 - sigmoid(occlusion)) * (1 - sigmoid(expected_dist)) > 0.5); TAP-Net has none; a
    TAPNext is visible where its visibility logit is positive, the official evaluation's default
    (``use_certainty=False``), and its certainty stays in ``expected_dist`` for the stricter rule."""
    if isinstance(model, TAPNext) or "expected_dist" not in outputs:
        return None
    return outputs["expected_dist"].float()


def model_resolution(model: torch.nn.Module) -> tuple[int, int]:
    """(height, width) the model was trained at: TAPIR's ``initial_resolution``, TAPNext's ``image_size``, else
    256 x 256."""
    config = getattr(model, "config", None) or {}
    return tuple(int(v) for v in config.get("initial_resolution", config.get("image_size", (256, 256))))


def build_model(config: Mapping[str, Any]) -> torch.nn.Module:
    """``TAPIR(**config)`` (or ``TAPNet`` for ``architecture: tapnet``) with JSON lists turned back into tuples
    and unknown keys named."""
    config = dict(config)
    architecture = config.pop("architecture", "tapir")
    if architecture not in ARCHITECTURES:
        raise TapforgeError(
            f"checkpoint config has architecture {architecture!r}; fix: use one of {', '.join(ARCHITECTURES)}"
        )
    model_cls = ARCHITECTURES[architecture]
    accepted = inspect.signature(model_cls).parameters
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise TapforgeError(
            f"checkpoint config has keys {model_cls.__name__} does not take: {', '.join(unknown)}; "
            "fix: the checkpoint was written by another version, re-export it with this one"
        )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return model_cls(**kwargs)


def state_dict_mismatch(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """The missing, unexpected and shape-mismatched keys of ``state_dict`` against ``own``, one phrase per kind."""
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = {k: tuple(getattr(state_dict[k], "shape", ())) for k in set(own) & set(state_dict)}
    mismatched = [
        f"{k} {shapes[k]} vs model {tuple(own[k].shape)}" for k in sorted(shapes) if shapes[k] != tuple(own[k].shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched)):
        if items:
            shown = ", ".join(items[:6]) + (f" ... (+{len(items) - 6} more)" if len(items) > 6 else "")
            problems.append(f"{len(items)} {label} keys: {shown}")
    return problems


def load_state_dict_strict(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Load with strict=True after naming every missing, unexpected and shape-mismatched key."""
    problems = state_dict_mismatch(model.state_dict(), state_dict)
    if problems:
        config = getattr(model, "config", {})
        raise TapforgeError(
            f"{source} does not fit {type(model).__name__}({_format_config(config)}): "
            + "; ".join(problems)
            + "; fix: pass "
            + _FIT_HINTS.get(
                type(model).__name__,
                "the matching config overrides (e.g. pyramid_level, extra_convs) or a TAPIR checkpoint",
            )
        )
    model.load_state_dict(state_dict, strict=True)


def _format_config(config: Mapping[str, Any]) -> str:
    keys = ("pyramid_level", "extra_convs", "softmax_temperature", "use_casual_conv", "initial_resolution")
    keys += ("image_size", "width", "patch_size", "num_heads", "lru_width", "depth")  # TAPNext
    return ", ".join(f"{k}={config[k]!r}" for k in keys if k in config)


def config_overrides(softmax_temperature: float | None = None, causal: bool | None = None) -> dict[str, Any]:
    """Model settings a checkpoint cannot tell (the CLIs' --softmax-temperature / --causal), as overrides."""
    overrides: dict[str, Any] = {}
    if softmax_temperature is not None:
        overrides["softmax_temperature"] = softmax_temperature
    if causal is not None:
        overrides["use_casual_conv"] = causal
    return overrides


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", **overrides: Any) -> torch.nn.Module:
    """TAPIR in eval mode from a tapnet ``.pt``, tapforge ``.ckpt`` or ``.safetensors`` file, TAP-Net from
    the official JAX ``checkpoint.npy`` (see ``tapforge.tapir.tapnet.load_tapnet_checkpoint``), or TAPNext from
    its official ``.npz`` or torch checkpoints (see ``tapforge.tapir.tapnext_checkpoint``).

    ``overrides`` (TAPIR keyword arguments, e.g. ``softmax_temperature=10.0`` or
    ``use_casual_conv=True``) replace stored or inferred config values.
    """
    path = os.fspath(path)
    if _is_numpy_file(path):
        if overrides:
            raise TapforgeError(
                f"{path} is a TAP-Net checkpoint, which takes no TAPIR settings "
                f"({', '.join(sorted(overrides))}); fix: leave those options out"
            )
        return load_tapnet_checkpoint(path, device)
    if _is_npz(path):
        state_dict, config = read_jax_npz(path)
        kind = "TAPNext .npz"
    else:
        state_dict, config, kind = _read_file(path)
    if config is None and is_tapnext_state_dict(state_dict):
        config, kind = infer_torch_config(state_dict, repr(path)), "TAPNext state-dict"
    elif config is None:
        config = infer_config(state_dict, path)
    if config.get("architecture") == "tapnext" and overrides:
        raise TapforgeError(
            f"{path} is a TAPNext checkpoint, which takes no TAPIR settings ({', '.join(sorted(overrides))}); "
            "fix: leave those options out"
        )
    config = {**config, **overrides}
    model = build_model(config)
    load_state_dict_strict(model, state_dict, source=f"{kind} checkpoint {path!r}")
    return model.to(device).eval()


def model_config(model: torch.nn.Module) -> dict[str, Any]:
    """The model's constructor kwargs as JSON-ready values (tuples become lists)."""
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping):
        raise TypeError("model has no `config` dict of constructor kwargs")
    return json.loads(json.dumps(dict(config)))


def _cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.state_dict().items()
    }


def tapnet_pt_differences(model: torch.nn.Module) -> list[str]:
    """Settings of ``model`` that a tapnet ``.pt`` (a bare state_dict) cannot carry: those where it differs from
    what a loader infers from the weights or assumes (TAPIR's defaults), load-time options aside. A TAPNext's
    configuration is read from the shapes alone (its image size from a square patch grid)."""
    own = model_config(model)
    if isinstance(model, TAPNext):
        try:
            assumed = json.loads(json.dumps(infer_torch_config(model.state_dict())))
        except TapforgeError:
            return [f"image_size={own['image_size']!r} (a bare TAPNext state_dict tells only square patch grids)"]
        return [f"{k}={own[k]!r} (a tapnet .pt means {assumed[k]!r})" for k in sorted(assumed) if own[k] != assumed[k]]
    defaults = {
        n: p.default for n, p in inspect.signature(TAPIR).parameters.items() if p.default is not inspect.Parameter.empty
    }
    assumed = json.loads(json.dumps({**defaults, **infer_config(model.state_dict())}))
    return [
        f"{k}={own[k]!r} (a tapnet .pt means {assumed.get(k)!r})"
        for k in sorted(own)
        if k not in TAPNET_PT_LOAD_OPTIONS and own[k] != assumed.get(k)
    ]


def save_tapnet_pt(model: torch.nn.Module, path: str | os.PathLike) -> str:
    """A bare float32 state_dict that the official tapnet TAPIR (or torch TAPNext) loads with strict=True.

    Refused, writing nothing, for a model whose settings the bare format would lose (see tapnet_pt_differences).
    """
    if not isinstance(model, (TAPIR, TAPNext)):
        raise TapforgeError(
            f"a tapnet .pt holds a TAPIR or a TAPNext, and this is a {type(model).__name__}; fix: export --to "
            "safetensors (or onnx, torchscript)"
        )
    differences = tapnet_pt_differences(model)
    if differences:
        raise TapforgeError(
            "a tapnet .pt is a bare state_dict without a config, and this model is not the official "
            f"{type(model).__name__} layout: "
            + ", ".join(differences)
            + "; fix: export --to safetensors (or onnx, torchscript), which keep the config, "
            "or use the .ckpt itself"
        )
    state_dict = _cpu_state_dict(model)
    return atomic_write(path, lambda tmp: torch.save(state_dict, tmp))


def save_safetensors(model: torch.nn.Module, path: str | os.PathLike) -> str:
    """A safetensors file with the TAPIR config as JSON in the metadata under ``tapir_config``."""
    from safetensors.torch import save_file

    from tapforge.base import __version__

    metadata = {SAFETENSORS_CONFIG_KEY: json.dumps(model_config(model)), "producer": f"tapforge {__version__}"}
    state_dict = _cpu_state_dict(model)
    return atomic_write(path, lambda tmp: save_file(state_dict, tmp, metadata=metadata))


CERTAIN_LOGIT = -1e4  # the exported expected_dist of a model without one: sigmoid(-1e4) is 0 in float32


class TrackingGraph(torch.nn.Module):
    """The exported computation: (video, query_points) -> tracks, occlusion, expected_dist, visibility.

    video [1,T,H,W,3] float32 in [-1,1] at the model resolution; query_points [1,N,3] (t,y,x) in
    its pixels. Outputs: tracks [1,N,T,2] (x,y), occlusion and expected_dist logits [1,N,T] and
    visibility = (1 - sigmoid(occlusion)) * (1 - sigmoid(expected_dist)) [1,N,T] (visible > 0.5).
    TAP-Net has no uncertainty head: its expected_dist output is the constant logit ``CERTAIN_LOGIT``
    (sigmoid 0), so the four outputs and their meaning are the same for both models. A TAPNext's are those
    of :func:`tracking_outputs` (both ways in time), its visibility 1 - sigmoid(occlusion) (see
    :func:`visibility_uncertainty`); its expected_dist is logit(1 - certainty).
    """

    def __init__(self, model: torch.nn.Module, query_chunk_size: int):
        super().__init__()
        self.model = model
        self.query_chunk_size = query_chunk_size

    def forward(self, video: torch.Tensor, query_points: torch.Tensor):
        out = tracking_outputs(self.model, video, query_points, self.query_chunk_size)
        expected_dist = (
            out["expected_dist"] if "expected_dist" in out else torch.full_like(out["occlusion"], CERTAIN_LOGIT)
        )
        visibility, _ = postprocess(out["occlusion"], visibility_uncertainty(self.model, out))
        return out["tracks"], out["occlusion"], expected_dist, visibility


class OnlineTrackingGraph(torch.nn.Module):
    """The exported online step of a TAPNext (``TAPNext.tensor_step``): one frame in, the recurrent state carried.

    Inputs: frame [1,1,H,W,3] float32 in [-1,1] at the model resolution; query_points [1,N,3] (t,y,x) pixels, t the
    stream's frame index (a query is shown on its frame; its outputs before it mean nothing); step [] float32, the
    frame's index (0 starts a stream: the state is then not read); rg_lru_state [depth,S,lru_width] and
    conv1d_state [depth,S,3,lru_width] float32 (S = patches of a frame + N; zeros to start). Outputs: tracks
    [1,N,2] (x,y), occlusion, expected_dist and visibility (1 - sigmoid(occlusion)) [1,N] on this frame, and the
    next rg_lru_state and conv1d_state.
    """

    def __init__(self, model: TAPNext):
        super().__init__()
        self.model = model

    def forward(self, frame, query_points, step, rg_lru_state, conv1d_state):
        out, rg_lru_state, conv1d_state = self.model.tensor_step(frame, query_points, step, rg_lru_state, conv1d_state)
        visibility, _ = postprocess(out["occlusion"], None)
        first = [out[k][:, :, 0] for k in ("tracks", "occlusion", "expected_dist")]
        return (*first, visibility[:, :, 0], rg_lru_state, conv1d_state)


def online_example_inputs(model: TAPNext, num_queries: int) -> tuple[torch.Tensor, ...]:
    """Inputs of :class:`OnlineTrackingGraph` for the first frame of a random stream (for tracing)."""
    video, queries = example_inputs(model, 1, num_queries)
    queries[..., 0] = 0
    return (video, queries, torch.zeros(()), *model.initial_state(1, num_queries, model_resolution(model)))


@contextlib.contextmanager
def _unfused_attention():
    """Attention as plain ops while tracing (the fused kernel of nn.MultiheadAttention has no ONNX form)."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


class _ShapeGuard(torch.nn.Module):
    """Refuses inputs of another shape than the traced one (a trace would silently misbehave)."""

    def __init__(self, traced: torch.nn.Module, video_shape: list[int], query_shape: list[int]):
        super().__init__()
        self.traced = traced
        self.video_shape = video_shape
        self.query_shape = query_shape

    def forward(self, video: torch.Tensor, query_points: torch.Tensor):
        if list(video.shape) != self.video_shape or list(query_points.shape) != self.query_shape:
            raise RuntimeError(
                "this TorchScript TAPIR was exported for video "
                + str(self.video_shape)
                + " and query_points "
                + str(self.query_shape)
                + "; re-export with tapforge export --frames/--num-queries for other shapes"
            )
        return self.traced(video, query_points)


def example_inputs(
    model: torch.nn.Module, num_frames: int, num_queries: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random video in [-1,1] at the model resolution and queries inside it, for tracing and checks."""
    height, width = model_resolution(model)
    gen = torch.Generator().manual_seed(seed)
    video = torch.rand(1, num_frames, height, width, 3, generator=gen) * 2 - 1
    t = torch.randint(0, num_frames, (1, num_queries, 1), generator=gen).float()
    yx = torch.rand(1, num_queries, 2, generator=gen) * torch.tensor([height, width])
    return video, torch.cat([t, yx], dim=-1)


def _export_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A float32 CPU eval copy, so exporting leaves the caller's model where it was."""
    return copy.deepcopy(model).float().cpu().eval()


def export_torchscript(model: torch.nn.Module, path: str | os.PathLike, num_frames: int, num_queries: int) -> str:
    """Trace :class:`TrackingGraph` for video [1,num_frames,H,W,3] and num_queries queries (fixed shapes)."""
    model = _export_copy(model)
    video, queries = example_inputs(model, num_frames, num_queries)
    graph = TrackingGraph(model, num_queries)
    with torch.no_grad(), warnings.catch_warnings(), _unfused_attention():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes are fixed by design
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is what this format asks for
        traced = torch.jit.trace(graph, (video, queries), check_trace=False)
        guarded = torch.jit.script(_ShapeGuard(traced, list(video.shape), list(queries.shape)))
        extra = {"tapir_config.json": json.dumps(model_config(model))}
        return atomic_write(path, lambda tmp: torch.jit.save(guarded, tmp, _extra_files=extra))


ONLINE_INPUTS = ["frame", "query_points", "step", "rg_lru_state", "conv1d_state"]
ONLINE_OUTPUTS = ["tracks", "occlusion", "expected_dist", "visibility", "next_rg_lru_state", "next_conv1d_state"]


def export_onnx(
    model: torch.nn.Module, path: str | os.PathLike, num_frames: int, num_queries: int, online: bool = False
) -> str:
    """ONNX (opset 20) of :class:`TrackingGraph` with fixed input shapes, or with ``online`` (TAPNext) of
    :class:`OnlineTrackingGraph` (one frame, the recurrent state as inputs and outputs); config in the metadata."""
    import onnx

    model = _export_copy(model)
    if online:
        if not isinstance(model, TAPNext):
            raise TapforgeError(
                f"an online ONNX step carries TAPNext's recurrent state, and this is a {type(model).__name__}; "
                "fix: leave out --online (or export a TAPNext)"
            )
        graph, inputs = OnlineTrackingGraph(model), online_example_inputs(model, num_queries)
        names, outputs = ONLINE_INPUTS, ONLINE_OUTPUTS
        described = "one frame of a stream; see tapforge.tapir.checkpoint.OnlineTrackingGraph"
    else:
        graph, inputs = TrackingGraph(model, num_queries), example_inputs(model, num_frames, num_queries)
        names, outputs = ["video", "query_points"], ["tracks", "occlusion", "expected_dist", "visibility"]
        described = "video [1,T,H,W,3] float32 in [-1,1]; query_points [1,N,3] (t,y,x) pixels"

    def write(tmp: str) -> None:
        with torch.no_grad(), warnings.catch_warnings(), _unfused_attention():
            warnings.simplefilter("ignore")  # tracer and legacy-exporter notices; shapes are fixed
            torch.onnx.export(
                graph,
                inputs,
                tmp,
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=names,
                output_names=outputs,
            )
        proto = onnx.load(tmp)
        for key, value in ((SAFETENSORS_CONFIG_KEY, json.dumps(model_config(model))), ("inputs", described)):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, tmp)

    return atomic_write(path, write)
