"""Training data: WebDataset shards -> random sub-clips with tapnet-style queries -> batches.

Each loader reader (a DDP rank's worker) takes its own share of the shards, draws from that share with replacement
(so the stream never runs dry) and yields exactly its part of ``epoch_length`` batches, so every rank sees the same
number of batches per epoch whatever the shard sizes (``tapforge.train.readers``). Clips are decoded on the CPU (only the
frames of the sub-clip), the batch is shipped as uint8 in pinned memory, and augmentation runs on the device
afterwards (``on_after_batch_transfer``).
"""

from __future__ import annotations

import json
import logging
import os
import random
from typing import Iterable, Iterator

import numpy as np
import torch
import webdataset as wds
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, IterableDataset

from tapforge.base import seeds
from tapforge.base.errors import TapforgeError
from tapforge.synth.schema import SchemaError
from tapforge.train.augment import Sim2RealAugment
from tapforge.train.augment_config import AugmentConfig
from tapforge.train.batches import ClipBatch, EvalBatch, ReaderCounts, RealClipBatch, TrainBatch
from tapforge.train.dataset import ShardDataset, UnusableClip
from tapforge.train.evaluation import SyntheticEvalSet, TapVidEvalSet, TapVidPaths
from tapforge.train.readers import Reader, ReaderStream
from tapforge.train.real_videos import RealClipStream
from tapforge.train.shards import ON_CORRUPT, CorruptShardHandler, expand_shards, is_remote, read_samples
from tapforge.train.video_sources import expand_video_sources

log = logging.getLogger(__name__)


def collate(examples: list[dict], counts: ReaderCounts | None = None) -> ClipBatch:
    """Stack examples into a batch (frames must share one size); ``counts`` is copied into it."""
    sizes = {e["video"].shape[1:3] for e in examples}
    if len(sizes) > 1:
        raise TapforgeError(
            f"clips in the shards have different frame sizes {sorted(sizes)}; "
            "fix: set data.frame_size: [H, W] so that every clip is resized to one size"
        )
    stacked = {k: torch.from_numpy(np.stack([e[k] for e in examples])) for k in examples[0] if k != "key"}
    snapshot = ReaderCounts(**vars(counts)) if counts is not None else ReaderCounts()
    return ClipBatch(**stacked, keys=[e["key"] for e in examples], counts=snapshot)


class TrainClipStream(ReaderStream):
    """Endless, resampled stream of training batches of a `ShardDataset`; one epoch = exactly ``epoch_length``
    batches.

    The examples are the dataset's own (`ShardDataset.example`: sub-clip, queries, optional resize), so
    ``tapforge train`` and a plain loop over the dataset make them the same way; the augmentation runs later, on
    the device. Per reader (``tapforge.train.readers``): webdataset's stages (resampled shards, shuffle, batched)
    around two of its own: reading that counts damaged shards once each however often they are drawn, and example
    making that counts unusable clips and stops with a clear error when nothing in a row can be used.
    """

    stream = "synthetic"

    def __init__(
        self,
        dataset: ShardDataset,
        batch_size: int,
        epoch_length: int,
        shuffle_buffer: int = 64,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_consecutive_skips: int = 200,
    ):
        super().__init__(epoch_length, seed, rank, world_size)
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.max_consecutive_skips = max_consecutive_skips

    def _examples(
        self, samples: Iterable[dict], handler: CorruptShardHandler, counts: ReaderCounts, rng: np.random.Generator
    ) -> Iterator[dict]:
        """Training examples of raw samples; damaged and unusable ones are counted in ``counts`` and skipped."""
        skips = 0
        for sample in samples:
            try:
                example = self.dataset.example(sample, rng)
            except (SchemaError, UnusableClip) as err:
                if isinstance(err, SchemaError):
                    handler.sample_error(sample.get("__key__", "?"), sample.get("__url__", "?"), err)
                    reason = f"damaged sample ({err})"
                else:
                    counts.skipped_clips += 1
                    reason = str(err)
                counts.bad_shards, counts.bad_samples = handler.bad_shards, handler.bad_samples
                skips += 1
                if skips > self.max_consecutive_skips:
                    raise TapforgeError(
                        f"{skips} clips in a row could not be used (last: {reason}); fix: check "
                        "data.train_shards and data.num_frames / data.frame_strides against the clips"
                    ) from None
                continue
            counts.bad_shards, counts.bad_samples = handler.bad_shards, handler.bad_samples
            skips = 0
            yield example

    def stages(self, reader: Reader) -> list:
        """This reader's shards, resampled -> samples -> examples -> shuffled -> batches."""
        urls = reader.share(self.dataset.urls)
        handler = CorruptShardHandler(
            self.dataset.on_corrupt, max_consecutive=self.max_consecutive_skips + 3 * len(urls)
        )
        counts = reader.counts()
        rng = reader.rng("clips")
        return [
            reader.resampled(urls),
            lambda shards: read_samples((shard["url"] for shard in shards), handler),
            lambda samples: self._examples(samples, handler, counts, rng),
            wds.shuffle(
                self.shuffle_buffer, initial=self.shuffle_buffer, rng=random.Random(reader.seed_int("shuffle"))
            ),
            wds.batched(self.batch_size, collation_fn=lambda examples: collate(examples, counts), partial=False),
        ]


class DataStats:
    """Running totals of skipped shards / samples / clips, summed over the loader workers."""

    def __init__(self) -> None:
        self.per_worker: dict[tuple[str, int], ReaderCounts] = {}

    def update(self, counts: ReaderCounts) -> None:
        self.per_worker[(counts.stream, counts.worker)] = counts

    def totals(self) -> dict[str, int]:
        summed = dict.fromkeys(ReaderCounts().totals(), 0)
        for counts in self.per_worker.values():
            for name, value in counts.totals().items():
                summed[name] += value
        return summed


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise TapforgeError(message)


def manifest_clip_frames(urls: Iterable[str]) -> dict[str, int]:
    """The clip length of each local folder among ``urls``' folders whose ``manifest.json`` (`tapforge synth
    render`'s) states one (its config's ``scene.num_frames``), by folder; folders without one, remote URLs and
    unreadable manifests are left out (their clips' lengths are known only when read)."""
    lengths = {}
    for folder in sorted({os.path.dirname(url.removeprefix("file://")) or "." for url in urls if not is_remote(url)}):
        try:
            with open(os.path.join(folder, "manifest.json")) as f:
                frames = json.load(f).get("config", {}).get("scene", {}).get("num_frames")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(frames, int) and not isinstance(frames, bool) and frames > 0:
            lengths[folder] = frames
    return lengths


class TAPIRDataModule(LightningDataModule):
    """Shards for training, TAP-Vid pickles and held-out shards for validation.

    Args:
      train_shards: shard folder(s), files, globs, brace patterns or URLs for training.
      val_shards: held-out synthetic shards evaluated like TAP-Vid (optional).
      tapvid: paths of TAP-Vid DAVIS / Kinetics / RGB-Stacking / RoboTAP pickles (absent ones are
        skipped with a message).
      query_modes: TAP-Vid query modes to evaluate ("first", "strided").
      batch_size: clips per device and step.
      num_frames: frames per training clip; frame_strides: strides a sub-clip may use.
      num_queries: query points per training clip.
      background_share: share of each clip's queries on the static background (floor, dome; 0.5); null
        = Kubric's recipe, an even share per object, the background counting as one object.
      resolution: (height, width) the model sees, after augmentation, and of validation videos.
      frame_size: resize decoded shard frames on the CPU to this (height, width) first (needed
        only when shards mix frame sizes or are much larger than ``resolution``).
      epoch_length: training batches per rank per epoch.
      shuffle_buffer: clips held per worker for shuffling.
      num_workers / val_num_workers: loader worker processes per rank.
      val_max_videos: evaluate at most this many videos per validation source (None: all).
      val_max_tracks: tracks evaluated per held-out synthetic clip.
      on_corrupt: "skip" (log, count, carry on) or "fail" for damaged shards and samples.
      seed: base seed for sub-clip/query sampling and augmentation (``tapforge.base.seeds`` streams named by
        purpose, rank, worker and the step the loaders start at).
      augment: the sim2real augmentation settings.
      real_videos: unlabeled real videos for self-supervised fine-tuning (``tapforge.train.video_sources``: folders, globs,
        files, frame folders, shards of ``tapforge pack-videos``); each step then also gets a batch of
        ``real_batch_size`` real clips (default ``batch_size``), cut at ``num_frames`` and ``resolution``.
        ``train_shards`` may then be left out (real clips only).
    """

    def __init__(
        self,
        train_shards: list[str] | str | None = None,
        val_shards: list[str] | str | None = None,
        tapvid: TapVidPaths = TapVidPaths(),
        query_modes: tuple[str, ...] = ("first", "strided"),
        batch_size: int = 8,
        num_frames: int = 24,
        frame_strides: tuple[int, ...] = (1,),
        num_queries: int = 256,
        background_share: float | None = 0.5,
        resolution: tuple[int, int] = (256, 256),
        frame_size: tuple[int, int] | None = None,
        epoch_length: int = 1000,
        shuffle_buffer: int = 64,
        num_workers: int = 8,
        val_num_workers: int = 1,
        val_max_videos: int | None = None,
        val_max_tracks: int = 256,
        on_corrupt: str = "skip",
        seed: int = 0,
        augment: AugmentConfig = AugmentConfig(),
        real_videos: list[str] | str | None = None,
        real_batch_size: int | None = None,
    ):
        super().__init__()
        for key, value in [
            ("batch_size", batch_size),
            ("num_frames", num_frames),
            ("num_queries", num_queries),
            ("epoch_length", epoch_length),
            ("val_max_tracks", val_max_tracks),
        ]:
            _check(int(value) > 0, f"data.{key} is {value}; fix: set it to a positive integer")
        _check(num_frames >= 2, f"data.num_frames is {num_frames}; fix: use at least 2 frames")
        _check(shuffle_buffer >= 0, f"data.shuffle_buffer is {shuffle_buffer}; fix: use 0 or more")
        _check(num_workers >= 0 and val_num_workers >= 0, "data.num_workers must be >= 0; fix: use 0 or more")
        _check(
            len(frame_strides) > 0 and all(int(s) >= 1 for s in frame_strides),
            f"data.frame_strides is {frame_strides}; fix: give a list of strides >= 1, e.g. [1, 2]",
        )
        for key, size in [("resolution", resolution), ("frame_size", frame_size)]:
            _check(
                size is None or (len(size) == 2 and min(size) >= 8),
                f"data.{key} is {size}; fix: give [height, width] of at least 8 pixels each",
            )
        _check(
            background_share is None or 0 <= background_share <= 1,
            f"data.background_share is {background_share}; fix: use a share in [0, 1], or null for an even share per object",
        )
        _check(on_corrupt in ON_CORRUPT, f"data.on_corrupt is {on_corrupt!r}; fix: use one of {', '.join(ON_CORRUPT)}")
        bad_modes = [m for m in query_modes if m not in ("first", "strided")]
        _check(not bad_modes, f"data.query_modes has {bad_modes}; fix: use 'first' and/or 'strided'")
        _check(
            real_batch_size is None or real_batch_size > 0,
            f"data.real_batch_size is {real_batch_size}; fix: use a positive count, or null for data.batch_size",
        )
        _check(
            val_max_videos is None or val_max_videos > 0,
            f"data.val_max_videos is {val_max_videos}; fix: use a positive integer or null for all",
        )
        self.train_shards = train_shards
        self.val_shards = val_shards
        self.tapvid = tapvid
        self.query_modes = list(query_modes)
        self.batch_size = int(batch_size)
        self.num_frames = int(num_frames)
        self.frame_strides = [int(s) for s in frame_strides]
        self.num_queries = int(num_queries)
        self.background_share = None if background_share is None else float(background_share)
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.epoch_length = int(epoch_length)
        self.shuffle_buffer = int(shuffle_buffer)
        self.num_workers = int(num_workers)
        self.val_num_workers = int(val_num_workers)
        self.val_max_videos = val_max_videos
        self.val_max_tracks = int(val_max_tracks)
        self.on_corrupt = on_corrupt
        self.seed = int(seed)
        self.augment = Sim2RealAugment(augment, self.resolution)
        self.stats = DataStats()
        self._generator: torch.Generator | None = None
        self.val_sets: list = []
        self.real_videos = real_videos
        self.real_batch_size = int(real_batch_size or batch_size)
        self.train_urls: list[str] = []
        self.real_sources: tuple[list[str], list[str]] = ([], [])

    # -- datasets -----------------------------------------------------------------------------

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def setup(self, stage: str) -> None:
        rank, world = self._rank()
        self.val_sets = []
        if self.val_shards:
            urls = expand_shards(self.val_shards, "data.val_shards")
            self.val_sets.append(
                SyntheticEvalSet(
                    urls,
                    "synthetic",
                    self.query_modes,
                    self.resolution,
                    self.val_max_tracks,
                    self.val_max_videos,
                    rank,
                    world,
                    self.on_corrupt,
                )
            )
        for name, path in self.tapvid.items():
            self.val_sets.append(
                TapVidEvalSet(path, name, self.query_modes, self.resolution, self.val_max_videos, rank, world)
            )
        if stage == "fit":
            if not self.train_shards and not self.real_videos:
                raise TapforgeError(
                    "data.train_shards is not set; fix: pass --data.train_shards DIR (or a glob/URL), "
                    "and/or --data.real_videos DIR for self-supervised fine-tuning"
                )
            if self.real_videos:
                self.real_sources = expand_video_sources(self.real_videos, "data.real_videos")
            if not self.train_shards:
                return
            self.train_urls = expand_shards(self.train_shards, "data.train_shards")
            self._check_window_fits(self.train_urls)
            readers = world * max(1, self.num_workers)
            if len(self.train_urls) < readers and rank == 0:
                log.warning(
                    "%d training shards for %d readers (ranks x workers): every reader draws from all shards, so ranks "
                    "may see the same clips at the same time; write at least %d shards",
                    len(self.train_urls),
                    readers,
                    readers,
                )
        elif not self.val_sets:
            raise TapforgeError(
                f"nothing to {getattr(stage, 'value', stage)}: no held-out shards and no TAP-Vid pickle found; "
                "fix: set data.val_shards and/or data.tapvid.davis (kinetics, rgb_stacking, robotap)"
            )

    def _check_window_fits(self, urls: list[str]) -> None:
        """Refuse, before training, a training window (``num_frames`` at the smallest stride) longer than the clips
        of a dataset folder whose manifest states their length; other shards are checked as they are read."""
        stride = min(self.frame_strides)
        span = (self.num_frames - 1) * stride + 1
        for folder, frames in manifest_clip_frames(urls).items():
            _check(
                frames >= span,
                f"data.train_shards: the clips in {folder} have {frames} frames (its manifest.json), fewer than a "
                f"training window of data.num_frames={self.num_frames} at stride {stride} ({span} frames); fix: "
                f"lower data.num_frames to at most {(frames - 1) // stride + 1}"
                + (f" or data.frame_strides (at stride 1: {frames})" if stride > 1 else "")
                + ", or train on longer clips",
            )

    def _loader(self, stream: IterableDataset) -> DataLoader:
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        """Synthetic batches; with ``real_videos``, a dict of a ``synthetic`` and a ``real`` batch each step."""
        rank, world = self._rank()
        step = self.trainer.global_step if self.trainer is not None else 0
        seed = seeds.seed_int(self.seed, "loaders", step)  # a resumed run does not replay the clips of its start
        loaders = {}
        if self.train_urls:
            loaders["synthetic"] = self._loader(
                TrainClipStream(
                    ShardDataset(
                        self.train_urls,
                        self.resolution,
                        self.num_frames,
                        self.frame_strides,
                        self.num_queries,
                        background_share=self.background_share,
                        on_corrupt=self.on_corrupt,
                        frame_size=self.frame_size,
                    ),
                    self.batch_size,
                    self.epoch_length,
                    self.shuffle_buffer,
                    seed=seed,
                    rank=rank,
                    world_size=world,
                )
            )
        if self.real_videos:
            videos, shards = self.real_sources
            loaders["real"] = self._loader(
                RealClipStream(
                    videos,
                    shards,
                    self.real_batch_size,
                    self.epoch_length,
                    self.num_frames,
                    self.frame_strides,
                    self.resolution,
                    self.on_corrupt,
                    seed=seed,
                    rank=rank,
                    world_size=world,
                )
            )
        if list(loaders) == ["synthetic"]:
            return loaders["synthetic"]
        return CombinedLoader(loaders, mode="min_size")  # both streams give exactly epoch_length batches

    def _eval_loaders(self) -> list[DataLoader]:
        return [
            DataLoader(
                dataset,
                batch_size=None,
                num_workers=self.val_num_workers,
                pin_memory=torch.cuda.is_available(),
            )
            for dataset in self.val_sets
        ]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders()

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders()

    # -- device side --------------------------------------------------------------------------

    def on_before_batch_transfer(self, batch: ClipBatch | RealClipBatch | EvalBatch | dict, dataloader_idx: int):
        for part in batch.values() if isinstance(batch, dict) else [batch]:
            if isinstance(part, (ClipBatch, RealClipBatch)):
                self.stats.update(part.counts)
        return batch

    def on_after_batch_transfer(
        self, batch: ClipBatch | RealClipBatch | EvalBatch | dict, dataloader_idx: int
    ) -> TrainBatch | RealClipBatch | EvalBatch | dict:
        """Evaluation videos to [-1, 1]; synthetic clips augmented into a TrainBatch; real clips stay as they are
        (the module's teacher labels them before they are transformed for the student)."""
        if isinstance(batch, dict):
            return {name: self.on_after_batch_transfer(part, dataloader_idx) for name, part in batch.items()}
        if isinstance(batch, RealClipBatch):
            return batch
        if isinstance(batch, EvalBatch):
            if batch.video.dtype == torch.uint8:
                batch.video = batch.video.float() / 127.5 - 1.0
            return batch
        device = batch.video.device
        if self._generator is None or self._generator.device != device:
            rank, _ = self._rank()
            step = self.trainer.global_step if self.trainer is not None else 0
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(seeds.seed_int(self.seed, "augment", rank, step))
        return self.augment(batch, self._generator)
