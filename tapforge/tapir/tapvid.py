"""TAP-Vid benchmark readers and metrics (numpy + PIL only, no torch).

Follows the official evaluation code (``tapnet/tapvid/evaluation_datasets.py``): the pickle
formats, the query sampling (``first`` and ``strided`` with stride 5), the 256x256 resize and
``compute_tapvid_metrics`` give the same keys and values, plus two that split occlusion accuracy by
the ground truth (``visible_recall``, ``occluded_recall``); ``compute_redetection_metrics`` is TAPNext++'s
re-detection AJ (``AJ_RD``, ``tapnet/tapnextpp/metrics/aj_rd.py``) on the same inputs.

Conventions: query points are (t, y, x), tracks are (x, y), both in raster pixels of the resized
video; ``occluded`` is True where the point is not visible; ``video`` is float32 in [-1, 1].
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from typing import Iterable, Iterator, Mapping

import numpy as np

from tapforge.base import safe_pickle
from tapforge.base.atomic import atomic_write_bytes
from tapforge.base.errors import TapforgeError
from tapforge.base.video import decode_image, resize_frames

QUERY_MODES = ("first", "strided")
QUERY_STRIDE = 5  # strided mode: a query every 5th frame where the track is visible (TAP-Vid)
THRESHOLDS = (1, 2, 4, 8, 16)
METRIC_KEYS = (
    ("occlusion_accuracy",)
    + tuple(f"pts_within_{t}" for t in THRESHOLDS)
    + tuple(f"jaccard_{t}" for t in THRESHOLDS)
    + ("average_jaccard", "average_pts_within_thresh")
    + ("visible_recall", "occluded_recall")
)


def compute_tapvid_metrics(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str,
    get_trackwise_metrics: bool = False,
) -> dict[str, np.ndarray]:
    """TAP-Vid metrics per video (or per track), exactly as the official function.

    Args: query_points [b,n,3] (t,y,x); gt_occluded / pred_occluded bool [b,n,t];
    gt_tracks / pred_tracks [b,n,t,2] (x,y), all in 256x256 raster pixels for paper numbers.
    ``query_mode`` 'first' evaluates the frames after each query frame, 'strided' every frame but
    the query frame. Returns arrays of shape [b] (or [b,n] with ``get_trackwise_metrics``) for
    occlusion_accuracy, pts_within_{1,2,4,8,16}, jaccard_{1,2,4,8,16}, average_jaccard and
    average_pts_within_thresh; the benchmark score is the mean over videos. Beyond the official
    metrics: visible_recall and occluded_recall, the shares of visible and of hidden evaluated points
    that are predicted so (occlusion accuracy is their mix, weighted by the visible share; NaN for a
    video without points of that kind).
    """
    summing_axis = (2,) if get_trackwise_metrics else (1, 2)
    eye = np.eye(gt_tracks.shape[2], dtype=np.int32)
    if query_mode == "first":
        query_frame_to_eval_frames = np.cumsum(eye, axis=1) - eye
    elif query_mode == "strided":
        query_frame_to_eval_frames = 1 - eye
    else:
        raise ValueError("Unknown query mode " + query_mode)
    query_frame = np.round(query_points[..., 0]).astype(np.int32)
    evaluation_points = query_frame_to_eval_frames[query_frame] > 0

    metrics = {}
    metrics["occlusion_accuracy"] = np.sum(
        np.equal(pred_occluded, gt_occluded) & evaluation_points, axis=summing_axis
    ) / np.sum(evaluation_points, axis=summing_axis)

    visible = np.logical_not(gt_occluded)
    pred_visible = np.logical_not(pred_occluded)
    with np.errstate(invalid="ignore", divide="ignore"):
        for key, truth, pred in (
            ("visible_recall", visible, pred_visible),
            ("occluded_recall", ~visible, ~pred_visible),
        ):
            metrics[key] = np.sum(truth & pred & evaluation_points, axis=summing_axis) / np.sum(
                truth & evaluation_points, axis=summing_axis
            )
    all_frac_within = []
    all_jaccard = []
    for thresh in THRESHOLDS:
        within_dist = np.sum(np.square(pred_tracks - gt_tracks), axis=-1) < np.square(thresh)
        is_correct = np.logical_and(within_dist, visible)
        count_correct = np.sum(is_correct & evaluation_points, axis=summing_axis)
        count_visible_points = np.sum(visible & evaluation_points, axis=summing_axis)
        frac_correct = count_correct / count_visible_points
        metrics[f"pts_within_{thresh}"] = frac_correct
        all_frac_within.append(frac_correct)

        true_positives = np.sum(is_correct & pred_visible & evaluation_points, axis=summing_axis)
        # TP + FN is the number of visible ground-truth points; FP are predicted-visible points
        # that are hidden in the ground truth or too far away.
        gt_positives = np.sum(visible & evaluation_points, axis=summing_axis)
        false_positives = ((~visible) & pred_visible) | ((~within_dist) & pred_visible)
        false_positives = np.sum(false_positives & evaluation_points, axis=summing_axis)
        jaccard = true_positives / (gt_positives + false_positives)
        metrics[f"jaccard_{thresh}"] = jaccard
        all_jaccard.append(jaccard)
    metrics["average_jaccard"] = np.mean(np.stack(all_jaccard, axis=1), axis=1)
    metrics["average_pts_within_thresh"] = np.mean(np.stack(all_frac_within, axis=1), axis=1)
    return metrics


REDETECTION_MIN_GAPS = (1, 4, 16, 64, 256)  # d_min: the official AJ_RD's minimum hidden-gap lengths (frames)
REDETECTION_KEYS = (
    tuple(f"AJ_RD_D{t}_dmin{d}" for d in REDETECTION_MIN_GAPS for t in THRESHOLDS)
    + tuple(f"AJ_RD_dmin{d}" for d in REDETECTION_MIN_GAPS)
    + ("AJ_RD",)
)


def _suffix_sum(x: np.ndarray) -> np.ndarray:
    """sum over frames s >= t of x[..., s], for every t."""
    return np.cumsum(x[..., ::-1], axis=-1, dtype=np.int64)[..., ::-1]


def _mean_of_finite(values: list[np.ndarray]) -> np.ndarray:
    """Element-wise mean of the finite entries of ``values`` (NaN where none is finite), without warnings."""
    stacked = np.stack(values)
    finite = np.isfinite(stacked)
    count = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(finite, stacked, 0.0).sum(axis=0) / count, np.nan)


def compute_redetection_metrics(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str,
    get_trackwise_metrics: bool = False,
) -> dict[str, np.ndarray]:
    """TAPNext++'s re-detection Average Jaccard (AJ_RD), per video, with the inputs of `compute_tapvid_metrics`.

    The official definition (``tapnet/tapnextpp/metrics/aj_rd.py``, ``compute_redetection_metrics``), per track:
    a re-appearance is a frame t_r >= 1 where the point is visible and was hidden on frame t_r - 1; its gap d is the
    number of hidden frames just before t_r (counted from the clip's start when the track starts hidden). Only the
    first re-appearance and those whose gap is longer than every earlier one's are eligible. An eligible event scores
    the Jaccard of frames t_r .. T-1 at distance D: TP = predicted visible, visible and within D (inclusive, ``<=``:
    unlike TAP-Vid's strict ``<``), divided by visible frames + predicted-visible frames that are hidden or farther
    than D (NaN, left out, where that is zero). ``AJ_RD_D{D}_dmin{d}`` is the mean over eligible events with gap >= d,
    ``AJ_RD_dmin{d}`` its mean over D = 1, 2, 4, 8, 16 and ``AJ_RD`` the mean of those over d = 1, 4, 16, 64, 256
    (NaN entries left out). So a track never hidden after its first frame contributes nothing, one that re-appears
    on the last frame scores that frame alone (1 if predicted visible within D, else 0), and a video (or track) with
    no eligible re-appearance gets NaN for every key (`mean_metrics` leaves it out of the mean over videos).

    Query modes, as the TAP-Vid evaluation frames: 'first' runs the definition on the clip from each query frame on
    (frames before it do not exist for the tracker, so neither does a gap there, and the query frame is never
    scored); 'strided' on the whole clip, with each query frame left out of the counts. The official function pools
    the events of its whole batch; here each video (batch row) is its own pool, the official result on that video
    alone, and ``get_trackwise_metrics`` gives [b, n] with each track its own pool. Coordinates as in
    `compute_tapvid_metrics` (256x256 raster pixels for paper numbers). Returns arrays [b] for `REDETECTION_KEYS`.
    """
    visible = np.logical_not(gt_occluded)
    pred_visible = np.logical_not(pred_occluded)
    num_frames = visible.shape[-1]
    frames = np.arange(num_frames)
    query_frame = np.round(query_points[..., 0]).astype(np.int64)[..., None]
    if query_mode == "first":
        start, scored = query_frame, frames > query_frame
    elif query_mode == "strided":
        start, scored = np.zeros_like(query_frame), frames != query_frame
    else:
        raise ValueError("Unknown query mode " + query_mode)
    in_clip = frames >= start
    # the last visible frame before each frame (start - 1 when none), hence the hidden gap just before it
    last_seen = np.maximum.accumulate(np.where(visible & in_clip, frames, -1), axis=-1)
    before = np.maximum(np.concatenate([np.full_like(last_seen[..., :1], -1), last_seen[..., :-1]], axis=-1), start - 1)
    gap = frames - 1 - before
    event = visible & (frames > start) & (gap > 0)
    longest = np.maximum.accumulate(np.where(event, gap, -1), axis=-1)
    longest_before = np.concatenate([np.full_like(longest[..., :1], -1), longest[..., :-1]], axis=-1)
    eligible = event & (gap > longest_before)

    summing_axis = (2,) if get_trackwise_metrics else (1, 2)
    distance = np.sqrt(np.sum(np.square(pred_tracks - gt_tracks), axis=-1))
    gt_positives = _suffix_sum(visible & scored)
    jaccards = {}
    for thresh in THRESHOLDS:
        within = distance <= thresh
        true_positives = _suffix_sum(within & visible & pred_visible & scored)
        false_positives = _suffix_sum(pred_visible & (~visible | ~within) & scored)
        with np.errstate(invalid="ignore", divide="ignore"):
            jaccards[thresh] = true_positives / (gt_positives + false_positives)  # of the segment from each frame on

    metrics = {}
    for min_gap in REDETECTION_MIN_GAPS:
        selected = eligible & (gap >= min_gap)
        for thresh in THRESHOLDS:
            counted = selected & np.isfinite(jaccards[thresh])
            total = np.sum(np.where(counted, jaccards[thresh], 0.0), axis=summing_axis)
            count = np.sum(counted, axis=summing_axis)
            with np.errstate(invalid="ignore", divide="ignore"):
                metrics[f"AJ_RD_D{thresh}_dmin{min_gap}"] = np.where(count > 0, total / count, np.nan)
        metrics[f"AJ_RD_dmin{min_gap}"] = _mean_of_finite([metrics[f"AJ_RD_D{t}_dmin{min_gap}"] for t in THRESHOLDS])
    metrics["AJ_RD"] = _mean_of_finite([metrics[f"AJ_RD_dmin{d}"] for d in REDETECTION_MIN_GAPS])
    return metrics


def compute_all_metrics(*args, **kwargs) -> dict[str, np.ndarray]:
    """`compute_tapvid_metrics` and `compute_redetection_metrics` (same arguments) in one dict."""
    return {**compute_tapvid_metrics(*args, **kwargs), **compute_redetection_metrics(*args, **kwargs)}


def stay_put_prediction(query_points: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The stay-put baseline: every point stays at its query (x, y) and is always visible.

    Returns (pred_tracks [..., n, num_frames, 2] (x,y), pred_occluded [..., n, num_frames] bool).
    """
    xy = np.asarray(query_points)[..., None, :][..., [2, 1]]
    tracks = np.repeat(xy, num_frames, axis=-2)
    return tracks, np.zeros(tracks.shape[:-1], dtype=bool)


def sample_queries_strided(
    target_occluded: np.ndarray,
    target_points: np.ndarray,
    frames: np.ndarray,
    query_stride: int = QUERY_STRIDE,
) -> dict[str, np.ndarray]:
    """One query per track at every ``query_stride``-th frame where the track is visible.

    ``target_points`` [n,t,2] (x,y) and ``frames`` [t,h,w,3] as the reader has them; returns
    video [1,t,h,w,3], query_points [1,q,3] (t,y,x), target_points [1,q,t,2], occluded [1,q,t]
    and trackgroup [1,q] (the source track of each query), queries ordered by frame then track.
    """
    tracks, occs, queries, trackgroups = [], [], [], []
    trackgroup = np.arange(target_occluded.shape[0])
    for i in range(0, target_occluded.shape[1], query_stride):
        mask = target_occluded[:, i] == 0
        query = np.stack(
            [i * np.ones(target_occluded.shape[0:1]), target_points[:, i, 1], target_points[:, i, 0]],
            axis=-1,
        )
        queries.append(query[mask])
        tracks.append(target_points[mask])
        occs.append(target_occluded[mask])
        trackgroups.append(trackgroup[mask])
    return {
        "video": frames[np.newaxis, ...],
        "query_points": np.concatenate(queries, axis=0)[np.newaxis, ...],
        "target_points": np.concatenate(tracks, axis=0)[np.newaxis, ...],
        "occluded": np.concatenate(occs, axis=0)[np.newaxis, ...],
        "trackgroup": np.concatenate(trackgroups, axis=0)[np.newaxis, ...],
    }


def sample_queries_first(
    target_occluded: np.ndarray,
    target_points: np.ndarray,
    frames: np.ndarray,
) -> dict[str, np.ndarray]:
    """One query per track at its first visible frame; tracks never visible are dropped.

    Same inputs and output keys as :func:`sample_queries_strided` (without ``trackgroup``).
    """
    valid = np.sum(~target_occluded, axis=1) > 0
    target_points = target_points[valid, :]
    target_occluded = target_occluded[valid, :]
    query_points = []
    for i in range(target_points.shape[0]):
        index = np.where(target_occluded[i] == 0)[0][0]
        x, y = target_points[i, index, 0], target_points[i, index, 1]
        query_points.append(np.array([index, y, x]))
    query_points = np.stack(query_points, axis=0)
    return {
        "video": frames[np.newaxis, ...],
        "query_points": query_points[np.newaxis, ...],
        "target_points": target_points[np.newaxis, ...],
        "occluded": target_occluded[np.newaxis, ...],
    }


def resize_video(video: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 frames [t,h,w,c] to ``output_size`` (height, width) with a Lanczos filter, as the official
    TAP-Vid evaluation does (see ``tapforge.base.video.resize_frames``)."""
    return resize_frames(video, output_size, "lanczos")


FIX_PICKLE = "fix: use an official TAP-Vid pickle, or write it with tapforge.tapir.tapvid.write_tapvid_pickle"
POINT_SLACK = 1e-3
"""How far (in frame widths/heights) a visible point's normalised coordinate may lie outside [0, 1] (rounding)."""


def _is_encoded(frames) -> bool:
    """Whether a pickle's video is a sequence of encoded images (Kinetics) rather than an array of pixels."""
    sequence = isinstance(frames, (list, tuple)) or (isinstance(frames, np.ndarray) and frames.ndim == 1)
    return sequence and len(frames) > 0 and isinstance(frames[0], (bytes, bytearray))


def decode_frames(frames, where: str = "video") -> np.ndarray:
    """Frames as stored in a TAP-Vid pickle -> uint8 [T,H,W,3], or one TapforgeError line saying what is wrong.

    Accepted: a uint8 array [T,H,W,3]; another integer array with values in 0..255 (cast); a float array with values
    in [0, 1] (scaled by 255 and rounded: float frames in [0, 255] or [-1, 1] are refused, not guessed); a list of
    JPEG/PNG bytes of one size (decoded as ``tapforge.base.video.decode_image`` does: any bit depth or mode).
    """
    if _is_encoded(frames):
        decoded = []
        for t, frame in enumerate(frames):
            if not isinstance(frame, (bytes, bytearray)):
                raise TapforgeError(
                    f"{where}: frame {t} is a {type(frame).__name__}, not encoded image bytes; {FIX_PICKLE}"
                )
            try:
                decoded.append(decode_image(frame))
            except ValueError as err:
                raise TapforgeError(
                    f"{where}: frame {t} is not a decodable image ({err}); fix: re-download or regenerate the pickle"
                ) from None
            if decoded[-1].shape != decoded[0].shape:
                raise TapforgeError(
                    f"{where}: frame {t} is {decoded[-1].shape[1]}x{decoded[-1].shape[0]} but frame 0 is "
                    f"{decoded[0].shape[1]}x{decoded[0].shape[0]}; fix: encode every frame at one size"
                )
        frames = decoded
    try:
        frames = np.asarray(frames)
    except ValueError:  # a ragged list of arrays
        raise TapforgeError(
            f"{where}: the video's frames differ in shape; fix: store one uint8 [T,H,W,3] array"
        ) from None
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) == 0:
        raise TapforgeError(
            f"{where}: frames have shape {frames.shape}, expected [T,H,W,3] with T, H, W > 0; "
            "fix: use an official TAP-Vid pickle (uint8 frames or a list of JPEG bytes)"
        )
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype == bool or not np.issubdtype(frames.dtype, np.number) or np.iscomplexobj(frames):
        raise TapforgeError(f"{where}: frames are {frames.dtype}, not uint8; {FIX_PICKLE}")
    low, high = frames.min(), frames.max()
    if np.issubdtype(frames.dtype, np.integer):
        if low < 0 or high > 255:
            raise TapforgeError(
                f"{where}: {frames.dtype} frames hold values {low}..{high}, outside 0..255 (not 8-bit); "
                "fix: store uint8 frames (convert deeper bit depths to 8 bits first)"
            )
        return frames.astype(np.uint8)
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 1:
        raise TapforgeError(
            f"{where}: {frames.dtype} frames hold values {low:g}..{high:g}; float frames must lie in [0, 1] "
            "(the scale is not guessed); fix: store uint8 frames in 0..255"
        )
    return np.round(frames.astype(np.float32) * 255.0).astype(np.uint8)


def check_tracks(points, occluded, num_frames: int, where: str = "video") -> tuple[np.ndarray, np.ndarray]:
    """A TAP-Vid example's ``points`` and ``occluded`` -> (float32 [N,T,2], bool [N,T]), or one TapforgeError line.

    Checked: numeric arrays of shapes [N,T,2] and [N,T] with N > 0 and T = ``num_frames``; every point finite;
    occlusion flags boolean or 0/1 numbers; visible points within the frame, [0, 1] in the normalised (x, y) that
    TAP-Vid stores (a hidden point may lie outside it: one that has left the frame).
    """
    try:
        points = np.asarray(points)
        occluded = np.asarray(occluded)
    except ValueError:
        raise TapforgeError(f"{where}: points or occluded is a ragged list, not an array; {FIX_PICKLE}") from None
    for key, array in (("points", points), ("occluded", occluded)):
        if not (array.dtype == bool or np.issubdtype(array.dtype, np.number)) or np.iscomplexobj(array):
            raise TapforgeError(f"{where}: {key} is {array.dtype}, not numbers; {FIX_PICKLE}")
    if (
        points.ndim != 3
        or points.shape[-1] != 2
        or occluded.shape != points.shape[:2]
        or points.shape[1] != num_frames
        or points.shape[0] == 0
    ):
        raise TapforgeError(
            f"{where}: points {points.shape} / occluded {occluded.shape} do not match {num_frames} frames "
            f"(expected [N,T,2] and [N,T] with N > 0, T = {num_frames}); {FIX_PICKLE}"
        )
    if occluded.dtype != bool:
        odd = occluded[(occluded != 0) & (occluded != 1)]
        if odd.size:
            raise TapforgeError(
                f"{where}: occluded holds {odd.flat[0].item()!r}, not a flag (bool, or 0/1); "
                "fix: store occluded as bool [N,T], True where the point is hidden"
            )
        occluded = occluded != 0
    bad = ~np.isfinite(points).all(axis=-1)
    if bad.any():
        n, t = np.argwhere(bad)[0]
        raise TapforgeError(
            f"{where}: {int(bad.sum())} point(s) are NaN or infinite (first: track {n}, frame {t}); "
            f"fix: store finite (x, y) for every track and frame, hidden ones included"
        )
    outside = ~occluded & ((points < -POINT_SLACK) | (points > 1 + POINT_SLACK)).any(axis=-1)
    if outside.any():
        n, t = np.argwhere(outside)[0]
        raise TapforgeError(
            f"{where}: {int(outside.sum())} visible point(s) lie outside [0, 1] (first: track {n}, frame {t} at "
            f"x, y = {points[n, t, 0]:g}, {points[n, t, 1]:g}); TAP-Vid stores (x, y) divided by the frame's width and "
            "height; fix: divide pixel coordinates by (width, height), or mark points outside the frame occluded"
        )
    return points.astype(np.float32, copy=False), occluded


def check_example(example: Mapping, where: str = "video", decode: bool = True) -> dict:
    """A raw TAP-Vid example with its arrays checked (`decode_frames`, `check_tracks`): video uint8 [T,H,W,3] (with
    ``decode=False`` a list of encoded frames stays encoded: only the tracks are checked against its length),
    points float32 [N,T,2], occluded bool [N,T]; one TapforgeError line for a missing key or a bad array."""
    missing = [k for k in ("video", "points", "occluded") if not isinstance(example, Mapping) or k not in example]
    if missing:
        raise TapforgeError(f"{where}: the example lacks {', '.join(missing)}; {FIX_PICKLE}")
    video = example["video"]
    if decode or not _is_encoded(video):
        video = decode_frames(video, where)
    points, occluded = check_tracks(example["points"], example["occluded"], len(video), where)
    return {"video": video, "points": points, "occluded": occluded}


def load_tapvid_pickle(path: str | os.PathLike) -> list[tuple[str, Mapping]]:
    """Read one TAP-Vid pickle (dict name -> example, or a list of examples) as (name, example) pairs, every example
    checked before any is used (`check_example`; encoded frames are decoded later, by `convert_example`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TapforgeError(f"TAP-Vid pickle {path!r} does not exist; fix: pass the path of the downloaded .pkl file")
    if zipfile.is_zipfile(path):
        raise TapforgeError(f"{path!r} is a zip archive; fix: unzip it and pass the .pkl file inside")
    try:
        with open(path, "rb") as f:
            data = safe_pickle.load(f)
    except safe_pickle.UnsafePickle as err:
        raise TapforgeError(
            f"TAP-Vid pickle {path!r} names {err}, which a data file may not: only arrays, dicts, lists, strings and "
            "numbers are read (nothing in it was run); fix: use an official TAP-Vid pickle or rewrite it with plain data"
        ) from None
    except Exception as err:  # pickle raises many types for damaged input
        raise TapforgeError(
            f"cannot read TAP-Vid pickle {path!r} ({type(err).__name__}: {err}); fix: re-download the file"
        ) from None
    stem = os.path.splitext(os.path.basename(path))[0]
    if (
        isinstance(data, dict)
        and {"video", "points", "occluded"} <= set(data)
        and not isinstance(data["video"], Mapping)
    ):
        raise TapforgeError(
            f"{path!r} holds one example (keys video, points, occluded), not a dict of examples by name; "
            "fix: save it as {name: example}, as TAP-Vid DAVIS does"
        )
    if isinstance(data, dict):
        items = [(str(name), example) for name, example in data.items()]
    elif isinstance(data, (list, tuple)):
        items = [(f"{stem}/{i:04d}", example) for i, example in enumerate(data)]
    else:
        raise TapforgeError(
            f"{path!r} holds a {type(data).__name__}, not a TAP-Vid dict or list of examples; "
            "fix: pass a TAP-Vid DAVIS / RGB-Stacking / Kinetics / RoboTAP pickle"
        )
    return [(name, check_example(example, f"{path!r}: example {name!r}", decode=False)) for name, example in items]


def write_tapvid_pickle(
    path: str | os.PathLike, clips: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray]]
) -> str:
    """Write clips as a TAP-Vid DAVIS-format pickle (atomically), the format `load_tapvid_pickle` reads; returns the path.

    ``clips`` gives (name, video uint8 [T,H,W,3], tracks [N,T,2] (x, y) raster pixels, occluded bool [N,T]). The pickle
    is a dict name -> {"video": uint8 [T,H,W,3], "points": float32 [N,T,2] (x, y) divided by (width, height),
    "occluded": bool [N,T]}, written with protocol 4 (plain numpy arrays: the official loaders read it).
    """
    videos = {}
    for name, video, tracks, occluded in clips:
        video, tracks, occluded = np.asarray(video), np.asarray(tracks), np.asarray(occluded)
        if video.ndim != 4 or video.shape[-1] != 3 or tracks.shape != occluded.shape + (2,):
            raise ValueError(f"clip {name!r}: video {video.shape}, tracks {tracks.shape}, occluded {occluded.shape}")
        if tracks.shape[1] != video.shape[0]:
            raise ValueError(f"clip {name!r}: tracks over {tracks.shape[1]} frames, the video has {video.shape[0]}")
        if str(name) in videos:
            raise ValueError(f"clip name {name!r} is given twice")
        height, width = video.shape[1:3]
        videos[str(name)] = {
            "video": video.astype(np.uint8, copy=False),
            # in float64, then rounded once: the same float32 whether the tracks come as float32 or float64
            "points": (tracks.astype(np.float64) / np.array([width, height], np.float64)).astype(np.float32),
            "occluded": occluded.astype(bool, copy=False),
        }
    return atomic_write_bytes(path, pickle.dumps(videos, protocol=4))


def tapvid_pickle_paths(path: str | os.PathLike) -> list[str]:
    """A pickle file, or every ``*.pkl`` in a folder (Kinetics shards, RoboTAP splits) in sorted order; one error line
    for a missing path or a folder without pickles."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".pkl"))
        if not found:
            raise TapforgeError(f"folder {path!r} has no .pkl files; fix: pass the folder holding the TAP-Vid pickles")
        return found
    if not os.path.isfile(path):
        raise TapforgeError(f"TAP-Vid pickle {path!r} does not exist; fix: pass the path of the downloaded .pkl file")
    return [path]


def convert_example(
    example: Mapping,
    query_mode: str = "strided",
    resolution: tuple[int, int] | None = (256, 256),
    name: str = "video",
) -> dict[str, np.ndarray]:
    """One raw TAP-Vid example, checked (`check_example`) -> resized video in [-1,1] with queries and targets in raster
    pixels."""
    if query_mode not in QUERY_MODES:
        raise TapforgeError(f"unknown query mode {query_mode!r}; fix: use one of {', '.join(QUERY_MODES)}")
    example = check_example(example, name)
    frames, points, occluded = example["video"], example["points"], example["occluded"]
    if resolution is not None and tuple(resolution) != frames.shape[1:3]:
        frames = resize_video(frames, tuple(resolution))
    frames = frames.astype(np.float32) / 255.0 * 2.0 - 1.0
    target_points = points * np.array([frames.shape[2], frames.shape[1]])
    if query_mode == "first" and not np.any(~occluded):
        raise TapforgeError(f"{name}: no track is visible in any frame, so it has no query; fix: drop this example")
    if query_mode == "strided":
        converted = sample_queries_strided(occluded, target_points, frames)
    else:
        converted = sample_queries_first(occluded, target_points, frames)
    converted["name"] = name
    return converted


def iter_tapvid(
    path: str | os.PathLike,
    query_mode: str = "strided",
    resolution: tuple[int, int] | None = (256, 256),
) -> Iterator[dict[str, np.ndarray]]:
    """Yield evaluation samples from any TAP-Vid pickle or folder of pickles.

    Handles DAVIS (dict name -> example), RGB-Stacking (list), Kinetics (folder of
    ``*_of_0010.pkl`` shards with JPEG-bytes frames) and RoboTAP (folder of dict pickles). Each
    sample has the official keys video [1,t,h,w,3], query_points [1,q,3], target_points
    [1,q,t,2], occluded [1,q,t] (plus trackgroup for strided) and ``name``.
    """
    if query_mode not in QUERY_MODES:
        raise TapforgeError(f"unknown query mode {query_mode!r}; fix: use one of {', '.join(QUERY_MODES)}")
    for pickle_path in tapvid_pickle_paths(path):
        for name, example in load_tapvid_pickle(pickle_path):
            yield convert_example(example, query_mode, resolution, name=name)


def mean_metrics(per_video: list[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Benchmark score: the simple mean over videos of each per-video metric, as the paper reports
    (a video whose metric is NaN, e.g. no hidden point for occluded_recall or no re-appearance for AJ_RD, is left out
    of that mean). Keys: `METRIC_KEYS`, and `REDETECTION_KEYS` where every video has them."""
    if not per_video:
        raise TapforgeError("no videos were evaluated; fix: check that the TAP-Vid pickle holds examples")
    keys = METRIC_KEYS + tuple(k for k in REDETECTION_KEYS if all(k in m for m in per_video))
    with warnings.catch_warnings():  # a metric NaN in every video (no hidden point anywhere) stays NaN, unannounced
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: float(np.nanmean(np.concatenate([np.ravel(m[k]) for m in per_video]))) for k in keys}
