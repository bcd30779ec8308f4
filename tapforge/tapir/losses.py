"""The TAPIR training loss, as in tapnet's JAX training (``model_utils.tapnet_loss``).

For the final prediction and for every unrefined iterate it sums
  * a Huber loss (delta 4) on positions rescaled to a 256x256 frame, zero where the target is
    occluded, averaged over all points and frames, times 0.05;
  * the sigmoid cross-entropy of the occlusion logits, averaged over all points and frames;
  * the sigmoid cross-entropy of the expected-distance logits against "the (stop-gradient)
    prediction is more than 6 px (256 scale) from the target", zero where the target is occluded,
    averaged over all points and frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

LOSS_SCALE = (256.0, 256.0)


def to_loss_scale(tracks: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
    """(x, y) pixels of a frame of ``image_size`` = (H, W) rescaled to the 256x256 frame the loss is measured in."""
    height, width = image_size
    return tracks * tracks.new_tensor([LOSS_SCALE[1] / width, LOSS_SCALE[0] / height])


def huber_loss(
    tracks: torch.Tensor, target_tracks: torch.Tensor, occluded: torch.Tensor, delta: float = 4.0
) -> torch.Tensor:
    """Per point-frame Huber loss on the (x, y) distance [B, N, T], zero where ``occluded``."""
    distsqr = torch.sum(torch.square(tracks - target_tracks), dim=-1)
    dist = torch.sqrt(distsqr + 1e-12)
    loss = torch.where(dist < delta, distsqr / 2, delta * (dist - delta / 2))
    return loss * (1.0 - occluded)


def expected_dist_loss(
    tracks: torch.Tensor,
    expected_dist: torch.Tensor,
    target_tracks: torch.Tensor,
    occluded: torch.Tensor,
    threshold: float = 6.0,
) -> torch.Tensor:
    """Per point-frame cross-entropy of ``expected_dist`` logits against "error > threshold",
    zero where ``occluded``. No gradient flows into ``tracks``."""
    err = torch.sum(torch.square(tracks.detach() - target_tracks), dim=-1)
    far = (err > threshold**2).to(expected_dist.dtype)
    return F.binary_cross_entropy_with_logits(expected_dist, far, reduction="none") * (1.0 - occluded)


def tapnet_loss(
    tracks: torch.Tensor,
    occlusion: torch.Tensor,
    target_tracks: torch.Tensor,
    target_occluded: torch.Tensor,
    image_size: Sequence[int],
    expected_dist: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    position_loss_weight: float = 0.05,
    expected_dist_thresh: float = 6.0,
    huber_loss_delta: float = 4.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss of one prediction: (weighted Huber, occlusion BCE, expected-distance BCE) scalars.

    Args:
      tracks, target_tracks: [B, N, T, 2] (x, y) pixels of a frame of ``image_size`` = (H, W).
      occlusion, expected_dist: logits [B, N, T].
      target_occluded: [B, N, T], true where the point is not visible.
      mask: optional [B, N, T] weights (1 = counted), e.g. to drop padded queries.
    """
    tracks = to_loss_scale(tracks.float(), image_size)
    target_tracks = to_loss_scale(target_tracks.float(), image_size)
    occluded = target_occluded.float()
    weight = 1.0 if mask is None else mask.float()

    loss_huber = torch.mean(huber_loss(tracks, target_tracks, occluded, huber_loss_delta) * weight)
    loss_huber = loss_huber * position_loss_weight
    loss_occ = torch.mean(F.binary_cross_entropy_with_logits(occlusion.float(), occluded, reduction="none") * weight)
    if expected_dist is None:
        loss_prob = loss_occ.new_zeros(())
    else:
        loss_prob = torch.mean(
            expected_dist_loss(tracks, expected_dist.float(), target_tracks, occluded, expected_dist_thresh) * weight
        )
    return loss_huber, loss_occ, loss_prob


def tapir_loss(
    outputs: Mapping[str, Any],
    target_tracks: torch.Tensor,
    target_occluded: torch.Tensor,
    image_size: Sequence[int],
    mask: torch.Tensor | None = None,
    position_loss_weight: float = 0.05,
    expected_dist_thresh: float = 6.0,
    huber_loss_delta: float = 4.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total TAPIR loss over the final output and every unrefined iterate.

    Args:
      outputs: a ``TAPIR`` forward result (``tracks``, ``occlusion``, ``expected_dist`` and the
        ``unrefined_*`` lists).
      target_tracks: [B, N, T, 2] (x, y) pixels; target_occluded: [B, N, T] bool.
      image_size: (H, W) of the frames the tracks are measured in.
      mask: optional [B, N, T] weights (1 = counted).

    Returns the scalar to back-propagate and its parts ``huber`` (already weighted),
    ``occlusion`` and ``expected_dist``, each summed over iterates.
    """
    predictions = [(outputs["tracks"], outputs["occlusion"], outputs.get("expected_dist"))]
    unrefined_expd = outputs.get("unrefined_expected_dist")
    for i, (tracks, occlusion) in enumerate(
        zip(outputs.get("unrefined_tracks", []), outputs.get("unrefined_occlusion", []))
    ):
        predictions.append((tracks, occlusion, unrefined_expd[i] if unrefined_expd is not None else None))
    parts = {"huber": 0.0, "occlusion": 0.0, "expected_dist": 0.0}
    for tracks, occlusion, expected_dist in predictions:
        huber, occ, prob = tapnet_loss(
            tracks,
            occlusion,
            target_tracks,
            target_occluded,
            image_size,
            expected_dist=expected_dist,
            mask=mask,
            position_loss_weight=position_loss_weight,
            expected_dist_thresh=expected_dist_thresh,
            huber_loss_delta=huber_loss_delta,
        )
        parts["huber"] = parts["huber"] + huber
        parts["occlusion"] = parts["occlusion"] + occ
        parts["expected_dist"] = parts["expected_dist"] + prob
    loss = parts["huber"] + parts["occlusion"] + parts["expected_dist"]
    return loss, parts
