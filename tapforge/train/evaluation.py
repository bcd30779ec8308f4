"""Validation sets (TAP-Vid pickles, held-out synthetic shards) and DDP-safe metric accumulation.

Every validation sample is one video in one query mode, batched as the official evaluation does
(batch of one): an :class:`~tapforge.train.batches.EvalBatch`.
Videos are dealt out to ranks and loader workers round-robin, so each video is scored exactly
once; per-video metrics are summed per set and the sums reduced over ranks before dividing, which
gives the official benchmark number (the mean over videos) however the videos were split.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from tapforge.base import seeds
from tapforge.synth.schema import SchemaError, decode_clip
from tapforge.tapir import tapvid
from tapforge.train.batches import EvalBatch
from tapforge.train.sampling import balanced_choice, outside_frame
from tapforge.train.shards import CorruptShardHandler, read_samples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TapVidPaths:
    """Where the TAP-Vid pickles are (a file, or a folder of ``*.pkl`` for Kinetics / RoboTAP)."""

    davis: str | None = None
    kinetics: str | None = None
    rgb_stacking: str | None = None
    robotap: str | None = None

    def items(self) -> list[tuple[str, str]]:
        """(name, path) of every configured set that exists; missing ones are skipped with a message."""
        found = []
        for f in fields(self):
            path = getattr(self, f.name)
            if not path:
                continue
            path = os.path.expanduser(str(path))
            if not os.path.exists(path):
                log.warning(
                    "data.tapvid.%s: %s does not exist, so %s validation is skipped "
                    "(fix: download it or set data.tapvid.%s: null)",
                    f.name,
                    path,
                    f.name,
                    f.name,
                )
                continue
            found.append((f.name, path))
        return found


def _mine(index: int, rank: int, world_size: int) -> bool:
    """Round-robin over (rank, worker): True if video ``index`` belongs to this process."""
    info = get_worker_info()
    worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
    return index % (world_size * num_workers) == rank * num_workers + worker


def _as_batch(sample: dict, source: str, mode: str, name: str) -> EvalBatch:
    def tensor(key: str, dtype=None) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(sample[key], dtype=dtype))

    return EvalBatch(
        video=tensor("video"),
        query_points=tensor("query_points", np.float32),
        target_points=tensor("target_points", np.float32),
        occluded=tensor("occluded", bool),
        source=source,
        mode=mode,
        name=name,
    )


def queries_for_mode(occluded: np.ndarray, tracks: np.ndarray, video: np.ndarray, mode: str) -> dict:
    """TAP-Vid query sampling (first / strided) for tracks [N,T,2] (x,y) and occluded [N,T]."""
    if mode == "first":
        return tapvid.sample_queries_first(occluded, tracks, video)
    return tapvid.sample_queries_strided(occluded, tracks, video)


class TapVidEvalSet(IterableDataset):
    """One TAP-Vid source (pickle or folder of pickles), every query mode per video."""

    def __init__(
        self,
        path: str,
        name: str,
        query_modes: Sequence[str],
        resolution: tuple[int, int],
        max_videos: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.path, self.name, self.query_modes = path, name, list(query_modes)
        self.resolution, self.max_videos = tuple(resolution), max_videos
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[EvalBatch]:
        index = 0
        for pickle_path in tapvid.tapvid_pickle_paths(self.path):
            for video_name, example in tapvid.load_tapvid_pickle(pickle_path):
                if self.max_videos is not None and index >= self.max_videos:
                    return
                if _mine(index, self.rank, self.world_size):
                    for mode in self.query_modes:
                        sample = tapvid.convert_example(example, mode, self.resolution, name=video_name)
                        if sample["query_points"].shape[1]:  # strided mode can find no visible point
                            yield _as_batch(sample, self.name, mode, video_name)
                index += 1


def select_eval_tracks(occluded: np.ndarray, object_ids: np.ndarray, max_tracks: int, key: str) -> np.ndarray:
    """A fixed object-balanced subset of the tracks visible somewhere, drawn from the random stream named by the clip
    key (the same subset in every run)."""
    usable = np.flatnonzero(~occluded.all(axis=1))
    if usable.size <= max_tracks:
        return usable
    return np.sort(balanced_choice(usable, object_ids, max_tracks, seeds.rng(0, "val_tracks", key)))


class SyntheticEvalSet(IterableDataset):
    """Held-out synthetic shards scored like TAP-Vid: whole clips, resized, first/strided queries."""

    def __init__(
        self,
        urls: Sequence[str],
        name: str,
        query_modes: Sequence[str],
        resolution: tuple[int, int],
        max_tracks: int = 256,
        max_videos: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        on_corrupt: str = "skip",
    ):
        self.urls, self.name, self.query_modes = list(urls), name, list(query_modes)
        self.resolution, self.max_tracks, self.max_videos = tuple(resolution), max_tracks, max_videos
        self.rank, self.world_size, self.on_corrupt = rank, world_size, on_corrupt

    def __iter__(self) -> Iterator[EvalBatch]:
        handler = CorruptShardHandler(self.on_corrupt)
        for index, sample in enumerate(read_samples(self.urls, handler)):
            if self.max_videos is not None and index >= self.max_videos:
                return
            if not _mine(index, self.rank, self.world_size):
                continue
            try:
                clip = decode_clip(sample)
            except SchemaError as err:
                handler.sample_error(sample.get("__key__", "?"), sample.get("__url__", "?"), err)
                continue
            rows = select_eval_tracks(clip.occluded, clip.object_ids, self.max_tracks, clip.key)
            if rows.size == 0:
                log.warning("held-out clip %s has no visible track; skipped", clip.key)
                continue
            height, width = clip.video.shape[1:3]
            video = clip.video
            tracks = clip.tracks[rows]
            if (height, width) != self.resolution:
                video = tapvid.resize_video(video, self.resolution)
                tracks = tracks * np.array([self.resolution[1] / width, self.resolution[0] / height], np.float32)
            occluded = clip.occluded[rows] | outside_frame(tracks, *self.resolution)
            for mode in self.query_modes:
                if mode == "first" or np.any(
                    ~occluded[:, :: tapvid.QUERY_STRIDE]
                ):  # strided queries need a visible point
                    sample_out = queries_for_mode(occluded, tracks, video, mode)
                    yield _as_batch(sample_out, self.name, mode, clip.key)


LOGGED_KEYS = tapvid.METRIC_KEYS + ("AJ_RD",)
"""What validation logs per set: the TAP-Vid metrics and TAPNext++'s re-detection AJ (`tapvid.compute_all_metrics`)."""


class MetricAccumulator:
    """Sums of per-video metrics (`LOGGED_KEYS`) per set, the sets named as their videos come in; :meth:`reduce` gives
    means over all ranks' videos (a metric NaN or absent for a video, e.g. AJ_RD where no point re-appears, is left
    out of its mean)."""

    def __init__(self) -> None:
        self.rows: dict[str, np.ndarray] = {}  # set -> metric sums, finite-value counts, videos

    def add(self, set_name: str, metrics: dict) -> None:
        """Add one video's metrics (arrays of shape [1] as compute_tapvid_metrics returns)."""
        num_keys = len(LOGGED_KEYS)
        values = np.array([float(np.ravel(metrics[k])[0]) if k in metrics else np.nan for k in LOGGED_KEYS])
        finite = np.isfinite(values)  # a video without evaluable points has NaN metrics
        row = self.rows.setdefault(set_name, np.zeros(2 * num_keys + 1))
        row[:num_keys] += np.where(finite, values, 0.0)
        row[num_keys:-1] += finite
        row[-1] += 1

    def packed(self, set_names: Sequence[str]) -> torch.Tensor:
        """The sums of ``set_names`` as one float64 tensor (zeros for a set this process saw no video of)."""
        empty = np.zeros(2 * len(LOGGED_KEYS) + 1)
        return torch.from_numpy(np.stack([self.rows.get(name, empty) for name in set_names]))

    def reduce(
        self,
        sum_over_ranks: Callable[[torch.Tensor], torch.Tensor],
        gather_names: Callable[[list[str]], list[str]] = list,
    ) -> dict[str, float]:
        """{"<set>/<metric>": mean over every video of every rank, "<set>/num_videos": count}.

        ``gather_names`` turns this rank's set names into every rank's (a rank may have seen no video of a
        set), ``sum_over_ranks`` sums a tensor over the ranks; both are collective calls under DDP.
        """
        names = sorted(set(gather_names(sorted(self.rows))))
        if not names:
            return {}
        packed = sum_over_ranks(self.packed(names)).cpu().numpy()
        num_keys = len(LOGGED_KEYS)
        sums, counts, videos = packed[:, :num_keys], packed[:, num_keys:-1], packed[:, -1]
        out = {}
        for row, name in enumerate(names):
            if videos[row] == 0:
                continue
            out[f"{name}/num_videos"] = float(videos[row])
            for col, key in enumerate(LOGGED_KEYS):
                if counts[row, col]:
                    out[f"{name}/{key}"] = float(sums[row, col] / counts[row, col])
        return out
