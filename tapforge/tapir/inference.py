"""Track points through a video with a TAPIR, TAP-Net or TAPNext model.

``Tracker`` holds a model on a device; ``Tracker.track(frames, queries)`` resizes the frames to the
model resolution, scales the queries there and the tracks back, and turns the logits into
visibility with the official postprocess::

    visible = (1 - sigmoid(occlusion)) * (1 - sigmoid(expected_dist)) > 0.5

Queries are (t, y, x) and tracks (x, y), in raster pixels of the input frames ((0, 0) is the
top-left corner of the top-left pixel).

Long videos: with ``chunk_frames`` a TAPIR runs over windows of that many frames plus its temporal reach
(`temporal_reach`) on each side, so that memory is bounded by the window rather than the clip, and the
outputs equal the whole-clip run's (up to float rounding).

TAPNext: all queries go through one pass (they attend to one another, so splitting them would change the
answers); frames before a query's frame are tracked on the time-reversed video, as the official strided
evaluation does; visible where the visibility logit is positive (``checkpoint.visibility_uncertainty``). With
``chunk_frames`` it runs online, that many frames at a time with its recurrent state carried (the whole clip's
outputs up to float rounding, memory bounded by the chunk).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tapforge.base.errors import TapforgeError
from tapforge.tapir import nets
from tapforge.tapir.checkpoint import model_resolution, tracking_outputs
from tapforge.tapir.model import TAPIR, FeatureGrids, QueryFeatures, postprocess
from tapforge.tapir.tapnext import TAPNext


@dataclass
class TrackResult:
    """Tracks in input-frame pixels: tracks [N,T,2] (x,y) float32, occluded [N,T] bool,
    visibility [N,T] float32 probability, queries [N,3] (t,y,x) as given."""

    tracks: np.ndarray
    occluded: np.ndarray
    visibility: np.ndarray
    queries: np.ndarray


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> cuda when available, else cpu; a cuda request without a GPU is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TapforgeError("device cuda was asked for but torch sees no GPU; fix: pass --device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise TapforgeError(
            f"there is no {device}: torch sees {torch.cuda.device_count()} GPU(s); fix: pick cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
        )
    return device


def grid_queries(k: int, height: int, width: int, frame: int = 0) -> np.ndarray:
    """A k x k grid of (t, y, x) queries at the cell centres of one frame, row by row."""
    if k < 1:
        raise TapforgeError(f"grid size {k} is not positive; fix: pass --grid K with K >= 1")
    ys = (np.arange(k) + 0.5) * height / k
    xs = (np.arange(k) + 0.5) * width / k
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([np.full(k * k, float(frame)), yy.ravel(), xx.ravel()], axis=-1).astype(np.float32)


def check_queries(queries: np.ndarray, num_frames: int, height: int, width: int) -> np.ndarray:
    """Validate (t, y, x) queries against the video; TapforgeError names every bad one (first 8)."""
    queries = np.asarray(queries, dtype=np.float64)
    if queries.ndim != 2 or queries.shape[1] != 3 or queries.shape[0] == 0:
        raise TapforgeError(
            f"queries must be a non-empty [N,3] array of (t, y, x), got shape {queries.shape}; fix: pass N rows of t, y, x"
        )
    t, y, x = queries.T
    bad = (
        ~np.isfinite(queries).all(axis=1)
        | (t < 0)
        | (t > num_frames - 1)
        | (y < 0)
        | (y > height)
        | (x < 0)
        | (x > width)
    )
    if bad.any():
        idx = np.flatnonzero(bad)
        shown = ", ".join(f"#{i} (t={t[i]:g}, y={y[i]:g}, x={x[i]:g})" for i in idx[:8])
        more = f" and {len(idx) - 8} more" if len(idx) > 8 else ""
        raise TapforgeError(
            f"{len(idx)} query point(s) lie outside the video ({num_frames} frames, {height}x{width} HxW): {shown}{more}; "
            f"fix: use 0 <= t <= {num_frames - 1}, 0 <= y <= {height}, 0 <= x <= {width} (pixels, t,y,x order)"
        )
    return queries


def temporal_reach(model: torch.nn.Module, resolution: tuple[int, int]) -> tuple[int, int] | None:
    """(frames before, frames after) that one output frame of ``model`` depends on, run at ``resolution``; None for
    a model whose reach is not known here (TAP-Net: it runs on the whole clip).

    In TAPIR only the refinement mixes frames: each mixer block has two temporal convs, each reaching (K - 1) / 2
    frames to either side ((K - 1) back when causal), and every refinement iteration reads the previous one's output
    on the same frame. So the reach is iterations x blocks x 2 x that: 96 frames each side for TAPIR and BootsTAPIR
    at 256x256 (4 x 12 x 2 x 1), 192 back and none ahead for causal BootsTAPIR.
    """
    if not isinstance(model, TAPIR):
        return None
    levels = len(nets.generate_default_resolutions(resolution, model.initial_resolution))
    convs = model.num_pips_iter * levels * model.num_mixer_blocks * 2
    k = model.mixer_kernel_shape
    return (convs * (k - 1), 0) if model.use_casual_conv else (convs * ((k - 1) // 2), convs * ((k - 1) // 2))


def _query_slice(features: QueryFeatures, part: slice) -> QueryFeatures:
    return QueryFeatures(
        tuple(f[:, part] for f in features.lowres), tuple(f[:, part] for f in features.hires), features.resolutions
    )


class _WindowGrids:
    """TAPIR feature grids of a sliding window of frames, held in one buffer per distinct grid: moving the window on
    keeps the frames it still covers and encodes only the new ones."""

    def __init__(self, model: TAPIR, capacity: int):
        self.model, self.capacity = model, capacity  # the most frames a window holds
        self.buffers: list[torch.Tensor] = []
        self.shared: list[bool] = []  # per level: its grids are the previous level's (same resolution)
        self.resolutions: tuple = ()
        self.first = self.stop = 0  # the window's frames [first, stop)

    def advance(self, first: int, stop: int, encode: Callable[[int, int], torch.Tensor]) -> FeatureGrids:
        """Move the window on to frames [first, stop); ``encode(a, b)`` gives frames a..b-1 as a model input."""
        keep, shift = max(0, self.stop - first), first - self.first
        for buffer in self.buffers:
            for i in range(0, keep if shift else 0, max(shift, 1)):  # copies of <= shift frames: no overlap
                buffer[:, i : min(keep, i + shift)] = buffer[:, shift + i : shift + min(keep, i + shift)]
        step = self.model.feature_extractor_chunk_size or 32  # new grids straight into the buffer, a few at a time
        for begin in range(max(first, self.stop), stop, step):
            end = min(stop, begin + step)
            new = self.model.get_feature_grids(encode(begin, end))
            if not self.buffers:
                self.resolutions = new.resolutions
                self.shared = [i > 0 and new.lowres[i] is new.lowres[i - 1] for i in range(len(new.lowres))]
            grids = [g for i, pair in enumerate(zip(new.lowres, new.hires)) if not self.shared[i] for g in pair]
            if not self.buffers:
                self.buffers = [g.new_empty((g.shape[0], self.capacity, *g.shape[2:])) for g in grids]
            for buffer, grid in zip(self.buffers, grids):
                buffer[:, begin - first : end - first] = grid
        self.first, self.stop = first, stop
        views = iter(buffer[:, : stop - first] for buffer in self.buffers)
        lowres, hires = [], []
        for shared in self.shared:
            lowres.append(lowres[-1] if shared else next(views))
            hires.append(hires[-1] if shared else next(views))
        return FeatureGrids(tuple(lowres), tuple(hires), self.resolutions)


class Tracker:
    """A TAPIR, TAP-Net or TAPNext model on a device, ready to track points in videos of any size and length.

    Args:
      model: a ``tapir.TAPIR``, ``tapir.TAPNet`` or ``tapir.TAPNext`` (put in eval mode and moved to ``device``).
      device: "cpu", "cuda", "cuda:1" or None/"auto".
      bf16: run under bfloat16 autocast (CUDA with bf16 support, or CPU).
      resolution: (height, width) the frames are resized to; default the model's initial_resolution (TAPNext:
        its image_size).
      query_chunk_size: queries per cost-volume chunk inside the model (bounds memory).
      query_batch_size: queries per forward pass (bounds output memory; shows progress); a TAPNext takes all
        queries in one pass.
      chunk_frames: run a TAPIR over a longer video in windows of this many frames plus its
        `temporal_reach` on each side (equal outputs, memory bounded by the window; the refinement
        runs again on the overlaps), a TAPNext online this many frames at a time; None or 0: the whole clip in
        one pass.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device | None = None,
        bf16: bool = False,
        resolution: tuple[int, int] | None = None,
        query_chunk_size: int = 64,
        query_batch_size: int = 256,
        chunk_frames: int | None = None,
    ):
        self.device = resolve_device(device)
        if bf16 and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TapforgeError("this GPU does not support bfloat16; fix: drop --bf16")
        self.model = model.to(self.device).eval()
        self.resolution = tuple(int(v) for v in (resolution or model_resolution(model)))
        if len(self.resolution) != 2 or any(v <= 0 or v % 8 for v in self.resolution):
            raise TapforgeError(f"resolution {self.resolution} must be two positive multiples of 8; fix: e.g. 256 256")
        self.bf16 = bf16
        self.query_chunk_size = int(query_chunk_size)
        self.query_batch_size = int(query_batch_size)
        if chunk_frames is not None and (
            isinstance(chunk_frames, bool) or int(chunk_frames) != chunk_frames or chunk_frames < 0
        ):
            raise TapforgeError(
                f"chunk_frames {chunk_frames!r} is not a whole number >= 0; fix: e.g. 256, or 0 for the whole clip"
            )
        self.chunk_frames = int(chunk_frames or 0)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        overrides: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> "Tracker":
        """Load a checkpoint (see ``tapforge.tapir.checkpoint.load_model``) and wrap it."""
        from tapforge.tapir.checkpoint import load_model

        return cls(load_model(path, device="cpu", **(overrides or {})), device=device, **kwargs)

    def _video_tensor(self, frames: np.ndarray) -> torch.Tensor:
        """[1,T,h,w,3] float32 in [-1,1] at the model resolution, resized in chunks of frames."""
        height, width = self.resolution
        chunks = []
        for start in range(0, frames.shape[0], 32):
            chunk = torch.from_numpy(np.ascontiguousarray(frames[start : start + 32])).to(self.device)
            chunk = chunk.float() / 127.5 - 1.0 if frames.dtype == np.uint8 else chunk.float()
            if chunk.shape[1:3] != (height, width):
                downscale = chunk.shape[1] > height or chunk.shape[2] > width
                chunk = F.interpolate(
                    chunk.permute(0, 3, 1, 2),
                    size=(height, width),
                    mode="bilinear",
                    align_corners=False,
                    antialias=downscale,
                ).permute(0, 2, 3, 1)
            chunks.append(chunk)
        return torch.cat(chunks)[None].contiguous()

    @torch.inference_mode()
    def track(self, frames: np.ndarray, queries: np.ndarray, progress: bool = False) -> TrackResult:
        """Track (t, y, x) queries through frames [T,H,W,3] (uint8, or float in [-1,1])."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
            raise TapforgeError(f"frames must be [T,H,W,3] with T > 0, got {frames.shape}; fix: pass RGB video frames")
        if frames.dtype != np.uint8 and not (np.nanmin(frames) >= -1.0 - 1e-3 and np.nanmax(frames) <= 1.0 + 1e-3):
            raise TapforgeError(
                "float frames must lie in [-1, 1]; fix: pass uint8 frames or scale them as x / 127.5 - 1"
            )
        num_frames, height, width = frames.shape[:3]
        queries = check_queries(queries, num_frames, height, width)
        res_h, res_w = self.resolution
        to_model = np.array([1.0, res_h / height, res_w / width])
        model_queries = torch.from_numpy(queries * to_model).float().to(self.device)[None]
        reach = temporal_reach(self.model, self.resolution) if self.chunk_frames else None
        if isinstance(self.model, TAPNext):
            tracks, occlusion = self._track_tapnext(frames, model_queries, progress)
            expected_dist = None  # visible where its visibility logit is positive (checkpoint.visibility_uncertainty)
        elif reach is not None and num_frames > self.chunk_frames + sum(reach):
            tracks, occlusion, expected_dist = self._track_in_windows(frames, model_queries, reach, progress)
        else:
            tracks, occlusion, expected_dist = self._track_whole(frames, model_queries, progress)
        visibility, occluded = postprocess(occlusion, expected_dist)
        scale = torch.tensor([width / res_w, height / res_h], device=self.device)
        return TrackResult(
            tracks=(tracks * scale).cpu().numpy().astype(np.float32),
            occluded=occluded.cpu().numpy(),
            visibility=visibility.cpu().numpy().astype(np.float32),
            queries=queries.astype(np.float32),
        )

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _track_whole(self, frames: np.ndarray, model_queries: torch.Tensor, progress: bool):
        """The whole clip in one forward pass per query batch -> tracks [N,T,2], occlusion and expected_dist [N,T]
        (None for TAP-Net, which has no uncertainty head) at the model resolution."""
        video = self._video_tensor(frames)
        tracks, occlusion, expected_dist = [], [], []
        batches = range(0, model_queries.shape[1], self.query_batch_size)
        for start in tqdm(
            batches, desc="tracking", unit="batch", disable=not progress or len(batches) < 2, leave=False
        ):
            batch = model_queries[:, start : start + self.query_batch_size]
            with self._autocast():
                out = self.model(video, batch, is_training=False, query_chunk_size=self.query_chunk_size)
            tracks.append(out["tracks"][0].float())
            occlusion.append(out["occlusion"][0].float())
            if "expected_dist" in out:
                expected_dist.append(out["expected_dist"][0].float())
        return torch.cat(tracks), torch.cat(occlusion), torch.cat(expected_dist) if expected_dist else None

    def _track_tapnext(self, frames: np.ndarray, model_queries: torch.Tensor, progress: bool):
        """A TAPNext over the whole clip, all queries at once -> tracks [N,T,2] and occlusion [N,T] at the model
        resolution; with ``chunk_frames``, online that many frames at a time, forwards and (for the frames before
        each query's frame) backwards in time."""
        num_frames = frames.shape[0]
        if not self.chunk_frames or num_frames <= self.chunk_frames:
            with self._autocast():
                out = tracking_outputs(self.model, self._video_tensor(frames), model_queries)
            return out["tracks"][0].float(), out["occlusion"][0].float()
        query_frame = torch.round(model_queries[0, :, 0])
        passes = [(np.arange(num_frames), model_queries)]
        if bool((query_frame > 0).any()):
            backward = model_queries.clone()
            backward[..., 0] = num_frames - 1 - query_frame
            passes.append((np.arange(num_frames)[::-1], backward))
        starts = range(0, num_frames, self.chunk_frames)
        results = []
        with tqdm(
            total=len(passes) * len(starts), desc="tracking", unit="chunk", disable=not progress, leave=False
        ) as bar:
            for order, queries in passes:
                state, tracks, occlusion = None, [], []
                for start in starts:
                    chunk = self._video_tensor(frames[order[start : start + self.chunk_frames]])
                    with self._autocast():
                        out, state = self.model.online_step(chunk, state, queries if state is None else None)
                    tracks.append(out["tracks"][0].float())
                    occlusion.append(out["occlusion"][0].float())
                    bar.update()
                results.append((torch.cat(tracks, dim=1), torch.cat(occlusion, dim=1)))
        tracks, occlusion = results[0]
        if len(results) > 1:
            before = (torch.arange(num_frames, device=self.device) < query_frame[:, None])[..., None]
            tracks = torch.where(before, results[1][0].flip(1), tracks)
            occlusion = torch.where(before[..., 0], results[1][1].flip(1), occlusion)
        return tracks, occlusion

    def _query_features(self, frames: np.ndarray, model_queries: torch.Tensor) -> QueryFeatures:
        """The TAPIR query features, encoding only the frames the queries lie on (each query's frame and the next:
        features are sampled trilinearly in time), at most ``chunk_frames`` of them at a time."""
        model, num_frames = self.model, frames.shape[0]
        times = model_queries[0, :, 0].double().cpu().numpy()
        floor = np.floor(times).astype(np.int64)
        floors = np.unique(floor)
        group = max(1, self.chunk_frames // 2)
        parts = []
        for start in range(0, len(floors), group):
            chosen = floors[start : start + group]
            on = np.unique(np.concatenate([chosen, np.minimum(chosen + 1, num_frames - 1)]))
            index = np.flatnonzero(np.isin(floor, chosen))
            local = model_queries[:, index].clone()
            local[0, :, 0] = torch.from_numpy(np.searchsorted(on, floor[index]) + (times[index] - floor[index])).to(
                local
            )
            with self._autocast():
                video = self._video_tensor(frames[on])
                parts.append((index, model.get_query_features(video, False, local, model.get_feature_grids(video))))
        order = torch.from_numpy(np.argsort(np.concatenate([index for index, _ in parts]))).to(self.device)
        first = parts[0][1]

        def join(kind: str, level: int) -> torch.Tensor:
            return torch.cat([getattr(f, kind)[level] for _, f in parts], dim=1)[:, order]

        return QueryFeatures(
            tuple(join("lowres", i) for i in range(len(first.lowres))),
            tuple(join("hires", i) for i in range(len(first.hires))),
            first.resolutions,
        )

    def _track_in_windows(
        self, frames: np.ndarray, model_queries: torch.Tensor, reach: tuple[int, int], progress: bool
    ):
        """`_track_whole` for a TAPIR, ``chunk_frames`` output frames at a time.

        The query features come first (`_query_features`). Then each window of ``chunk_frames`` frames is run with
        ``reach`` frames of context before and after it (their grids kept from the previous window where it covered
        them), and only its own frames' outputs are kept: nothing further away reaches them in the whole-clip run
        either.
        """
        model, num_frames = self.model, frames.shape[0]
        features = self._query_features(frames, model_queries)
        num_queries = model_queries.shape[1]
        tracks = torch.empty((num_queries, num_frames, 2), device=self.device)
        occlusion = torch.empty((num_queries, num_frames), device=self.device)
        expected_dist = torch.empty((num_queries, num_frames), device=self.device)
        before, after = reach
        window = _WindowGrids(model, min(num_frames, self.chunk_frames + before + after))
        starts = range(0, num_frames, self.chunk_frames)
        for start in tqdm(starts, desc="tracking", unit="chunk", disable=not progress, leave=False):
            stop = min(num_frames, start + self.chunk_frames)
            first, last = max(0, start - before), min(num_frames, stop + after)
            with self._autocast():
                grids = window.advance(first, last, lambda a, b: self._video_tensor(frames[a:b]))
            # window-local query frames, rounded first: the model pins each estimate on round(t), and rounding
            # half to even is not unchanged by an odd shift
            shifted = model_queries.clone()
            shifted[..., 0] = torch.round(shifted[..., 0]) - first
            own = slice(start - first, stop - first)
            for part in (slice(i, i + self.query_batch_size) for i in range(0, num_queries, self.query_batch_size)):
                with self._autocast():
                    trajectories = model.estimate_trajectories(
                        self.resolution,
                        False,
                        grids,
                        _query_slice(features, part),
                        shifted[:, part],
                        self.query_chunk_size,
                    )
                    out = model.combine_iterates(trajectories)
                tracks[part, start:stop] = out["tracks"][0, :, own].float()
                occlusion[part, start:stop] = out["occlusion"][0, :, own].float()
                expected_dist[part, start:stop] = out["expected_dist"][0, :, own].float()
        return tracks, occlusion, expected_dist


def track(
    frames: np.ndarray,
    queries: np.ndarray,
    checkpoint: str | os.PathLike | None = None,
    model: torch.nn.Module | None = None,
    **tracker_kwargs: Any,
) -> TrackResult:
    """One-call tracking: ``track(frames, queries, checkpoint="tapir.pt")`` (or ``model=...``; TAPIR, TAP-Net or
    TAPNext).

    ``tracker_kwargs`` go to :class:`Tracker` (device, bf16, resolution, query_chunk_size, ...).
    """
    if (checkpoint is None) == (model is None):
        raise TapforgeError("pass exactly one of checkpoint= or model=; fix: give the checkpoint path or a TAPIR model")
    tracker = (
        Tracker.from_checkpoint(checkpoint, **tracker_kwargs) if model is None else Tracker(model, **tracker_kwargs)
    )
    return tracker.track(frames, queries)
