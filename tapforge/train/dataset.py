"""A plain ``torch.utils.data`` dataset over tapforge shards: no Lightning, for anyone's training loop.

`ShardDataset` yields one model-ready example per clip, made the way ``tapforge train`` makes them: a random
sub-clip (`make_training_example`, which the Lightning stream in ``tapforge.train.data`` calls too), query points
where the track is visible, resizing, and (optionally) the sim2real augmentation (`Sim2RealAugment`, which the
Lightning module runs on the device). Layout of each example (a dict of tensors; a ``DataLoader`` stacks a batch
dimension in front):

- ``video`` float32 [T,H,W,3] in [-1, 1], at ``resolution`` (H, W);
- ``tracks`` float32 [Q,T,2] (x, y) pixels of that resolution, (0, 0) the top-left corner of the top-left pixel;
- ``occluded`` bool [Q,T] (True: hidden or outside the frame); ``query_frame`` int64 [Q] (a frame where the point
  is visible); ``query_points`` float32 [Q,3] (t, y, x) of the query; ``object_ids`` int64 [Q] (0: background).

Each loader worker reads its share of the shards once per pass (every ``num_workers``-th shard), in order.
``tapforge train`` makes its examples with the same `ShardDataset.example` and wraps the dataset in what a cluster
needs on top (``tapforge.train.data.TrainClipStream``: resampled shards, fixed epoch lengths, DDP shares, shuffling,
the augmentation on the device).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from tapforge.base import seeds
from tapforge.base.errors import TapforgeError
from tapforge.base.video import resize_frames
from tapforge.synth.schema import SchemaError, decode_clip, decode_frames
from tapforge.train.augment import Sim2RealAugment
from tapforge.train.augment_config import AugmentConfig
from tapforge.train.batches import ClipBatch
from tapforge.train.sampling import outside_frame, sample_queries, subclip_indices
from tapforge.train.shards import CorruptShardHandler, expand_shards, read_samples, split_urls


class UnusableClip(Exception):
    """A well-formed clip that cannot give a training example (too short, nothing visible); says why."""


def resize_clip(video: np.ndarray, tracks: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize frames [T,H,W,3] to ``size`` (height, width) and scale (x, y) tracks to match."""
    height, width = video.shape[1:3]
    new_h, new_w = size
    video = resize_frames(video, (new_h, new_w))
    return video, tracks * np.array([new_w / width, new_h / height], np.float32)


def make_training_example(
    sample: dict,
    num_frames: int,
    frame_strides: Sequence[int],
    num_queries: int,
    rng: np.random.Generator,
    frame_size: tuple[int, int] | None = None,
    background_share: float | None = None,
) -> dict:
    """Raw shard sample -> a training example.

    The example holds video uint8 [T,H,W,3], tracks float32 [Q,T,2], occluded bool [Q,T],
    query_frame int64 [Q] (a frame where the query's track is visible), object_ids [Q] and key;
    ``background_share`` as in ``tapforge.train.sampling.sample_queries``.
    Raises SchemaError for a sample that does not follow the shard schema, UnusableClip for a clip that
    cannot give an example.
    """
    clip = decode_clip(sample, with_video=False)
    frames = subclip_indices(clip.num_frames, num_frames, frame_strides, rng)
    if frames is None:
        raise UnusableClip(f"clip {clip.key} has {clip.num_frames} frames, fewer than data.num_frames={num_frames}")
    video = decode_frames(sample, frames)
    tracks = clip.tracks[:, frames]
    if frame_size is not None and tuple(frame_size) != video.shape[1:3]:
        video, tracks = resize_clip(video, tracks, frame_size)
    occluded = clip.occluded[:, frames] | outside_frame(tracks, *video.shape[1:3])
    chosen = sample_queries(occluded, clip.object_ids, num_queries, rng, background_share)
    if chosen is None:
        raise UnusableClip(f"clip {clip.key} has no track visible in the sampled frames")
    rows, query_frame = chosen
    return {
        "video": video,
        "tracks": tracks[rows].astype(np.float32),
        "occluded": occluded[rows],
        "query_frame": query_frame,
        "object_ids": clip.object_ids[rows].astype(np.int64),
        "key": clip.key,
    }


class ShardDataset(IterableDataset):
    """Training examples from shards (a folder, file, glob, brace pattern or URL, or a list of them); see the
    module docstring for the layout. ``augment`` None: no augmentation (only the resize to ``resolution``);
    ``on_corrupt`` ``fail`` or ``skip`` (damaged shards and samples); ``frame_size`` (height, width): resize the
    decoded frames to it before the augmentation (for shards that mix frame sizes). Clips too short for
    ``num_frames`` or without a visible track are skipped. Call `set_epoch` between passes for new draws."""

    def __init__(
        self,
        shards: str | Sequence[str],
        resolution: tuple[int, int] = (256, 256),
        num_frames: int = 24,
        frame_strides: Sequence[int] = (1,),
        num_queries: int = 256,
        augment: AugmentConfig | None = None,
        background_share: float | None = None,
        seed: int = 0,
        on_corrupt: str = "fail",
        frame_size: tuple[int, int] | None = None,
    ):
        self.urls = expand_shards(shards, key="shards")
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.num_frames, self.frame_strides, self.num_queries = num_frames, list(frame_strides), num_queries
        self.augment = Sim2RealAugment(augment or AugmentConfig(enabled=False), self.resolution)
        self.background_share, self.seed, self.on_corrupt, self.epoch = background_share, seed, on_corrupt, 0
        CorruptShardHandler(on_corrupt)  # checks the value now rather than in a worker

    def set_epoch(self, epoch: int) -> None:
        """Draw other sub-clips, queries and augmentations on the next pass."""
        self.epoch = int(epoch)

    def example(self, sample: dict, rng: np.random.Generator) -> dict:
        """The unaugmented example (uint8 video, see `make_training_example`) of one raw shard sample.

        Raises SchemaError for a damaged sample, UnusableClip for a clip that cannot give an example."""
        return make_training_example(
            sample,
            self.num_frames,
            self.frame_strides,
            self.num_queries,
            rng,
            self.frame_size,
            self.background_share,
        )

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = seeds.rng(self.seed, "shard_dataset", self.epoch, worker)
        gen = torch.Generator().manual_seed(seeds.seed_int(self.seed, "shard_dataset_augment", self.epoch, worker))
        handler = CorruptShardHandler(self.on_corrupt)
        for sample in read_samples(split_urls(self.urls, worker, workers), handler):
            try:
                example = self.example(sample, rng)
            except UnusableClip:
                continue
            except SchemaError as err:
                if self.on_corrupt == "fail":
                    raise TapforgeError(f"{sample.get('__url__', '?')}: damaged sample ({err})") from err
                continue
            yield self._augmented(example, gen)

    def _augmented(self, example: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
        arrays = ("video", "tracks", "occluded", "query_frame", "object_ids")
        batch = ClipBatch(**{k: torch.from_numpy(np.asarray(example[k]))[None] for k in arrays}, keys=[example["key"]])
        out = self.augment(batch, gen)
        fields = ("video", "tracks", "occluded", "query_frame", "query_points", "object_ids")
        return {name: getattr(out, name)[0] for name in fields}
