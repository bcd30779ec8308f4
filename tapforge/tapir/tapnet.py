"""TAP-Net (Doersch et al., "TAP-Vid", NeurIPS 2022) in PyTorch, equal to the official JAX/Haiku model.

A TSM-ResNet-18 (ResNet V2 blocks with a temporal channel shift, batch norm) up to its third unit gives
L2-normalised stride-8 features per frame; each query's feature (trilinearly sampled at the query point) is
correlated with every frame's features, and two small conv heads turn that cost volume into a position
(spatial softmax, soft argmax around the peak) and an occlusion logit per frame. Same conventions as
`tapforge.tapir.TAPIR`: video [B,T,H,W,3] in [-1, 1], queries [B,N,3] (t, y, x) pixels; outputs ``tracks``
[B,N,T,2] (x, y) pixels and ``occlusion`` logits [B,N,T] (occluded where > 0). TAP-Net has no
uncertainty head.

Convolutions pad as Haiku's ``SAME`` does (the extra row and column of a strided convolution on the bottom
and right), so the official ``checkpoint.npy`` loads (`load_tapnet_checkpoint` below) and gives its outputs.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tapforge.base import safe_pickle
from tapforge.base.errors import TapforgeError
from tapforge.tapir import nets

BN_EPS = 1e-5  # Haiku's BatchNorm default
BN_MOMENTUM = 0.1  # Haiku's decay_rate 0.9
SOFTMAX_TEMPERATURE = 10.0
SOFT_ARGMAX_THRESHOLD = 5.0
UNIT_CHANNELS = (64, 128, 256)  # ResNet-18 units 0-2 (Haiku's 256, 512, 1024 over 4: no bottleneck)
UNIT_STRIDES = (1, 2, 1)  # output stride 8
CHANNEL_SHIFT = (0.125, 0.125, 0.0)


def same_padding(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad [N,C,H,W] as TensorFlow / Haiku ``SAME`` does: total max(k - s, 0) (by the remainder), the odd
    pixel at the bottom and right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last axis first
        total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class SameConv2d(nn.Conv2d):
    """A square-kernel convolution with Haiku ``SAME`` padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, bias: bool = False):
        super().__init__(in_channels, out_channels, kernel, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(same_padding(x, self.kernel_size[0], self.stride[0]), self.weight, self.bias, self.stride)


def temporal_shift(x: torch.Tensor, num_frames: int, fraction: float) -> torch.Tensor:
    """TSM on [B*T,C,H,W]: the last ``fraction`` of the channels come from the next frame (moved to the front),
    the first ``fraction`` from the previous frame (moved to the back), zeros past the clip's ends."""
    n_shift = int(x.shape[1] * fraction)
    if n_shift == 0:
        return x
    clips = x.reshape(-1, num_frames, *x.shape[1:])
    from_next = F.pad(clips[:, 1:, -n_shift:], (0, 0, 0, 0, 0, 0, 0, 1))
    from_previous = F.pad(clips[:, :-1, :n_shift], (0, 0, 0, 0, 0, 0, 1, 0))
    shifted = torch.cat([from_next, clips[:, :, n_shift:-n_shift], from_previous], dim=2)
    return shifted.reshape(x.shape)


class TSMBlock(nn.Module):
    """A ResNet V2 basic block (pre-activation batch norm and ReLU) with a temporal shift before its convs."""

    def __init__(self, in_channels: int, channels: int, stride: int, projection: bool, shift: float):
        super().__init__()
        self.shift = shift
        self.batch_norm = nn.BatchNorm2d(in_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.shortcut_conv = SameConv2d(in_channels, channels, 1, stride) if projection else None
        self.conv_0 = SameConv2d(in_channels, channels, 3, stride)
        self.batch_norm_1 = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv_2 = SameConv2d(channels, channels, 3, 1)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        preact = F.relu(self.batch_norm(x))
        shortcut = self.shortcut_conv(preact) if self.shortcut_conv is not None else x
        residual = self.conv_0(temporal_shift(preact, num_frames, self.shift))
        residual = self.conv_2(F.relu(self.batch_norm_1(residual)))
        return shortcut + residual


class TSMResNet(nn.Module):
    """TSM-ResNet-18 from the stem to the end of unit 2 (``tsm_resnet_unit_2``): stride 8, 256 channels."""

    def __init__(self):
        super().__init__()
        self.stem = SameConv2d(3, 64, 7, 2)
        units, in_channels = [], 64
        for channels, stride, shift in zip(UNIT_CHANNELS, UNIT_STRIDES, CHANNEL_SHIFT):
            units.append(
                nn.ModuleList(
                    [
                        TSMBlock(in_channels, channels, stride, True, shift),
                        TSMBlock(channels, channels, 1, False, shift),
                    ]
                )
            )
            in_channels = channels
        self.units = nn.ModuleList(units)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """[B,T,H,W,3] -> [B,T,H/8,W/8,256]."""
        b, t, h, w, _ = video.shape
        x = self.stem(video.reshape(b * t, h, w, 3).permute(0, 3, 1, 2))
        x = F.max_pool2d(same_padding(x, 3, 2, float("-inf")), 3, 2)
        for unit in self.units:
            for block in unit:
                x = block(x, t)
        return x.permute(0, 2, 3, 1).reshape(b, t, *x.shape[2:], x.shape[1])


class TAPNet(nn.Module):
    """TAP-Net with the official defaults (feature stride 8, one cost-volume head, softmax temperature 10).

    ``query_chunk_size`` bounds the memory of the cost volume ([N, T, H/8, W/8] x 32 channels per chunk).
    """

    def __init__(self, softmax_temperature: float = SOFTMAX_TEMPERATURE):
        super().__init__()
        # what a checkpoint stores to rebuild it (tapforge.tapir.checkpoint.build_model reads "architecture")
        self.config = {"architecture": "tapnet", "softmax_temperature": float(softmax_temperature)}
        self.softmax_temperature = float(softmax_temperature)
        self.tsm_resnet = TSMResNet()
        self.cost_volume_regression_1 = nn.Conv2d(1, 16, 3)
        self.cost_volume_regression_2 = nn.Conv2d(16, 1, 3)
        self.cost_volume_occlusion_1 = nn.Conv2d(16, 32, 3, stride=2)
        self.cost_volume_occlusion_2 = nn.Linear(32, 16)
        self.occlusion_out = nn.Linear(16, 1)

    def feature_grid(self, video: torch.Tensor) -> torch.Tensor:
        """Unit-norm features [B,T,H/8,W/8,256] of a video [B,T,H,W,3] in [-1, 1]."""
        return nets.l2_normalize(self.tsm_resnet(video))

    def _same(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(same_padding(x, conv.kernel_size[0], conv.stride[0]), conv.weight, conv.bias, conv.stride)

    def tracks_from_cost_volume(
        self, query_features: torch.Tensor, grid: torch.Tensor, query_points: torch.Tensor, image_size: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions [B,N,T,2] (x, y) pixels and occlusion logits [B,N,T] of queries [B,N,C] in a grid
        [B,T,h,w,C]; ``query_points`` [B,N,3] (t, y, x) pixels of an image of ``image_size`` (H, W)."""
        b, t, h, w, _ = grid.shape
        n = query_features.shape[1]
        cost = torch.einsum("bnc,bthwc->bnthw", query_features, grid).reshape(b * n * t, 1, h, w)
        hidden = F.relu(self._same(self.cost_volume_regression_1, cost))
        logits = self._same(self.cost_volume_regression_2, hidden).reshape(b, n, t, h * w)
        heatmap = torch.softmax(logits * self.softmax_temperature, dim=-1).reshape(b, n, t, h, w)
        points = nets.soft_argmax_heatmap(heatmap, SOFT_ARGMAX_THRESHOLD)
        points = nets.convert_grid_coordinates(points, (w, h), (image_size[1], image_size[0]))
        # the query frame returns the query point itself
        query_frame = torch.round(query_points[..., 0]).long()
        at_query = (torch.arange(t, device=grid.device) == query_frame[..., None])[..., None]
        points = torch.where(at_query, query_points[:, :, None, [2, 1]].to(points.dtype), points)

        occlusion = self._same(self.cost_volume_occlusion_1, hidden).mean(dim=(-2, -1))
        occlusion = self.occlusion_out(F.relu(self.cost_volume_occlusion_2(occlusion)))
        return points, occlusion.reshape(b, n, t)

    def forward(
        self,
        video: torch.Tensor,
        query_points: torch.Tensor,
        is_training: bool = False,
        query_chunk_size: int | None = 64,
    ) -> dict[str, torch.Tensor]:
        """``tracks`` [B,N,T,2] (x, y) pixels and ``occlusion`` logits [B,N,T]; ``is_training`` is accepted for
        the trainer's interface (batch norm follows ``self.training``)."""
        if video.dim() != 5 or video.shape[-1] != 3 or query_points.dim() != 3 or query_points.shape[-1] != 3:
            raise TapforgeError(
                f"TAPNet takes video [B,T,H,W,3] and query_points [B,N,3], got {tuple(video.shape)} "
                f"and {tuple(query_points.shape)}"
            )
        b, t, height, width, _ = video.shape
        grid = self.feature_grid(video)
        position = nets.convert_grid_coordinates(query_points.float(), (t, height, width), grid.shape[1:4])
        query_features = nets.sample_query_features(grid, position)
        chunk = query_chunk_size or query_points.shape[1]
        tracks, occlusion = [], []
        for start in range(0, query_points.shape[1], chunk):
            stop = start + chunk
            points, occ = self.tracks_from_cost_volume(
                query_features[:, start:stop], grid, query_points[:, start:stop], (height, width)
            )
            tracks.append(points)
            occlusion.append(occ)
        return {"tracks": torch.cat(tracks, dim=1), "occlusion": torch.cat(occlusion, dim=1)}


# -- the official checkpoint ------------------------------------------------------------------------------

HAIKU_PREFIX = "tap_net/~/"  # the official model's module name
_HAIKU_MODULE = re.compile(r"^(?:.*?/~/)?(tsm_resnet_video/.*|cost_volume_\w+|occlusion_out)$")


def _torch_name(module: str) -> str:
    """Haiku module path (without the model's prefix) -> our module path."""
    module = module.replace("tsm_resnet_video/tsm_resnet_stem", "tsm_resnet.stem")
    module = re.sub(r"tsm_resnet_video/tsm_resnet_unit_(\d+)/block_(\d+)/", r"tsm_resnet.units.\1.\2.", module)
    return module


def _torch_weight(array: np.ndarray, name: str) -> torch.Tensor:
    """Haiku layouts -> torch's: conv ``w`` [kh,kw,in,out] (or [1,kh,kw,in,out]) -> [out,in,kh,kw]; linear ``w``
    [in,out] -> [out,in]; batch-norm values [1,1,1,C] -> [C]; biases as they are."""
    array = np.asarray(array, np.float32)
    if name != "w":
        return torch.from_numpy(array.reshape(-1).copy())
    if array.ndim == 5:
        array = array[0]
    if array.ndim == 4:
        return torch.from_numpy(np.ascontiguousarray(array.transpose(3, 2, 0, 1)))
    return torch.from_numpy(np.ascontiguousarray(array.T))


def state_dict_from_haiku(
    params: Mapping[str, Mapping[str, np.ndarray]], state: Mapping[str, Mapping[str, np.ndarray]]
) -> dict[str, torch.Tensor]:
    """The official TAP-Net's Haiku ``params`` and batch-norm ``state`` -> a :class:`TAPNet` state dict.

    Raises TapforgeError naming a module it does not know.
    """
    out: dict[str, torch.Tensor] = {}
    renames = {"w": "weight", "b": "bias", "scale": "weight", "offset": "bias"}
    for module, values in params.items():
        match = _HAIKU_MODULE.match(module)
        if match is None:
            raise TapforgeError(
                f"the checkpoint has a module {module!r} that TAP-Net does not have; fix: pass an "
                "official TAP-Net checkpoint.npy"
            )
        for name, array in values.items():
            if name not in renames:
                raise TapforgeError(f"the checkpoint's {module!r} has a parameter {name!r} TAP-Net does not have")
            out[f"{_torch_name(match.group(1))}.{renames[name]}"] = _torch_weight(array, name)
    for module, values in state.items():
        match = re.match(r"^(.*)/~/(mean|var)_ema$", module)
        inner = _HAIKU_MODULE.match(match.group(1)) if match else None
        if inner is None or "average" not in values:
            raise TapforgeError(
                f"the checkpoint has a state {module!r} that TAP-Net does not have; fix: pass an "
                "official TAP-Net checkpoint.npy"
            )
        name = _torch_name(inner.group(1))
        out[f"{name}.running_{match.group(2)}"] = _torch_weight(values["average"], "average")
        out[f"{name}.num_batches_tracked"] = torch.tensor(int(np.asarray(values.get("counter", 0))), dtype=torch.long)
    return out


def _haiku_name(key: str) -> str:
    """Our state-dict key -> the official module path and entry, for error messages."""
    module, _, entry = key.rpartition(".")
    module = module.replace("tsm_resnet.stem", "tsm_resnet_video/tsm_resnet_stem")
    module = re.sub(r"tsm_resnet\.units\.(\d+)\.(\d+)\.", r"tsm_resnet_video/tsm_resnet_unit_\1/block_\2/", module)
    statistics = {
        "running_mean": "/~/mean_ema average",
        "running_var": "/~/var_ema average",
        "num_batches_tracked": "/~/mean_ema counter",
    }
    parameters = {"weight": "scale", "bias": "offset"} if "batch_norm" in module else {"weight": "w", "bias": "b"}
    entry = statistics.get(entry) or f" {parameters[entry]}"
    return f"{HAIKU_PREFIX}{module}{entry}"


def load_tapnet_checkpoint(source: str | os.PathLike | Mapping, device: str | torch.device = "cpu") -> TAPNet:
    """TAP-Net in eval mode from the official ``checkpoint.npy`` or the dict it holds (``params``, ``state``).

    The official file is a pickled dict; it is read with a restricted unpickler that admits only plain data and
    numpy arrays (`tapforge.base.safe_pickle`), so a crafted file cannot run code. Raises TapforgeError naming every
    module that is missing, unknown or of the wrong shape.
    """
    name = os.fspath(source) if not isinstance(source, Mapping) else "the checkpoint"
    if not isinstance(source, Mapping):
        try:
            source = safe_pickle.load_npy(name).item()
        except safe_pickle.UnsafePickle as err:
            raise TapforgeError(
                f"{name} names {err}, which a checkpoint may not: only arrays, dicts, lists, strings and numbers are "
                "read (nothing in it was run); fix: pass the official TAP-Net checkpoint.npy"
            ) from None
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as err:
            raise TapforgeError(
                f"{name} is not a TAP-Net checkpoint.npy ({err}); fix: pass the official checkpoint.npy of TAP-Net"
            ) from None
    if not isinstance(source, Mapping) or "params" not in source or "state" not in source:
        raise TapforgeError(
            f"{name} holds no 'params' and 'state' of a Haiku model; fix: pass the official TAP-Net checkpoint.npy"
        )
    state_dict = state_dict_from_haiku(source["params"], source["state"])
    model = TAPNet()
    own = model.state_dict()
    missing = sorted(_haiku_name(k) for k in set(own) - set(state_dict))
    mismatched = sorted(
        f"{_haiku_name(k)} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if state_dict[k].shape != own[k].shape
    )
    problems = [
        f"{len(items)} {label}: " + ", ".join(items[:6]) + (" ..." if len(items) > 6 else "")
        for label, items in (("missing", missing), ("of the wrong shape", mismatched))
        if items
    ]
    if problems:
        raise TapforgeError(
            f"{name} does not fit TAP-Net: " + "; ".join(problems) + "; fix: pass the official "
            "TAP-Net checkpoint.npy (TSM-ResNet-18, feature stride 8)"
        )
    model.load_state_dict(state_dict, strict=True)
    return model.to(device).eval()
