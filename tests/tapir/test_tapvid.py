"""TAP-Vid metrics on hand-computed cases, query sampling, and the pickle readers."""

import io
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tapforge.base.errors import TapforgeError
from tapforge.tapir import tapvid
from tests.image_modes import frames_of_every_mode


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


# -- re-detection AJ (TAPNext++'s AJ_RD) ---------------------------------------------------------------------------


def _one_track(visible, pred_visible=None, error=None, y=50.0, x=60.0):
    """One video of one static track from a visibility pattern: query at frame 0, prediction exact unless ``error``
    (per-frame x offsets) and visible where ``pred_visible`` (default: everywhere)."""
    visible = np.array(visible, bool)
    num_frames = visible.size
    gt = np.zeros((1, 1, num_frames, 2)) + [x, y]
    pred = gt.copy()
    if error is not None:
        pred[0, 0, :, 0] += error
    pred_visible = np.ones(num_frames, bool) if pred_visible is None else np.array(pred_visible, bool)
    query = np.array([[[0.0, y, x]]])
    return query, ~visible[None, None], gt, ~pred_visible[None, None], pred


def _aj_rd(query, occ, gt, pred_occ, pred, mode="first", **kw):
    return tapvid.compute_redetection_metrics(query, occ, gt, pred_occ, pred, mode, **kw)


@pytest.mark.parametrize("mode", ["first", "strided"])
def test_aj_rd_of_a_perfect_prediction_is_one(mode):
    query, occ, gt, _, pred = _one_track([1, 1, 0, 0, 1, 1, 0, 1])
    m = _aj_rd(query, occ, gt, occ.copy(), pred, mode)
    assert set(m) == set(tapvid.REDETECTION_KEYS) and all(m[k].shape == (1,) for k in m)
    # events: frame 4 (gap 2, eligible) and frame 7 (gap 1, not longer: not eligible); only d_min 1 has an event
    assert m["AJ_RD"][0] == 1.0 and m["AJ_RD_dmin1"][0] == 1.0 and np.isnan(m["AJ_RD_dmin4"][0])


def test_aj_rd_right_before_the_gap_and_off_after_it():
    visible = [1, 1, 1, 1, 0, 0, 1, 1, 1, 1]  # re-appears on frame 6 after a 2-frame gap
    wrong_after = [0] * 6 + [3.0] * 4  # 3 px off on frames 6..9, exact before
    m = _aj_rd(*_one_track(visible, visible, wrong_after))
    # segment 6..9: 4 visible frames, all predicted visible 3 px off: within D = 4, 8, 16 (J = 4 / 4), not within
    # D = 1, 2 (TP 0, FP 4: J = 0 / 8); AJ_RD_dmin1 = mean(0, 0, 1, 1, 1) = 0.6, no event has a gap >= 4
    assert m["AJ_RD_D1_dmin1"][0] == 0.0 and m["AJ_RD_D4_dmin1"][0] == 1.0
    assert m["AJ_RD"][0] == pytest.approx(0.6) and m["AJ_RD_dmin1"][0] == pytest.approx(0.6)
    for d_min in (4, 16, 64, 256):
        assert np.isnan(m[f"AJ_RD_dmin{d_min}"][0])
    # the distance threshold is inclusive (the official <=), unlike TAP-Vid's strict <: 2 px off counts at D = 2
    m = _aj_rd(*_one_track(visible, visible, [0] * 6 + [2.0] * 4))
    assert m["AJ_RD_D2_dmin1"][0] == 1.0 and m["AJ_RD"][0] == pytest.approx(0.8)
    # predicting the track hidden after the gap: TP 0 of GT 4 with no false positive, J = 0 at every D
    m = _aj_rd(*_one_track(visible, [1] * 6 + [0] * 4))
    assert m["AJ_RD"][0] == 0.0


def test_aj_rd_counts_only_re_appearances_after_longer_gaps():
    # frames 0-1 seen, 2-4 hidden (gap 3), 5-6 seen, 7 hidden (gap 1), 8 seen, 9-13 hidden (gap 5), 14-15 seen
    visible = [1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1]
    error = [0.0] * 16
    error[5] = error[6] = 100.0  # far on frames 5 and 6, exact elsewhere, predicted visible everywhere
    m = _aj_rd(*_one_track(visible, error=error))
    # eligible: frame 5 (first) and frame 14 (gap 5 > 3); frame 8 (gap 1) is not.
    # frame 5 -> 15: GT visible 5, 6, 8, 14, 15 = 5; TP 8, 14, 15 = 3; FP 2 far + 6 hidden = 8: J = 3 / 13
    # frame 14 -> 15: J = 2 / 2 = 1. d_min 1: mean(3/13, 1) = 8/13; d_min 4: frame 14 alone = 1; 16+: no event
    assert m["AJ_RD_dmin1"][0] == pytest.approx(8 / 13)
    assert m["AJ_RD_dmin4"][0] == pytest.approx(1.0) and np.isnan(m["AJ_RD_dmin16"][0])
    assert m["AJ_RD"][0] == pytest.approx((8 / 13 + 1) / 2)


def test_aj_rd_edges_never_hidden_last_frame_and_hidden_start():
    # a track never hidden contributes nothing: beside a re-appearing one, the video's value is the other's alone
    query, occ, gt, pred_occ, pred = (
        np.concatenate(parts, axis=1)
        for parts in zip(
            _one_track([1, 1, 0, 1, 1], error=[0, 0, 0, 50, 0]), _one_track([1] * 5, error=[0, 99, 99, 99, 99])
        )
    )
    both = _aj_rd(query, occ, gt, pred_occ, pred)
    alone = _aj_rd(*_one_track([1, 1, 0, 1, 1], error=[0, 0, 0, 50, 0]))
    assert both["AJ_RD"][0] == alone["AJ_RD"][0] == pytest.approx(1 / 3)  # TP 1 / (GT 2 + FP 1 far)
    # ... and a video with no re-appearance gets NaN everywhere, which the mean over videos leaves out
    never = _aj_rd(*_one_track([1] * 5))
    assert all(np.isnan(never[k][0]) for k in tapvid.REDETECTION_KEYS)
    assert tapvid.mean_metrics(
        [{**tapvid.compute_tapvid_metrics(*_one_track([1] * 5), "first"), **m} for m in (never, alone)]
    )["AJ_RD"] == pytest.approx(1 / 3)
    # re-appearing on the last frame scores that frame alone: 1 if predicted visible and within D, else 0
    assert _aj_rd(*_one_track([1, 1, 0, 1]))["AJ_RD"][0] == 1.0
    assert _aj_rd(*_one_track([1, 1, 0, 1], [1, 1, 1, 0]))["AJ_RD"][0] == 0.0
    # strided: the query frame is not scored, so a re-appearance on the last frame queried there scores nothing
    query, occ, gt, pred_occ, pred = _one_track([1, 1, 0, 1])
    query[..., 0] = 3
    assert np.isnan(_aj_rd(query, occ, gt, pred_occ, pred, "strided")["AJ_RD"][0])
    # a track that starts hidden (frames 0-2) and is queried on frame 5: strided counts its first appearance on
    # frame 3 as a re-appearance after a gap of 3 (frames 3, 4, 6, 7 scored; far on frame 3: J = 3 / (4 + 1));
    # first mode starts the clip at the query frame, so there is no gap and no event
    query, occ, gt, pred_occ, pred = _one_track([0, 0, 0, 1, 1, 1, 1, 1], error=[0, 0, 0, 40, 0, 0, 0, 0])
    query[..., 0] = 5
    m = _aj_rd(query, occ, gt, pred_occ, pred, "strided")
    assert m["AJ_RD"][0] == pytest.approx(3 / 5) and np.isnan(m["AJ_RD_dmin4"][0])
    assert np.isnan(_aj_rd(query, occ, gt, pred_occ, pred, "first")["AJ_RD"][0])
    # first mode: a gap before the query frame is not the tracker's; one after it is
    query, occ, gt, pred_occ, pred = _one_track([1, 0, 0, 0, 0, 1, 1, 0, 1, 1])
    query[..., 0] = 5
    m = _aj_rd(query, occ, gt, pred_occ, pred, "first")
    assert m["AJ_RD"][0] == 1.0 and np.isnan(m["AJ_RD_dmin4"][0])  # only the gap of 1 (frame 8) counts, not the 4
    with pytest.raises(ValueError):
        _aj_rd(query, occ, gt, pred_occ, pred, "sideways")


def test_aj_rd_batches_videos_and_tracks_separately():
    one = _one_track([1, 0, 1, 1], error=[0, 0, 50, 0])  # J = 1 / (2 + 1)
    two = _one_track([1, 0, 0, 0, 1], error=[0, 0, 0, 0, 0])  # gap 3, J = 1
    per_track = _aj_rd(
        *(np.concatenate(p, axis=1) for p in zip(one, _one_track([1, 0, 1, 1]))), get_trackwise_metrics=True
    )
    assert per_track["AJ_RD"].shape == (1, 2)
    np.testing.assert_allclose(per_track["AJ_RD"], [[1 / 3, 1.0]])
    batch = _aj_rd(*(np.concatenate(p, axis=0) for p in zip(one, _one_track([1, 0, 1, 1]))))
    np.testing.assert_allclose(batch["AJ_RD"], [1 / 3, 1.0])  # each video its own pool of events
    assert _aj_rd(*two)["AJ_RD"][0] == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 6),
    st.lists(st.booleans(), min_size=0, max_size=25),
    st.data(),
)
def test_aj_rd_of_one_re_appearance_is_plain_aj_from_that_frame_on(seen, gap, tail, data):
    # one eligible event: seen for `seen` frames, hidden for `gap`, then seen, then gaps shorter than `gap` only
    tail = [True] + tail
    run = 0
    for i, flag in enumerate(tail):
        run = 0 if flag else run + 1
        if run == gap:
            tail[i], run = True, 0
    visible = [True] * seen + [False] * gap + tail
    num_frames, t_r = len(visible), seen + gap
    # integer x errors with a 0.5 px y error: no distance lies exactly on a threshold, where < and <= differ
    error = data.draw(st.lists(st.integers(0, 20), min_size=num_frames, max_size=num_frames))
    pred_visible = data.draw(st.lists(st.booleans(), min_size=num_frames, max_size=num_frames))
    query, occ, gt, pred_occ, pred = _one_track(visible, pred_visible, error)
    pred[..., 1] += 0.5
    m = _aj_rd(query, occ, gt, pred_occ, pred)
    # plain AJ restricted to frames t_r .. T-1: first mode with the query on the frame before them
    restricted = query.copy()
    restricted[..., 0] = t_r - 1
    plain = tapvid.compute_tapvid_metrics(restricted, occ, gt, pred_occ, pred, "first")
    assert m["AJ_RD"][0] == pytest.approx(plain["average_jaccard"][0])
    for thresh in tapvid.THRESHOLDS:
        assert m[f"AJ_RD_D{thresh}_dmin1"][0] == pytest.approx(plain[f"jaccard_{thresh}"][0])
    # and predictions before the re-appearance change nothing
    pred[..., :t_r, :] += 1000.0
    pred_occ[..., :t_r] = ~pred_occ[..., :t_r]
    assert _aj_rd(query, occ, gt, pred_occ, pred)["AJ_RD"][0] == m["AJ_RD"][0]


def _bad(change):
    example = _example(num_frames=6)
    example["occluded"][:, :] = False
    change(example)
    return example


def _set(key, value):
    return lambda example: example.__setitem__(key, value)


def _edit(key, index, value):
    def change(example):
        array = np.array(example[key], dtype=np.result_type(example[key], np.asarray(value)))
        array[index] = value
        example[key] = array

    return change


BAD_EXAMPLES = {
    # video: not [T,H,W,3], or values whose scale is not 8-bit
    "gray video": (_set("video", np.zeros((6, 24, 40), np.uint8)), "expected \\[T,H,W,3\\]"),
    "rgba video": (_set("video", np.zeros((6, 24, 40, 4), np.uint8)), "expected \\[T,H,W,3\\]"),
    "no frames": (_set("video", np.zeros((0, 24, 40, 3), np.uint8)), "expected \\[T,H,W,3\\]"),
    "float 0..255": (_set("video", np.full((6, 24, 40, 3), 200.0)), "float frames must lie in \\[0, 1\\]"),
    "float -1..1": (_set("video", np.full((6, 24, 40, 3), -0.5, np.float32)), "float frames must lie in \\[0, 1\\]"),
    "nan video": (_edit("video", (0, 0, 0, 0), np.nan), "float frames must lie in \\[0, 1\\]"),
    "16-bit video": (_set("video", np.full((6, 24, 40, 3), 4000, np.uint16)), "outside 0..255"),
    "negative ints": (_set("video", np.full((6, 24, 40, 3), -3, np.int16)), "outside 0..255"),
    "bool video": (_set("video", np.ones((6, 24, 40, 3), bool)), "not uint8"),
    "ragged frames": (_set("video", [np.zeros((24, 40, 3), np.uint8), np.zeros((20, 40, 3), np.uint8)]), "differ"),
    "text frames": (_set("video", np.full((6, 24, 40, 3), "a")), "not uint8"),
    # tracks: NaN / inf, outside the frame where visible, not [N,T,2] matching T
    "nan point": (_edit("points", (1, 2, 0), np.nan), "NaN or infinite \\(first: track 1, frame 2\\)"),
    "inf point": (_edit("points", (0, 5, 1), np.inf), "NaN or infinite"),
    "nan hidden point": (
        lambda e: (_edit("points", (2, 3), np.nan)(e), _edit("occluded", (2, 3), True)(e)),
        "NaN or infinite",
    ),
    "pixel coordinates": (lambda e: e.__setitem__("points", e["points"] * [40, 24]), "outside \\[0, 1\\]"),
    "x above 1": (_edit("points", (3, 1, 0), 1.5), "track 3, frame 1 at x, y = 1.5"),
    "y below 0": (_edit("points", (0, 0, 1), -0.2), "outside \\[0, 1\\]"),
    "points [N,T,3]": (lambda e: e.__setitem__("points", np.zeros((4, 6, 3), np.float32)), "do not match"),
    "more occluded rows": (_set("occluded", np.zeros((5, 6), bool)), "do not match"),
    "fewer frames in points": (lambda e: e.__setitem__("points", e["points"][:, :5]), "do not match 6 frames"),
    "no tracks": (
        lambda e: (_set("points", np.zeros((0, 6, 2)))(e), _set("occluded", np.zeros((0, 6), bool))(e)),
        "N > 0",
    ),
    "text points": (_set("points", np.full((4, 6, 2), "x")), "not numbers"),
    # occlusion flags that are not flags
    "occluded 2": (_edit("occluded", (1, 1), 2), "occluded holds 2, not a flag"),
    "occluded -1": (_edit("occluded", (1, 1), -1), "occluded holds -1"),
    "occluded 0.5": (_edit("occluded", (0, 4), 0.5), "occluded holds 0.5"),
    "occluded nan": (_edit("occluded", (0, 4), np.nan), "occluded holds nan"),
    "missing key": (lambda e: e.pop("occluded"), "lacks occluded"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXAMPLES))
def test_a_bad_example_is_refused_with_one_line_before_any_scoring(tmp_path, case):
    change, message = BAD_EXAMPLES[case]
    path = _dump(tmp_path / "davis.pkl", {"good": _example(seed=1), "bad": _bad(change)})
    with pytest.raises(TapforgeError, match=message) as err:
        tapvid.load_tapvid_pickle(path)  # the loader checks every example before one is scored
    assert "\n" not in str(err.value) and "'bad'" in str(err.value)
    with pytest.raises(TapforgeError, match=message):
        tapvid.convert_example(_bad(change), "strided", name="bad")


@pytest.mark.parametrize(
    "content,message",
    [
        (_example(), "holds one example \\(keys video, points, occluded\\)"),
        ({"a": [1, 2, 3]}, "example 'a': the example lacks video, points, occluded"),
        ("a string", "holds a str, not a TAP-Vid dict"),
        ({"a": dict(_example(), video=None)}, "frames have shape \\(\\)"),
    ],
)
def test_a_pickle_of_another_layout_is_one_line(tmp_path, content, message):
    with pytest.raises(TapforgeError, match=message) as err:
        tapvid.load_tapvid_pickle(_dump(tmp_path / "x.pkl", content))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("mode", ["first", "strided"])
def test_frames_and_flags_in_other_dtypes_are_converted_exactly(mode):
    example = _example(num_frames=6, seed=4)
    reference = tapvid.convert_example(example, mode)
    variants = {
        "float video in [0, 1]": dict(example, video=example["video"] / 255.0),
        "float32 video in [0, 1]": dict(example, video=(example["video"] / np.float32(255)).astype(np.float32)),
        "int64 video": dict(example, video=example["video"].astype(np.int64)),
        "0/1 int flags": dict(example, occluded=example["occluded"].astype(np.int64)),
        "0/1 float flags": dict(example, occluded=example["occluded"].astype(np.float32)),
        "float64 points": dict(example, points=example["points"].astype(np.float64)),
        "hidden point outside the frame": dict(
            example, points=np.where(example["occluded"][..., None], 1.7, example["points"]).astype(np.float32)
        ),
    }
    for name, variant in variants.items():
        converted = tapvid.convert_example(variant, mode)
        np.testing.assert_array_equal(converted["video"], reference["video"], err_msg=name)
        np.testing.assert_array_equal(converted["query_points"], reference["query_points"], err_msg=name)
        assert converted["occluded"].dtype == bool, name
        visible = ~converted["occluded"]
        np.testing.assert_allclose(
            converted["target_points"][visible], reference["target_points"][visible], rtol=1e-6, err_msg=name
        )


def _encoded_example(frames):
    example = _example(num_frames=len(frames), height=6, width=8)
    example["video"] = list(frames)
    return example


def test_encoded_frames_of_every_mode_decode_to_rgb_or_are_refused():
    for name, (data, expected) in frames_of_every_mode().items():
        example = _encoded_example([data] * 3)
        if expected is None:
            with pytest.raises(TapforgeError, match="frame 0 is not a decodable image.*8-bit"):
                tapvid.convert_example(example, "first", resolution=None, name=name)
            continue
        video = tapvid.convert_example(example, "first", resolution=None, name=name)["video"][0]
        back = np.round((video + 1.0) / 2.0 * 255.0).astype(int)
        assert np.abs(back - expected).max() <= 1, name


def test_encoded_frames_of_different_sizes_are_one_line():
    small, big = (Image.fromarray(np.zeros((h, 8, 3), np.uint8)) for h in (6, 7))
    frames = []
    for image in (small, small, big):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        frames.append(buffer.getvalue())
    with pytest.raises(TapforgeError, match="frame 2 is 8x7 but frame 0 is 8x6") as err:
        tapvid.convert_example(_encoded_example(frames), "first", resolution=None)
    assert "\n" not in str(err.value)
