"""The stream of unlabeled real clips for self-supervised fine-tuning (``tapforge.train.bootstrap``).

Its sources are those ``data.real_videos`` names (``tapforge.train.video_sources``). Each loader reader (a DDP
rank's worker) takes its own share of the sources (every n-th, split by rank then worker; all of them when there are
fewer sources than readers), draws from it with replacement, and cuts a random clip of ``num_frames`` frames at a
random stride from each draw, resized to the training resolution. A video file is read from a seek to the clip
where its frame timestamps allow it (``video_sources.read_frames``), so a draw costs the same early or late in a long
video. A video that cannot be decoded, or is shorter than a clip, is logged once, counted (``data/bad_videos``,
``data/short_videos``) and not drawn again; a reader with nothing left readable stops the run with one error line.
"""

from __future__ import annotations

import logging
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import webdataset as wds

from tapforge.base.errors import TapforgeError
from tapforge.base.video import resize_frames
from tapforge.synth.schema import SchemaError, decode_frames, frame_names
from tapforge.train.batches import ReaderCounts, RealClipBatch
from tapforge.train.readers import Reader, ReaderStream
from tapforge.train.sampling import subclip_indices
from tapforge.train.shards import CorruptShardHandler, read_samples
from tapforge.train.video_sources import ShortVideo, UnreadableVideo, count_frames, frame_grid, read_frames

log = logging.getLogger(__name__)


class RealClipStream(ReaderStream):
    """Endless stream of batches of unlabeled clips; one epoch = exactly ``epoch_length`` batches per rank."""

    stream = "real"

    def __init__(
        self,
        videos: Sequence[str],
        shards: Sequence[str],
        batch_size: int,
        epoch_length: int,
        num_frames: int,
        frame_strides: Sequence[int],
        resolution: tuple[int, int],
        on_corrupt: str = "skip",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(epoch_length, seed, rank, world_size)
        self.videos, self.shards = list(videos), list(shards)
        self.batch_size = batch_size
        self.num_frames, self.frame_strides = num_frames, list(frame_strides)
        self.resolution = tuple(resolution)
        self.on_corrupt = on_corrupt

    def _resize(self, frames: np.ndarray) -> np.ndarray:
        return frames if frames.shape[1:3] == self.resolution else resize_frames(frames, self.resolution)

    def _from_videos(self, videos: list[str], counts: ReaderCounts, rng: np.random.Generator) -> Iterator[dict]:
        found: dict[str, tuple[int, tuple[float, float] | None]] = {}  # path -> (frames, seek grid), once per reader
        while videos:
            path = videos[int(rng.integers(len(videos)))]
            try:
                if path not in found:
                    total = count_frames(path)
                    found[path] = total, frame_grid(path, total)
                total, grid = found[path]
                indices = subclip_indices(total, self.num_frames, self.frame_strides, rng)
                if indices is None:
                    raise ShortVideo(f"{total} frames, fewer than data.num_frames={self.num_frames}")
                frames = read_frames(path, indices, grid)  # a seek to the clip where the grid allows it
            except (UnreadableVideo, ShortVideo) as err:
                short = isinstance(err, ShortVideo)
                counts.short_videos += short
                counts.bad_videos += not short
                log.warning(
                    "real video %s is %s (%s); left out (%d unreadable, %d too short so far)",
                    path,
                    "too short" if short else "unreadable",
                    err,
                    counts.bad_videos,
                    counts.short_videos,
                )
                if self.on_corrupt == "fail" and not short:
                    raise TapforgeError(
                        f"real video {path} is unreadable ({err}); fix: re-encode or remove it, or "
                        "set data.on_corrupt=skip"
                    ) from None
                videos.remove(path)
                continue
            yield {"video": self._resize(frames), "key": f"{path}@{int(indices[0])}"}

    def _from_shards(
        self,
        shards: Iterable[dict],
        handler: CorruptShardHandler,
        counts: ReaderCounts,
        rng: np.random.Generator,
    ) -> Iterator[dict]:
        """Clips of the packed samples of ``shards`` (webdataset's resampled shard stream)."""
        for sample in read_samples((shard["url"] for shard in shards), handler):
            total = len(frame_names(sample))
            indices = subclip_indices(total, self.num_frames, self.frame_strides, rng)
            if total and indices is None:
                counts.short_videos += 1
                continue
            try:  # only the clip's frames are decoded
                if not total:
                    raise SchemaError("no video.* frame entries")
                frames = decode_frames(sample, indices)
            except SchemaError as err:
                handler.sample_error(sample.get("__key__", "?"), sample.get("__url__", "?"), err)
                frames = None
            counts.bad_shards, counts.bad_samples = handler.bad_shards, handler.bad_samples
            if frames is not None:
                yield {"video": self._resize(frames), "key": sample["__key__"]}

    def _examples(self, reader: Reader, counts: ReaderCounts) -> Iterator[dict]:
        rng = reader.rng("clips")
        videos, shards = reader.share(self.videos), reader.share(self.shards)
        handler = CorruptShardHandler(self.on_corrupt, max_consecutive=200 + 3 * len(shards))
        streams = []
        if videos:
            streams.append((len(videos), self._from_videos(videos, counts, rng)))
        if shards:
            streams.append((len(shards), self._from_shards(reader.resampled(shards), handler, counts, rng)))
        while streams:  # draw from the video files and the shards in proportion to their numbers
            weights = np.array([n for n, _ in streams], float)
            choice = int(rng.choice(len(streams), p=weights / weights.sum()))
            try:
                yield next(streams[choice][1])
            except StopIteration:
                streams.pop(choice)
        raise TapforgeError(
            f"no readable video left in data.real_videos for this reader ({counts.bad_videos} "
            f"unreadable, {counts.short_videos} too short); fix: check the files (tapforge track "
            "reads one), or lower data.num_frames"
        )

    def stages(self, reader: Reader) -> list:
        """This reader's clips (video files and packed shards together) -> batches."""
        counts = reader.counts()
        examples = self._examples(reader, counts)

        def collate(examples: list[dict]) -> RealClipBatch:
            return RealClipBatch(
                video=torch.from_numpy(np.stack([e["video"] for e in examples])),
                keys=[e["key"] for e in examples],
                counts=ReaderCounts(**vars(counts)),
            )

        return [
            lambda: examples,  # one generator for every epoch: each continues the reader's draws
            wds.batched(self.batch_size, collation_fn=collate, partial=False),
        ]
