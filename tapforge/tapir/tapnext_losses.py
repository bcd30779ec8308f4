"""The TAPNext training loss, as the released torch losses define it (tapnet's ``tapnet/tapnext/torch_losses.py``).

Positions are measured in the 256 bins of the model's position heads (a frame of any size counts as 256 x 256,
bin i covering [i, i + 1)); per point and frame:

* ``huber``: the Huber loss (delta 1) of the distance between the predicted point (the soft argmax) and the
  target clipped to [0, 255], averaged over the visible points, weight 0.1;
* ``coordinate_softmax``: the cross-entropy of the x and of the y position logits against the target's bin,
  ``round(clip(target - 0.5, 0, 255))`` (rounding half to even), the two summed, averaged over the visible points,
  weight 1;
* ``occlusion``: the sigmoid cross-entropy of the visibility logit against visibility, averaged over all points
  and frames (with tapforge's occlusion logits, the negated visibility logits, and occlusion labels: the same
  value).

Where this differs from the released code, and why:

* the released ``coordinate_softmax`` reduces each axis' cross-entropy to its mean over all points and frames
  before it applies the visibility mask, which then only multiplies and divides by its own sum: occluded points,
  even those outside the frame, are pulled towards the clipped edge bins. Here the mask applies per point and
  frame, as the same function's code intends and as the JAX losses (``tapnet/tapnext/losses.py``) apply it;
* frames before a query's frame are left out (``before_query_frames=False``). TAPNext only looks back in time, so
  it cannot know where a point was before its query shows it; inference tracks those frames on the time-reversed
  video (``tapforge.tapir.tapnext.track_both_ways``), as the official strided evaluation does;
* ``occluded_position_weight`` supervises the positions of occluded points inside the frame too (TAPNext++'s
  "supervising occluded points"; 0, the default, is TAPNext's loss);
* an optional ``mask`` weights every term (clips without a usable query), and a mask that leaves nothing gives 0
  rather than NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tapforge.base.errors import TapforgeError
from tapforge.tapir.losses import to_loss_scale

NUM_BINS = 256  # the position heads' bins per axis (tapforge.tapir.tapnext.NUM_BINS)


@dataclass(frozen=True)
class TAPNextLossConfig:
    """Weights of the TAPNext loss (``model.tapnext_loss`` in the training configs).

    huber_weight, softmax_weight: the released code's 0.1 and 1. huber_delta: the released 1 bin.
    occluded_position_weight: weight of the position terms on occluded points inside the frame, beside 1 on visible
      ones (0: TAPNext; TAPNext++ supervises occluded points, weight not published).
    before_query_frames: also count the frames before each query's frame (the released function counts whatever
      frames it is given; they are never used at inference, which tracks them on the reversed video).
    """

    huber_weight: float = 0.1
    softmax_weight: float = 1.0
    huber_delta: float = 1.0
    occluded_position_weight: float = 0.0
    before_query_frames: bool = False

    def __post_init__(self) -> None:
        for name in ("huber_weight", "softmax_weight", "occluded_position_weight"):
            if not getattr(self, name) >= 0:
                raise TapforgeError(
                    f"model.tapnext_loss.{name} is {getattr(self, name)}; fix: use 0 or more (the released loss: "
                    "huber_weight 0.1, softmax_weight 1, occluded_position_weight 0)"
                )
        if not self.huber_delta > 0:
            raise TapforgeError(f"model.tapnext_loss.huber_delta is {self.huber_delta}; fix: use a positive value (1)")


RELEASED_LOSS = TAPNextLossConfig()  # the released weights (a frozen default for signatures)


def _masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(values * weight) / sum(weight), and 0 where the weights sum to 0."""
    return (values * weight).sum() / weight.sum().clamp(min=1e-12)


def position_bins(target: torch.Tensor) -> torch.Tensor:
    """The bin index (long) of each coordinate of ``target`` [...] in bin units: round(clip(target - 0.5, 0, 255))."""
    return torch.round((target - 0.5).clamp(0, NUM_BINS - 1)).long()


def huber_coordinate_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, delta: float = 1.0
) -> torch.Tensor:
    """Weighted mean over points of the Huber loss of the (x, y) distance; ``pred``, ``target`` [..., 2] in bin
    units (the target clipped to [0, 255]), ``weight`` [...]."""
    error = (pred.float() - target.float().clamp(0, NUM_BINS - 1)).clamp(-1e8, 1e8)
    distsqr = error.square().sum(dim=-1)
    dist = torch.sqrt(distsqr + 1e-12)
    loss = torch.where(dist < delta, distsqr / 2, delta * (dist - delta / 2))
    return _masked_mean(loss, weight)


def coordinate_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean over points of the x plus the y cross-entropy of ``logits`` [..., 2, 256] (x first) against
    the bins of ``target`` [..., 2] (bin units)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    picked = log_probs.gather(-1, position_bins(target.float())[..., None])[..., 0]  # [..., 2]
    return _masked_mean(-picked.sum(dim=-1), weight)


def tapnext_loss(
    outputs: Mapping[str, Any],
    target_tracks: torch.Tensor,
    target_occluded: torch.Tensor,
    image_size: Sequence[int],
    query_frame: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    config: TAPNextLossConfig = RELEASED_LOSS,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The TAPNext loss of one forward pass (see the module docstring).

    Args:
      outputs: a ``TAPNext`` forward result (``tracks`` [B,Q,T,2] (x, y) pixels, ``coordinate_logits``
        [B,Q,T,2,256] x first, ``occlusion`` logits [B,Q,T]).
      target_tracks: [B,Q,T,2] (x, y) pixels of frames of ``image_size`` = (H, W); target_occluded: [B,Q,T] bool.
      query_frame: [B,Q] each query's frame; frames before it count only with ``config.before_query_frames``.
      mask: optional [B,Q,T] weights (1 = counted).

    Returns the scalar to back-propagate and its weighted parts ``huber``, ``coordinate_softmax`` and ``occlusion``.
    """
    occluded = target_occluded.float()
    target = to_loss_scale(target_tracks.float(), image_size)  # 256-scale pixels are bins
    pred = to_loss_scale(outputs["tracks"].float(), image_size)
    weight = torch.ones_like(occluded) if mask is None else mask.float()
    if query_frame is not None and not config.before_query_frames:
        frames = torch.arange(occluded.shape[-1], device=occluded.device)
        weight = weight * (frames >= torch.round(query_frame.float())[..., None]).float()
    position_weight = 1.0 - occluded
    if config.occluded_position_weight:
        inside = ((target >= 0) & (target <= NUM_BINS)).all(dim=-1).float()
        position_weight = position_weight + config.occluded_position_weight * occluded * inside
    position_weight = position_weight * weight
    parts = {
        "huber": config.huber_weight * huber_coordinate_loss(pred, target, position_weight, config.huber_delta),
        "coordinate_softmax": config.softmax_weight
        * coordinate_cross_entropy(outputs["coordinate_logits"], target, position_weight),
        "occlusion": _masked_mean(
            F.binary_cross_entropy_with_logits(outputs["occlusion"].float(), occluded, reduction="none"), weight
        ),
    }
    return parts["huber"] + parts["coordinate_softmax"] + parts["occlusion"], parts
