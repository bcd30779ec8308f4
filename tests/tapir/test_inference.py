"""Tracker: resizing, coordinate scaling, visibility postprocess, batching and query checks."""

import numpy as np
import pytest
import torch

from tapforge.base.errors import TapforgeError
from tapforge.tapir.inference import Tracker, check_queries, grid_queries, track


class EchoModel(torch.nn.Module):
    """Stands in for TAPIR: each point stays at its query (x, y) with fixed logits; records inputs."""

    def __init__(self, occlusion=-2.0, expected_dist=-1.0, resolution=(64, 96)):
        super().__init__()
        self.config = {"initial_resolution": resolution}
        self.logits = (occlusion, expected_dist)
        self.calls = []

    def forward(self, video, query_points, is_training=False, query_chunk_size=64):
        self.calls.append((tuple(video.shape), query_points.shape[1], float(video.min()), float(video.max())))
        b, n, _ = query_points.shape
        t = video.shape[1]
        tracks = query_points[:, :, None, [2, 1]].expand(b, n, t, 2)
        occ = torch.full((b, n, t), self.logits[0])
        occ[:, :, 0] = 5.0  # frame 0 is hidden for every point
        return {"tracks": tracks, "occlusion": occ, "expected_dist": torch.full((b, n, t), self.logits[1])}


def _frames(num_frames=3, height=30, width=200):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


def test_grid_queries_are_cell_centres():
    q = grid_queries(2, height=40, width=100, frame=3)
    np.testing.assert_allclose(q, [[3, 10, 25], [3, 10, 75], [3, 30, 25], [3, 30, 75]])
    with pytest.raises(TapforgeError, match="not positive"):
        grid_queries(0, 10, 10)


def test_check_queries_names_the_bad_ones():
    good = np.array([[0, 0, 0], [2, 30, 200]], float)
    check_queries(good, num_frames=3, height=30, width=200)
    bad = np.array([[0, 5, 5], [3, 5, 5], [1, -1, 5], [1, 5, 201], [np.nan, 1, 1]], float)
    with pytest.raises(TapforgeError) as err:
        check_queries(bad, num_frames=3, height=30, width=200)
    message = str(err.value)
    assert "4 query point(s)" in message and "#1 " in message and "#4 " in message and "#0 " not in message
    with pytest.raises(TapforgeError, match=r"\[N,3\]"):
        check_queries(np.zeros((4, 2)), 3, 30, 200)


def test_tracker_scales_coordinates_and_resizes_frames():
    model = EchoModel(resolution=(64, 96))
    queries = np.array([[1, 12.5, 150.0], [2, 29.0, 3.0], [0, 0.0, 200.0]])
    result = Tracker(model, device="cpu", query_batch_size=2).track(_frames(), queries)
    # the model saw the video at its resolution, in [-1, 1], in two query batches
    assert [c[:2] for c in model.calls] == [((1, 3, 64, 96, 3), 2), ((1, 3, 64, 96, 3), 1)]
    assert all(-1.0 <= c[2] and c[3] <= 1.0 for c in model.calls)
    # the echo returns the query position in model pixels; the tracker maps it back to input pixels
    assert result.tracks.shape == (3, 3, 2) and result.tracks.dtype == np.float32
    np.testing.assert_allclose(result.tracks[:, 1], queries[:, [2, 1]], atol=1e-4)
    # visibility = (1 - sigmoid(-2)) * (1 - sigmoid(-1)) = 0.644 -> visible; frame 0 has occlusion logit 5
    expected = (1 - 1 / (1 + np.exp(2))) * (1 - 1 / (1 + np.exp(1)))
    np.testing.assert_allclose(result.visibility[:, 1:], expected, rtol=1e-5)
    assert result.occluded[:, 0].all() and not result.occluded[:, 1:].any()


def test_visibility_threshold_uses_expected_distance():
    # occlusion logit -3 alone would be visible (0.95), but expected_dist logit 0 halves it to 0.476
    result = Tracker(EchoModel(occlusion=-3.0, expected_dist=0.0), device="cpu").track(_frames(), [[0, 1, 1]])
    assert result.occluded.all()


def test_float_frames_and_bad_inputs():
    model = EchoModel()
    frames = _frames().astype(np.float32) / 127.5 - 1
    track(frames, [[0, 1, 1]], model=model, device="cpu")
    assert model.calls[-1][0] == (1, 3, 64, 96, 3)
    with pytest.raises(TapforgeError, match=r"\[-1, 1\]"):
        track(frames * 255, [[0, 1, 1]], model=model, device="cpu")
    with pytest.raises(TapforgeError, match="outside the video"):
        track(_frames(), [[5, 1, 1]], model=model, device="cpu")
    with pytest.raises(TapforgeError, match="exactly one"):
        track(_frames(), [[0, 1, 1]])
    with pytest.raises(TapforgeError, match="multiples of 8"):
        Tracker(model, device="cpu", resolution=(60, 64))
    if not torch.cuda.is_available():
        with pytest.raises(TapforgeError, match="no GPU"):
            Tracker(model, device="cuda")


def test_real_tapir_tracks_a_tiny_video():
    from tapforge.tapir import TAPIR

    torch.manual_seed(0)
    model = TAPIR(initial_resolution=(64, 64))
    queries = np.array([[0, 10.0, 20.0], [1, 30.0, 70.0], [2, 47.0, 0.0]])
    frames = _frames(num_frames=3, height=48, width=80)
    result = Tracker(model, device="cpu", query_chunk_size=2).track(frames, queries)
    assert result.tracks.shape == (3, 3, 2) and result.occluded.shape == (3, 3)
    assert np.isfinite(result.tracks).all() and ((result.visibility >= 0) & (result.visibility <= 1)).all()
    # chunking queries does not change the answer
    again = Tracker(model, device="cpu", query_chunk_size=64, query_batch_size=2).track(frames, queries)
    np.testing.assert_allclose(again.tracks, result.tracks, atol=1e-3)
    np.testing.assert_array_equal(again.occluded, result.occluded)
