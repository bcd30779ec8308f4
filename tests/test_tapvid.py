"""TAP-Vid metrics on hand-computed cases, query sampling, and the pickle readers."""

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from tapforge.base.errors import TapforgeError
from tapforge.tapir import tapvid


def _static_case(num_tracks=3, num_frames=6, seed=0):
    rng = np.random.default_rng(seed)
    gt_tracks = rng.uniform(10, 200, (1, num_tracks, num_frames, 2))
    gt_occluded = np.zeros((1, num_tracks, num_frames), bool)
    query_points = np.zeros((1, num_tracks, 3))
    query_points[..., 1:] = gt_tracks[:, :, 0, ::-1]
    return query_points, gt_occluded, gt_tracks


@pytest.mark.parametrize("mode", ["first", "strided"])
def test_perfect_prediction_scores_one(mode):
    q, occ, tracks = _static_case()
    occ[0, 1, 3:] = True
    m = tapvid.compute_tapvid_metrics(q, occ, tracks, occ.copy(), tracks.copy(), mode)
    assert set(m) == set(tapvid.METRIC_KEYS)
    for key in tapvid.METRIC_KEYS:
        assert m[key].shape == (1,)
        assert m[key][0] == pytest.approx(1.0), key


def test_all_occluded_prediction_has_zero_jaccard():
    q, occ, tracks = _static_case(num_tracks=2, num_frames=5)
    occ[0, 0, 2:] = True  # 3 of the 8 evaluated (frames 1..4) ground-truth points are hidden
    pred_occ = np.ones_like(occ)
    m = tapvid.compute_tapvid_metrics(q, occ, tracks, pred_occ, tracks.copy(), "first")
    assert m["occlusion_accuracy"][0] == pytest.approx(3 / 8)
    for t in tapvid.THRESHOLDS:
        assert m[f"jaccard_{t}"][0] == 0.0
        assert m[f"pts_within_{t}"][0] == 1.0  # position accuracy ignores predicted occlusion
    assert m["average_jaccard"][0] == 0.0


def test_known_offset_thresholds_are_strict():
    q, occ, tracks = _static_case()
    pred = tracks + np.array([2.0, 0.0])  # distance exactly 2: not "< 2", but "< 4"
    m = tapvid.compute_tapvid_metrics(q, occ, tracks, occ.copy(), pred, "strided")
    expected = {1: 0.0, 2: 0.0, 4: 1.0, 8: 1.0, 16: 1.0}
    for t, value in expected.items():
        assert m[f"pts_within_{t}"][0] == value
        assert m[f"jaccard_{t}"][0] == value
    assert m["average_pts_within_thresh"][0] == pytest.approx(0.6)
    assert m["average_jaccard"][0] == pytest.approx(0.6)


def test_query_frame_exclusion_differs_by_mode():
    # One track, 5 frames, queried at t=2; prediction wrong on frames 0-2, exact on 3-4.
    gt = np.zeros((1, 1, 5, 2)) + 50.0
    pred = gt.copy()
    pred[0, 0, :3] += 100.0
    occ = np.zeros((1, 1, 5), bool)
    q = np.array([[[2.0, 50.0, 50.0]]])
    first = tapvid.compute_tapvid_metrics(q, occ, gt, occ, pred, "first")
    strided = tapvid.compute_tapvid_metrics(q, occ, gt, occ, pred, "strided")
    assert first["pts_within_16"][0] == 1.0  # only frames 3 and 4 count
    assert strided["pts_within_16"][0] == 0.5  # frames 0, 1, 3, 4 count
    # strided: TP = 2, GT positives = 4, false positives = 2 far predicted-visible points
    assert strided["jaccard_16"][0] == pytest.approx(2 / 6)
    with pytest.raises(ValueError):
        tapvid.compute_tapvid_metrics(q, occ, gt, occ, pred, "sideways")


def test_false_positives_from_hidden_and_far_points():
    gt = np.zeros((1, 1, 4, 2)) + 20.0
    occ = np.array([[[False, False, False, True]]])
    pred = gt.copy()
    pred[0, 0, 2] += 100.0  # frame 2 far away but predicted visible
    pred_occ = np.zeros_like(occ)  # frame 3 predicted visible although hidden
    q = np.array([[[0.0, 20.0, 20.0]]])
    m = tapvid.compute_tapvid_metrics(q, occ, gt, pred_occ, pred, "strided")
    assert m["occlusion_accuracy"][0] == pytest.approx(2 / 3)
    assert m["pts_within_1"][0] == pytest.approx(1 / 2)
    assert m["jaccard_1"][0] == pytest.approx(1 / 4)  # TP 1 / (GT 2 + FP 2)


def test_trackwise_metrics_and_batch_shapes():
    q, occ, tracks = _static_case(num_tracks=4)
    q, occ, tracks = np.repeat(q, 2, 0), np.repeat(occ, 2, 0), np.repeat(tracks, 2, 0)
    pred = tracks.copy()
    pred[1, 2] += 50.0
    m = tapvid.compute_tapvid_metrics(q, occ, tracks, occ, pred, "first", get_trackwise_metrics=True)
    assert m["average_jaccard"].shape == (2, 4)
    np.testing.assert_allclose(m["pts_within_4"], [[1, 1, 1, 1], [1, 1, 0, 1]])


def test_stay_put_baseline_is_perfect_on_static_points():
    q, occ, tracks = _static_case()
    tracks[:] = tracks[:, :, :1]
    pred_tracks, pred_occ = tapvid.stay_put_prediction(q, tracks.shape[2])
    assert pred_tracks.shape == tracks.shape and pred_occ.shape == occ.shape and not pred_occ.any()
    m = tapvid.compute_tapvid_metrics(q, occ, tracks, pred_occ, pred_tracks, "strided")
    assert m["average_jaccard"][0] == pytest.approx(1.0)


def test_sample_queries_strided_and_first():
    occ = np.array([[True] * 3 + [False] * 8, [False] * 11])  # 2 tracks, 11 frames
    pts = np.arange(2 * 11 * 2, dtype=float).reshape(2, 11, 2)
    frames = np.zeros((11, 2, 2, 3), np.float32)
    s = tapvid.sample_queries_strided(occ, pts, frames)
    # stride 5 -> frames 0, 5, 10; track 0 is hidden at 0, so 5 queries ordered by frame then track
    np.testing.assert_array_equal(s["query_points"][0, :, 0], [0, 5, 5, 10, 10])
    np.testing.assert_array_equal(s["trackgroup"][0], [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(s["query_points"][0, 1, 1:], [pts[0, 5, 1], pts[0, 5, 0]])
    assert s["target_points"].shape == (1, 5, 11, 2) and s["video"].shape == (1, 11, 2, 2, 3)
    f = tapvid.sample_queries_first(occ, pts, frames)
    np.testing.assert_array_equal(
        f["query_points"][0], [[3, pts[0, 3, 1], pts[0, 3, 0]], [0, pts[1, 0, 1], pts[1, 0, 0]]]
    )


def _example(num_frames=7, height=24, width=40, seed=0, jpeg=False):
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 255, (num_frames, height, width, 3), dtype=np.uint8)
    points = rng.uniform(0.1, 0.9, (4, num_frames, 2)).astype(np.float32)
    occluded = rng.random((4, num_frames)) < 0.3
    occluded[:, 0] = False
    if jpeg:
        frames = []
        for frame in video:
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="JPEG")
            frames.append(buf.getvalue())
        video = frames
    return {"video": video, "points": points, "occluded": occluded}


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def test_readers_all_formats(tmp_path):
    davis = _dump(tmp_path / "tapvid_davis.pkl", {"bear": _example(seed=1), "car": _example(seed=2)})
    samples = list(tapvid.iter_tapvid(davis, "first"))
    assert [s["name"] for s in samples] == ["bear", "car"]
    s = samples[0]
    assert s["video"].shape == (1, 7, 256, 256, 3) and s["video"].dtype == np.float32
    assert -1.0 <= s["video"].min() and s["video"].max() <= 1.0
    raw = _example(seed=1)
    np.testing.assert_allclose(s["target_points"][0], raw["points"] * 256.0, rtol=1e-6)
    assert s["query_points"].shape == (1, 4, 3) and np.all(s["query_points"][0, :, 0] == 0)

    stacking = _dump(tmp_path / "tapvid_rgb_stacking.pkl", [_example(seed=3)])
    (s,) = tapvid.iter_tapvid(stacking, "strided", resolution=None)  # native size kept
    assert s["video"].shape == (1, 7, 24, 40, 3)
    np.testing.assert_allclose(s["target_points"][0, :4], _example(seed=3)["points"] * [40, 24], rtol=1e-6)
    assert "trackgroup" in s

    kinetics = tmp_path / "kinetics"
    kinetics.mkdir()
    for i in range(2):
        _dump(kinetics / f"{i}_of_0010.pkl", [_example(seed=10 + i, jpeg=True)])
    samples = list(tapvid.iter_tapvid(kinetics, "first"))
    assert len(samples) == 2 and samples[1]["video"].shape == (1, 7, 256, 256, 3)

    robotap = tmp_path / "robotap"
    robotap.mkdir()
    _dump(robotap / "robotap_split0.pkl", {"a": _example(seed=5)})
    _dump(robotap / "robotap_split1.pkl", {"b": _example(seed=6)})
    assert [s["name"] for s in tapvid.iter_tapvid(robotap)] == ["a", "b"]


def test_the_writer_writes_what_the_official_davis_loader_reads(tmp_path):
    """The format, read as tapnet's evaluation reads it: a plain pickle of dict name -> video uint8 [T,H,W,3],
    points float32 [N,T,2] (x, y) divided by (width, height), occluded bool [N,T]."""
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (5, 24, 40, 3), dtype=np.uint8)
    tracks = rng.uniform(0, 24, (3, 5, 2))  # float64 pixels, as photo clips give them
    occluded = rng.random((3, 5)) < 0.3
    clips = [("b", video, tracks, occluded), ("a", video[:2], tracks[:, :2].astype(np.float32), occluded[:, :2])]
    path = tapvid.write_tapvid_pickle(tmp_path / "out.pkl", clips)
    with open(path, "rb") as f:
        data = pickle.load(f)
    assert list(data) == ["b", "a"]  # the order given
    for name, clip_video, clip_tracks, clip_occluded in clips:
        example = data[name]
        assert set(example) == {"video", "points", "occluded"}
        np.testing.assert_array_equal(example["video"], clip_video)
        assert example["points"].dtype == np.float32 and example["occluded"].dtype == bool
        np.testing.assert_array_equal(example["points"], (clip_tracks / [40, 24]).astype(np.float32))
        np.testing.assert_array_equal(example["occluded"], clip_occluded)
    assert [name for name, _ in tapvid.load_tapvid_pickle(path)] == ["b", "a"]
    tapvid.write_tapvid_pickle(tmp_path / "again.pkl", clips)
    assert (tmp_path / "again.pkl").read_bytes() == (tmp_path / "out.pkl").read_bytes()  # same clips, same bytes
    with pytest.raises(ValueError, match="tracks over 4 frames, the video has 5"):
        tapvid.write_tapvid_pickle(tmp_path / "bad.pkl", [("c", video, tracks[:, :4], occluded[:, :4])])
    assert not (tmp_path / "bad.pkl").exists()


def test_reader_errors_are_clear(tmp_path):
    with pytest.raises(TapforgeError, match="does not exist"):
        list(tapvid.iter_tapvid(tmp_path / "missing.pkl"))
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(TapforgeError, match="cannot read"):
        list(tapvid.iter_tapvid(bad))
    wrong = _dump(tmp_path / "wrong.pkl", {"v": {"video": np.zeros((2, 4, 4, 3), np.uint8)}})
    with pytest.raises(TapforgeError, match="lacks points, occluded"):
        list(tapvid.iter_tapvid(wrong))
    mismatch = _example()
    mismatch["points"] = mismatch["points"][:, :3]
    with pytest.raises(TapforgeError, match="do not match"):
        list(tapvid.iter_tapvid(_dump(tmp_path / "mismatch.pkl", [mismatch])))
    with pytest.raises(TapforgeError, match="unknown query mode"):
        list(tapvid.iter_tapvid(bad, "every"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(TapforgeError, match="no .pkl files"):
        list(tapvid.iter_tapvid(tmp_path / "empty_dir"))


def test_mean_metrics_is_mean_over_videos():
    q, occ, tracks = _static_case()
    good = tapvid.compute_tapvid_metrics(q, occ, tracks, occ, tracks, "first")
    bad = tapvid.compute_tapvid_metrics(q, occ, tracks, np.ones_like(occ), tracks + 100.0, "first")
    mean = tapvid.mean_metrics([good, bad])
    assert mean["average_jaccard"] == pytest.approx(0.5)
    assert mean["occlusion_accuracy"] == pytest.approx(0.5)


def test_occlusion_recalls_split_the_accuracy_by_ground_truth():
    q, occ, tracks = _static_case(num_tracks=2, num_frames=5)
    occ[0, 0, 2:] = True  # of the 8 evaluated points (frames 1..4), 3 hidden and 5 visible
    pred_occ = occ.copy()
    pred_occ[0, 1, 1] = True  # one visible point called hidden
    pred_occ[0, 0, 4] = False  # one hidden point called visible
    m = tapvid.compute_tapvid_metrics(q, occ, tracks, pred_occ, tracks.copy(), "first")
    assert m["visible_recall"][0] == pytest.approx(4 / 5)
    assert m["occluded_recall"][0] == pytest.approx(2 / 3)
    assert m["occlusion_accuracy"][0] == pytest.approx(5 / 8 * 4 / 5 + 3 / 8 * 2 / 3)
    # a video without hidden points has no occluded_recall, and the benchmark mean leaves it out
    q2, occ2, tracks2 = _static_case(num_tracks=2, num_frames=5)
    m2 = tapvid.compute_tapvid_metrics(q2, occ2, tracks2, occ2.copy(), tracks2.copy(), "first")
    assert np.isnan(m2["occluded_recall"][0])
    assert tapvid.mean_metrics([m, m2])["occluded_recall"] == pytest.approx(2 / 3)
    assert tapvid.mean_metrics([m, m2])["visible_recall"] == pytest.approx((4 / 5 + 1) / 2)
