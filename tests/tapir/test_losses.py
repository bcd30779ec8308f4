"""TAPIR loss against hand-computed values of tapnet's JAX ``tapnet_loss``."""

from __future__ import annotations

import math

import pytest
import torch

from tapforge.tapir.losses import tapir_loss, tapnet_loss

LOG2 = math.log(2.0)


def _case():
    """One query over two frames of a 256x256 video; errors (3, 4) -> 5 px and (1, 0) -> 1 px."""
    target = torch.tensor([[[[10.0, 20.0], [30.0, 40.0]]]])
    tracks = target + torch.tensor([[[[3.0, 4.0], [1.0, 0.0]]]])
    zeros = torch.zeros(1, 1, 2)
    return tracks, target, zeros


def test_huber_is_quadratic_below_delta_and_linear_above():
    tracks, target, zeros = _case()
    huber, occ, prob = tapnet_loss(tracks, zeros, target, zeros.bool(), (256, 256), expected_dist=zeros)
    # frame 0: 4 * (5 - 4 / 2) = 12; frame 1: 1 / 2; mean over 2 point-frames, weight 0.05
    assert huber.item() == pytest.approx(0.05 * (12 + 0.5) / 2, rel=1e-6)
    assert occ.item() == pytest.approx(LOG2, rel=1e-6)  # logit 0 vs visible
    assert prob.item() == pytest.approx(LOG2, rel=1e-6)  # both errors <= 6 px, logit 0


def test_positions_are_rescaled_to_256_before_the_loss():
    tracks, target, zeros = _case()
    # the same pixel errors in a 512 wide, 128 high frame: (1.5, 8) and (0.5, 0) at 256x256
    huber, _, _ = tapnet_loss(tracks, zeros, target, zeros.bool(), (128, 512))
    dist = math.hypot(1.5, 8.0)
    assert huber.item() == pytest.approx(0.05 * (4 * (dist - 2) + 0.5 * 0.25) / 2, rel=1e-6)


def test_occluded_targets_drop_position_and_expected_dist_but_not_occlusion():
    tracks, target, zeros = _case()
    occluded = torch.tensor([[[True, False]]])
    occ_logits = torch.tensor([[[2.0, -1.0]]])
    expd_logits = torch.tensor([[[0.5, 3.0]]])
    far_tracks = tracks + torch.tensor([[[[0.0, 0.0], [7.0, 0.0]]]])  # frame 1 is now 8 px off
    huber, occ, prob = tapnet_loss(far_tracks, occ_logits, target, occluded, (256, 256), expected_dist=expd_logits)
    # frame 0 is occluded: only frame 1 (8 px) counts, still divided by both point-frames
    assert huber.item() == pytest.approx(0.05 * 4 * (8 - 2) / 2, rel=1e-6)
    expected_occ = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2  # labels 1 then 0
    assert occ.item() == pytest.approx(expected_occ, rel=1e-6)
    expected_prob = math.log1p(math.exp(-3.0)) / 2  # 8 px > 6 px: label 1 at logit 3
    assert prob.item() == pytest.approx(expected_prob, rel=1e-6)


def test_expected_dist_threshold_is_six_pixels_and_stops_gradient():
    target = torch.zeros(1, 2, 1, 2)
    tracks = torch.tensor([[[[5.9, 0.0]], [[6.1, 0.0]]]], requires_grad=True)
    expd = torch.zeros(1, 2, 1, requires_grad=True)
    _, _, prob = tapnet_loss(
        tracks, torch.zeros(1, 2, 1), target, torch.zeros(1, 2, 1, dtype=torch.bool), (256, 256), expected_dist=expd
    )
    prob.backward()
    assert tracks.grad is None or tracks.grad.abs().sum() == 0
    # d/dlogit BCE = sigmoid(0) - label: +0.5 for the near point, -0.5 for the far one, mean over 2
    torch.testing.assert_close(expd.grad, torch.tensor([[[0.25], [-0.25]]]))


def test_mask_weights_every_term():
    tracks, target, zeros = _case()
    mask = torch.tensor([[[1.0, 0.0]]])
    huber, occ, prob = tapnet_loss(tracks, zeros, target, zeros.bool(), (256, 256), expected_dist=zeros, mask=mask)
    assert huber.item() == pytest.approx(0.05 * 12 / 2, rel=1e-6)
    assert occ.item() == pytest.approx(LOG2 / 2, rel=1e-6)
    assert prob.item() == pytest.approx(LOG2 / 2, rel=1e-6)


def test_tapir_loss_sums_final_and_every_unrefined_iterate():
    tracks, target, zeros = _case()
    single = {"tracks": tracks, "occlusion": zeros, "expected_dist": zeros}
    huber, occ, prob = tapnet_loss(tracks, zeros, target, zeros.bool(), (256, 256), expected_dist=zeros)
    outputs = dict(
        single,
        unrefined_tracks=[tracks, target],  # the second iterate is exact: no position loss
        unrefined_occlusion=[zeros, zeros],
        unrefined_expected_dist=[zeros, zeros],
    )
    loss, parts = tapir_loss(outputs, target, zeros.bool(), (256, 256))
    assert set(parts) == {"huber", "occlusion", "expected_dist"}
    assert parts["huber"].item() == pytest.approx(2 * huber.item(), rel=1e-6)
    assert parts["occlusion"].item() == pytest.approx(3 * occ.item(), rel=1e-6)
    assert parts["expected_dist"].item() == pytest.approx(3 * prob.item(), rel=1e-6)
    assert loss.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)
    alone, _ = tapir_loss(single, target, zeros.bool(), (256, 256))
    assert alone.item() == pytest.approx((huber + occ + prob).item(), rel=1e-6)


def test_zero_error_has_finite_gradient():
    target = torch.rand(1, 3, 4, 2) * 100
    tracks = target.clone().requires_grad_(True)
    loss, _ = tapir_loss(
        {"tracks": tracks, "occlusion": torch.zeros(1, 3, 4), "expected_dist": torch.zeros(1, 3, 4)},
        target,
        torch.zeros(1, 3, 4, dtype=torch.bool),
        (100, 100),
    )
    loss.backward()
    assert torch.isfinite(tracks.grad).all() and tracks.grad.abs().max() == 0
