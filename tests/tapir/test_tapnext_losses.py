"""The TAPNext loss: hand-computed cases and the released torch losses' formula written out in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tapforge.base.errors import TapforgeError
from tapforge.tapir.tapnext_losses import TAPNextLossConfig, position_bins, tapnext_loss

LOG2, LOG256 = math.log(2.0), math.log(256.0)


def outputs(tracks, logits=None, occlusion=None):
    """A TAPNext output dict for tracks [B,Q,T,2]: uniform position logits and zero occlusion logits by default."""
    shape = tracks.shape[:-1]
    return {
        "tracks": tracks,
        "coordinate_logits": torch.zeros(*shape, 2, 256) if logits is None else logits,
        "occlusion": torch.zeros(shape) if occlusion is None else occlusion,
    }


def one_hot_logits(bins_xy, peak: float = 60.0) -> torch.Tensor:
    """Position logits [B,Q,T,2,256] with all the mass on the given (x, y) bins [B,Q,T,2]."""
    logits = torch.zeros(*bins_xy.shape, 256)
    return logits.scatter(-1, bins_xy[..., None], peak)


def _case():
    """One query over two frames of a 256x256 video; errors (0.3, 0.4) -> 0.5 px and (3, 4) -> 5 px."""
    target = torch.tensor([[[[10.0, 20.0], [30.0, 40.0]]]])
    tracks = target + torch.tensor([[[[0.3, 0.4], [3.0, 4.0]]]])
    visible = torch.zeros(1, 1, 2, dtype=torch.bool)
    return tracks, target, visible


def test_hand_computed_terms_and_weights():
    tracks, target, visible = _case()
    loss, parts = tapnext_loss(outputs(tracks), target, visible, (256, 256))
    # Huber delta 1: 0.5^2 / 2 = 0.125 below delta, 1 * (5 - 0.5) = 4.5 above; mean over 2 visible points, x 0.1
    assert parts["huber"].item() == pytest.approx(0.1 * (0.125 + 4.5) / 2, rel=1e-6)
    assert parts["coordinate_softmax"].item() == pytest.approx(2 * LOG256, rel=1e-6)  # uniform over 256 bins, x and y
    assert parts["occlusion"].item() == pytest.approx(LOG2, rel=1e-6)
    assert loss.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)
    # all the mass on the target's bins (10 px -> bin 10 (9.5 rounds to even), 20 -> 20, 30 -> 30, 40 -> 40)
    bins = torch.tensor([[[[10, 20], [30, 40]]]])
    _, parts = tapnext_loss(outputs(tracks, one_hot_logits(bins)), target, visible, (256, 256))
    assert parts["coordinate_softmax"].item() == pytest.approx(0.0, abs=1e-6)
    _, parts = tapnext_loss(outputs(tracks, one_hot_logits(bins + 1)), target, visible, (256, 256))
    assert parts["coordinate_softmax"].item() == pytest.approx(2 * 60.0, rel=1e-4)  # one bin off on both axes
    config = TAPNextLossConfig(huber_weight=1.0, softmax_weight=0.5, huber_delta=4.0)
    _, parts = tapnext_loss(outputs(tracks), target, visible, (256, 256), config=config)
    assert parts["huber"].item() == pytest.approx((0.125 + 4 * (5 - 2)) / 2, rel=1e-6)
    assert parts["coordinate_softmax"].item() == pytest.approx(LOG256, rel=1e-6)


def test_target_bins_and_clipping():
    values = torch.tensor([-5.0, 0.0, 0.9, 2.5, 3.0, 4.0, 10.6, 255.9, 300.0])
    # value - 0.5, clipped to [0, 255], rounded half to even
    assert position_bins(values).tolist() == [0, 0, 0, 2, 2, 4, 10, 255, 255]
    target = torch.tensor([[[[300.0, -10.0]]]])  # off the frame: the Huber target is the clipped (255, 0)
    tracks = torch.tensor([[[[255.0, 0.5]]]])
    _, parts = tapnext_loss(outputs(tracks), target, torch.zeros(1, 1, 1, dtype=torch.bool), (256, 256))
    assert parts["huber"].item() == pytest.approx(0.1 * 0.5**2 / 2, rel=1e-6)


def test_positions_are_measured_in_bins_of_any_frame_size():
    target = torch.tensor([[[[100.0, 30.0]]]])  # a 512 wide, 128 high frame: (50, 60) in bins
    tracks = target + torch.tensor([[[[6.0, 0.0]]]])  # 3 bins off in x
    _, parts = tapnext_loss(outputs(tracks), target, torch.zeros(1, 1, 1, dtype=torch.bool), (128, 512))
    assert parts["huber"].item() == pytest.approx(0.1 * (3 - 0.5), rel=1e-6)
    _, parts = tapnext_loss(
        outputs(tracks, one_hot_logits(torch.tensor([[[[50, 60]]]]))),
        target,
        torch.zeros(1, 1, 1, dtype=torch.bool),
        (128, 512),
    )
    assert parts["coordinate_softmax"].item() == pytest.approx(0.0, abs=1e-6)


def test_occluded_points_count_in_the_visibility_term_only():
    tracks, target, _ = _case()
    occluded = torch.tensor([[[False, True]]])
    occlusion = torch.tensor([[[-1.0, 2.0]]])  # occlusion logits: label 0 then 1
    _, parts = tapnext_loss(outputs(tracks, occlusion=occlusion), target, occluded, (256, 256))
    assert parts["huber"].item() == pytest.approx(0.1 * 0.125, rel=1e-6)  # the visible frame alone
    assert parts["coordinate_softmax"].item() == pytest.approx(2 * LOG256, rel=1e-6)
    assert parts["occlusion"].item() == pytest.approx((math.log1p(math.exp(-1.0)) + math.log1p(math.exp(-2.0))) / 2)
    # TAPNext++'s supervision of occluded points: the occluded frame counts too, with its weight
    config = TAPNextLossConfig(occluded_position_weight=0.5)
    _, parts = tapnext_loss(outputs(tracks, occlusion=occlusion), target, occluded, (256, 256), config=config)
    assert parts["huber"].item() == pytest.approx(0.1 * (0.125 + 0.5 * 4.5) / 1.5, rel=1e-6)
    off_frame = target.clone()
    off_frame[0, 0, 1, 0] = -20.0  # an occluded point outside the frame stays unsupervised
    _, parts = tapnext_loss(outputs(tracks, occlusion=occlusion), off_frame, occluded, (256, 256), config=config)
    assert parts["huber"].item() == pytest.approx(0.1 * 0.125, rel=1e-6)


def test_frames_before_the_query_frame_and_the_mask():
    tracks, target, visible = _case()
    query_frame = torch.tensor([[1]])
    _, parts = tapnext_loss(outputs(tracks), target, visible, (256, 256), query_frame=query_frame)
    assert parts["huber"].item() == pytest.approx(0.1 * 4.5, rel=1e-6)  # frame 0 comes before the query
    assert parts["occlusion"].item() == pytest.approx(LOG2, rel=1e-6)
    config = TAPNextLossConfig(before_query_frames=True)
    _, parts = tapnext_loss(outputs(tracks), target, visible, (256, 256), query_frame=query_frame, config=config)
    assert parts["huber"].item() == pytest.approx(0.1 * (0.125 + 4.5) / 2, rel=1e-6)
    nothing = torch.zeros(1, 1, 2)
    tracks.requires_grad_(True)
    loss, parts = tapnext_loss(outputs(tracks), target, visible, (256, 256), mask=nothing)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(tracks.grad).all()


def test_against_the_released_formula_written_out():
    """Random predictions in a 96 x 160 frame against the released torch losses' formula in numpy: Huber on the
    clipped target over visible points x 0.1, x plus y cross-entropy of the target's bin over visible points, and
    the visibility cross-entropy over all points."""
    gen = torch.Generator().manual_seed(0)
    b, q, t, height, width = 2, 5, 7, 96, 160
    scale = torch.tensor([width / 256, height / 256])
    target = (torch.rand(b, q, t, 2, generator=gen) * 1.2 - 0.1) * 256 * scale
    tracks = target + torch.randn(b, q, t, 2, generator=gen) * 3
    logits = torch.randn(b, q, t, 2, 256, generator=gen) * 3
    occlusion = torch.randn(b, q, t, generator=gen)
    occluded = torch.rand(b, q, t, generator=gen) < 0.3
    loss, _ = tapnext_loss(outputs(tracks, logits, occlusion), target, occluded, (height, width))

    pred_bins = (tracks / scale).double().numpy()
    target_bins = (target / scale).double().numpy()
    visible = ~occluded.numpy()
    dist = np.linalg.norm(pred_bins - np.clip(target_bins, 0, 255), axis=-1)
    huber = np.where(dist < 1.0, dist**2 / 2, dist - 0.5)
    labels = np.round(np.clip(target_bins - 0.5, 0, 255)).astype(int)
    z = logits.double().numpy()
    log_softmax = z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
    cross_entropy = -np.take_along_axis(log_softmax, labels[..., None], -1)[..., 0].sum(-1)
    visible_logit = -occlusion.double().numpy()
    bce = np.log1p(np.exp(-np.abs(visible_logit))) + np.maximum(visible_logit, 0) - visible_logit * visible
    expected = 0.1 * huber[visible].mean() + cross_entropy[visible].mean() + bce.mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_gradients_reach_positions_logits_and_visibility():
    tracks, target, visible = _case()
    logits = torch.zeros(1, 1, 2, 2, 256, requires_grad=True)
    occlusion = torch.zeros(1, 1, 2, requires_grad=True)
    tracks.requires_grad_(True)
    loss, _ = tapnext_loss(outputs(tracks, logits, occlusion), target, visible, (256, 256))
    loss.backward()
    assert all(float(x.grad.abs().max()) > 0 for x in (tracks, logits, occlusion))


@pytest.mark.parametrize("key", ["huber_weight", "softmax_weight", "occluded_position_weight", "huber_delta"])
def test_bad_weights_name_the_key(key):
    with pytest.raises(TapforgeError, match=f"model.tapnext_loss.{key}"):
        TAPNextLossConfig(**{key: -1.0})
