"""The batches that flow from the data module to the train module, one type per stage.

A training batch leaves the loader as a :class:`ClipBatch` (uint8 frames, pinned on the CPU), is
augmented on its device into a :class:`TrainBatch`, and validation / test clips come as an
:class:`EvalBatch` (batch of one, as the official TAP-Vid evaluation scores them). Lightning moves
dataclasses to the device field by field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


def _pinned(batch):
    """A copy of a batch dataclass with its tensors in pinned memory (DataLoader's ``pin_memory`` calls this)."""
    return dataclasses.replace(
        batch,
        **{
            f.name: getattr(batch, f.name).pin_memory()
            for f in dataclasses.fields(batch)
            if isinstance(getattr(batch, f.name), torch.Tensor)
        },
    )


@dataclass
class ReaderCounts:
    """One loader reader's running totals of what it could not use (logged as ``data/*``)."""

    worker: int = 0
    stream: str = "synthetic"  # or "real" (tapforge.train.real_videos)
    bad_shards: int = 0
    bad_samples: int = 0
    skipped_clips: int = 0
    bad_videos: int = 0
    short_videos: int = 0

    def totals(self) -> dict[str, int]:
        """The counts by name, without the worker and stream."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("worker", "stream")}


@dataclass
class ClipBatch:
    """Training clips as the loader ships them, before augmentation.

    video uint8 [B,T,H,W,3]; tracks float32 [B,Q,T,2] (x, y) pixels; occluded bool [B,Q,T]; query_frame int64
    [B,Q] (a frame where the query's track is visible); object_ids int64 [B,Q]; keys: the clips' shard keys;
    counts: the reader's totals when the batch was made.
    """

    video: torch.Tensor
    tracks: torch.Tensor
    occluded: torch.Tensor
    query_frame: torch.Tensor
    object_ids: torch.Tensor
    keys: list[str]
    counts: ReaderCounts = dataclasses.field(default_factory=ReaderCounts)

    pin_memory = _pinned


@dataclass
class RealClipBatch:
    """Unlabeled real clips as the loader ships them (``tapforge.train.real_videos``): video uint8 [B,T,H,W,3] at the
    training resolution; keys: ``source@first_frame`` or the packed clip's key; counts as in :class:`ClipBatch`."""

    video: torch.Tensor
    keys: list[str]
    counts: ReaderCounts = dataclasses.field(default_factory=ReaderCounts)

    pin_memory = _pinned


@dataclass
class TrainBatch:
    """A model-ready training batch on the device (see ``tapforge.train.augment.Sim2RealAugment``).

    video float [B,T,h,w,3] in [-1, 1]; tracks [B,Q,T,2], occluded [B,Q,T] and query_frame [B,Q] in that frame;
    query_points [B,Q,3] (t, y, x); source_index [B,Q] (the input row of each output row); no_visible_track [B]
    (clips that augmentation left without a visible point); object_ids and keys as in :class:`ClipBatch`.
    """

    video: torch.Tensor
    tracks: torch.Tensor
    occluded: torch.Tensor
    query_frame: torch.Tensor
    query_points: torch.Tensor
    source_index: torch.Tensor
    no_visible_track: torch.Tensor
    object_ids: torch.Tensor
    keys: list[str]


@dataclass
class EvalBatch:
    """One video in one query mode: video [1,T,H,W,3] (uint8 from the loader, float in [-1, 1] on the device),
    query_points [1,Q,3] (t, y, x), target_points [1,Q,T,2] (x, y), occluded [1,Q,T]; ``source`` is where it
    comes from (``davis``, ``synthetic``), ``set_name`` is ``<source>_<mode>``, ``name`` the video's name."""

    video: torch.Tensor
    query_points: torch.Tensor
    target_points: torch.Tensor
    occluded: torch.Tensor
    source: str
    mode: str
    name: str

    pin_memory = _pinned

    @property
    def set_name(self) -> str:
        """The name its metrics are logged under, e.g. ``davis_first``."""
        return f"{self.source}_{self.mode}"
