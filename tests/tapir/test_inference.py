"""Tracker: resizing, coordinate scaling, visibility postprocess, batching and query checks."""

import numpy as np
import pytest
import torch

from tapforge.base.errors import TapforgeError
from tapforge.tapir.inference import Tracker, check_queries, grid_queries, temporal_reach, track


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


def _tiny_tapir(**kw):
    from tapforge.tapir import TAPIR

    torch.manual_seed(0)
    config = dict(initial_resolution=(32, 32), num_pips_iter=2, num_mixer_blocks=2, mixer_hidden_dim=32)
    return TAPIR(**{**config, "blocks_per_group": (1, 1, 1, 1), **kw})


@pytest.mark.parametrize("causal", [False, True])
def test_long_videos_run_in_windows_with_the_whole_clips_outputs(causal):
    model = _tiny_tapir(use_casual_conv=causal)
    encoded = []
    get_feature_grids = model.get_feature_grids
    model.get_feature_grids = lambda video, *a, **kw: (
        encoded.append(video.shape[1]) or get_feature_grids(video, *a, **kw)
    )
    rng = np.random.default_rng(1)
    frames = _frames(num_frames=41, height=40, width=48)
    queries = np.stack([rng.integers(0, 41, 7).astype(float), rng.uniform(0, 40, 7), rng.uniform(0, 48, 7)], -1)
    queries[:3, 0] = [0, 40, 3.5]  # the first and last frames, and between two frames (sampled trilinearly)
    whole = Tracker(model, device="cpu").track(frames, queries)
    assert encoded == [41]
    encoded.clear()
    # 2 iterations x 2 blocks x 2 convs reach 8 frames each side (16 back, none ahead when causal)
    reach = temporal_reach(model, (32, 32))
    assert reach == ((16, 0) if causal else (8, 8))
    chunked = Tracker(model, device="cpu", chunk_frames=5, query_batch_size=3).track(frames, queries)
    np.testing.assert_allclose(chunked.tracks, whole.tracks, atol=1e-4)
    np.testing.assert_allclose(chunked.visibility, whole.visibility, atol=1e-5)
    np.testing.assert_array_equal(chunked.occluded, whole.occluded)
    # no pass encodes more than a window's new frames: the query frames (and the next ones) first, then each frame
    # of the clip once, 5 per window after the first
    assert max(encoded) <= 5 + reach[1] and sum(encoded) <= 41 + 2 * len(queries)
    # a clip no longer than a window and its reach runs whole, as before
    encoded.clear()
    Tracker(model, device="cpu", chunk_frames=41 - sum(reach)).track(frames, queries)
    assert encoded == [41]


def test_temporal_reach_of_the_official_configs_and_bad_chunk_sizes():
    from tapforge.tapir import TAPIR
    from tapforge.tapir.tapnet import TAPNet

    assert temporal_reach(TAPIR(), (256, 256)) == (96, 96)
    assert temporal_reach(TAPIR(pyramid_level=1, extra_convs=True, use_casual_conv=True), (256, 256)) == (192, 0)
    assert temporal_reach(TAPIR(), (512, 512)) == (192, 192)  # two refinement resolutions
    assert temporal_reach(TAPNet(), (256, 256)) is None  # runs on the whole clip
    for bad in (-1, 2.5, True):
        with pytest.raises(TapforgeError, match="chunk_frames"):
            Tracker(EchoModel(), device="cpu", chunk_frames=bad)


def test_tapnext_tracks_both_ways_all_queries_at_once_and_online_in_chunks():
    from tapforge.tapir import TAPNext
    from tapforge.tapir.tapnext import track_both_ways

    torch.manual_seed(0)
    model = TAPNext(image_size=(32, 32), width=32, num_heads=2, lru_width=32, depth=2).eval()
    rng = np.random.default_rng(2)
    frames = _frames(num_frames=9, height=32, width=32)
    queries = np.stack([rng.integers(0, 9, 6).astype(float), rng.uniform(0, 32, 6), rng.uniform(0, 32, 6)], -1)
    queries[:2, 0] = [0, 8]
    whole = Tracker(model, device="cpu", query_batch_size=2).track(frames, queries)
    assert Tracker(model, device="cpu").resolution == (32, 32)  # its image_size
    video = torch.from_numpy(frames).float()[None] / 127.5 - 1
    with torch.no_grad():
        expected = track_both_ways(model, video, torch.from_numpy(queries).float()[None])
    # all six queries in one pass (they attend to one another) and the frames before each query backwards
    np.testing.assert_allclose(whole.tracks, expected["tracks"][0].numpy(), atol=1e-5)
    np.testing.assert_array_equal(whole.occluded, (expected["occlusion"][0] >= 0).numpy())  # its visibility logit
    chunked = Tracker(model, device="cpu", chunk_frames=4).track(frames, queries)  # online, 4 frames at a time
    np.testing.assert_allclose(chunked.tracks, whole.tracks, atol=1e-4)
    np.testing.assert_allclose(chunked.visibility, whole.visibility, atol=1e-5)
