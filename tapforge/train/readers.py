"""What every training stream does per loader reader (a DDP rank's DataLoader worker), in one place.

Each reader takes its own share of the sources (every n-th of the list, split by rank, then by worker; all of them
when there are fewer sources than readers), draws from that share with replacement (so the stream never runs dry),
draws its randomness from its own named streams of the run's seed (``tapforge.base.seeds``), and yields exactly
its part of the rank's ``epoch_length`` batches, so every rank sees the same number of batches per epoch.

A stream is a `ReaderStream` that says its webdataset stages for one `Reader` (``stages``); the pipeline is built in
the reader, which knows its worker, and kept across epochs, so each epoch continues the reader's draws. The rank
comes from the trainer and the split is made here rather than by ``split_by_node`` / ``split_by_worker``, which
split one pass over the list: each reader resamples its own part without end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from tapforge.base import seeds
from tapforge.train.batches import ReaderCounts
from tapforge.train.shards import split_urls


@dataclass(frozen=True)
class Reader:
    """Loader worker ``worker`` of ``num_workers`` on DDP rank ``rank`` of ``world_size``, reading ``stream``."""

    stream: str
    seed: int
    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def share(self, items: Sequence[str]) -> list[str]:
        """This reader's share of ``items``: every n-th, split by rank then worker; all of them if there are too few."""
        return split_urls(items, self.rank * self.num_workers + self.worker, self.world_size * self.num_workers)

    def batches(self, epoch_length: int) -> int:
        """This reader's part of the rank's ``epoch_length`` batches (the rank's workers give exactly that many)."""
        return epoch_length // self.num_workers + (1 if self.worker < epoch_length % self.num_workers else 0)

    def rng(self, *names: str | int) -> np.random.Generator:
        """The reader's numpy generator for ``names``: ``seeds.rng(seed, stream, rank, worker, *names)``."""
        return seeds.rng(self.seed, self.stream, self.rank, self.worker, *names)

    def seed_int(self, *names: str | int) -> int:
        """The reader's integer seed for ``names`` (for libraries that take one)."""
        return seeds.seed_int(self.seed, self.stream, self.rank, self.worker, *names)

    def counts(self) -> ReaderCounts:
        """Fresh running totals of what this reader could not use."""
        return ReaderCounts(worker=self.worker, stream=self.stream)

    def resampled(self, urls: Sequence[str]) -> wds.ResampledShards:
        """webdataset's endless draw with replacement from ``urls`` (this reader's share), seeded from the reader's
        ``"shards"`` stream (no per-worker seed on top: the seed is already this reader's)."""
        return wds.ResampledShards(list(urls), seed=self.seed_int("shards"), worker_seed=lambda: 0, deterministic=True)


class ReaderStream(IterableDataset):
    """An endless stream of batches, one epoch = exactly ``epoch_length`` batches per rank; subclasses give
    ``stream`` (the name of its readers' random streams and counts) and ``stages``."""

    stream = "synthetic"

    def __init__(self, epoch_length: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.epoch_length, self.seed, self.rank, self.world_size = epoch_length, seed, rank, world_size
        self._pipeline: wds.DataPipeline | None = None

    def __len__(self) -> int:
        return self.epoch_length

    def stages(self, reader: Reader) -> list:
        """The webdataset stages of ``reader``'s pipeline, the first a source, the last yielding batches."""
        raise NotImplementedError

    def __iter__(self) -> Iterator:
        if self._pipeline is None:  # built in the reader and kept across epochs (see the module docstring)
            info = get_worker_info()
            worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
            reader = Reader(self.stream, self.seed, self.rank, self.world_size, worker, num_workers)
            self._pipeline = wds.DataPipeline(*self.stages(reader)).with_epoch(reader.batches(self.epoch_length))
        return iter(self._pipeline)
