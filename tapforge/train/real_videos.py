"""Unlabeled real videos for self-supervised fine-tuning (``tapforge.train.bootstrap``): sources, random clips, shards.

``data.real_videos`` names folders, globs, video files, frame folders and shard files or URLs:

- a video file (mp4, m4v, mov, avi, mkv, webm: decoded by the ffmpeg that imageio-ffmpeg ships, seeking to the
  clip) or an animated GIF is one video;
- a folder of frame images (png, jpg ...) is one video, its frames in natural order;
- a folder is searched recursively: every video file in it, and every sub-folder holding images, is a video;
  every ``*.tar`` in it is a shard;
- a shard (``.tar``, a brace pattern or a URL, as for ``data.train_shards``) holds clips written by
  ``tapforge pack-videos``: samples with the synthetic schema's frame entries (``video.000.jpg`` ...) and a
  ``meta.json``, no ground truth.

Each loader reader (a DDP rank's worker) takes its own share of the sources (every n-th, split by rank then
worker; all of them when there are fewer sources than readers), draws from it with replacement, and cuts a random
clip of ``num_frames`` frames at a random stride from each draw, resized to the training resolution. A video that
cannot be decoded, or is shorter than a clip, is logged once, counted (``data/bad_videos``, ``data/short_videos``)
and not drawn again; a reader with nothing left readable stops the run with one error line.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import os
import zlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info
from tqdm import tqdm

from tapforge.base.atomic import atomic_write, atomic_write_bytes
from tapforge.base.errors import TapforgeError
from tapforge.base.video import (
    FFMPEG_SUFFIXES,
    IMAGE_SUFFIXES,
    decode_image,
    image_names,
    natural_key,
    read_video,
    resize_frames,
)
from tapforge.synth.schema import VIDEO_CODECS, SchemaError, decode_frames, encode_frame, frame_entry, frame_names
from tapforge.train.batches import ReaderCounts, RealClipBatch
from tapforge.train.shards import CorruptShardHandler, expand_shards, is_remote, read_samples, split_urls

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = FFMPEG_SUFFIXES + (".gif",)


class UnreadableVideo(Exception):
    """A source that cannot be decoded; the message says why."""


class ShortVideo(Exception):
    """A source with fewer frames than a clip needs."""


# ---------------------------------------------------------------------------------------------
# sources


def _search_folder(folder: str) -> tuple[list[str], list[str]]:
    """(videos, shards) below ``folder``: video files, folders of images, ``.tar`` shards."""
    videos, shards = [], []
    for root, dirs, files in os.walk(folder):
        dirs.sort(key=natural_key)
        if any(f.lower().endswith(IMAGE_SUFFIXES) for f in files):
            videos.append(root)
        for name in sorted(files, key=natural_key):
            path = os.path.join(root, name)
            if name.lower().endswith(VIDEO_SUFFIXES):
                videos.append(path)
            elif name.endswith(".tar"):
                shards.append(path)
    return videos, shards


def expand_video_sources(
    spec: str | Sequence[str] | None, key: str = "data.real_videos"
) -> tuple[list[str], list[str]]:
    """(video sources, shard URLs) named by ``spec`` (see the module docstring); one error line when it names none."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec or [])
    videos, shards = [], []
    for item in map(str, items):
        item = os.path.expanduser(item)
        if item.endswith(".tar") or "{" in item or is_remote(item):
            shards += expand_shards(item, key)
            continue
        paths = sorted(glob.glob(item), key=natural_key) if set("*?[") & set(item) else [item]
        if not paths or not all(os.path.exists(p) for p in paths):
            raise TapforgeError(
                f"{key}: {item!r} matches no file or folder; fix: give video files, folders of videos "
                "or of frames, globs or shards that exist"
            )
        for path in paths:
            if os.path.isdir(path):
                found_videos, found_shards = _search_folder(path)
                videos += found_videos
                shards += found_shards
            elif path.lower().endswith(VIDEO_SUFFIXES):
                videos.append(path)
            elif path.endswith(".tar"):
                shards.append(path)
            else:
                raise TapforgeError(
                    f"{key}: {path!r} is not a video ({', '.join(VIDEO_SUFFIXES)}), a folder or a "
                    ".tar shard; fix: remove it from the list"
                )
    if not videos and not shards:
        raise TapforgeError(
            f"{key} names no videos ({spec!r}); fix: give folders holding video files "
            f"({', '.join(VIDEO_SUFFIXES)}) or frame images, or shards from tapforge pack-videos"
        )
    return videos, shards


def count_frames(path: str) -> int:
    """Frames of a video source (decodes a file once, without keeping frames); raises UnreadableVideo."""
    if os.path.isdir(path):
        return len(image_names(path))
    if path.lower().endswith(".gif"):
        return len(_read_all(path))
    import imageio_ffmpeg

    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(path)
    except (OSError, RuntimeError, ValueError, StopIteration) as err:
        raise UnreadableVideo(_last_line(err)) from None
    if frames <= 0:
        raise UnreadableVideo("no frames")
    return int(frames)


def _last_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__


def _read_all(path: str) -> np.ndarray:
    try:
        return read_video(path)[0]
    except TapforgeError as err:
        raise UnreadableVideo(str(err).split("; fix:")[0]) from None


def read_frames(path: str, indices: np.ndarray) -> np.ndarray:
    """Frames ``indices`` (increasing) of a video source -> uint8 [len(indices),H,W,3]; raises UnreadableVideo."""
    indices = np.asarray(indices)
    if os.path.isdir(path):
        names = image_names(path)
        try:
            frames = [decode_image(os.path.join(path, names[i])) for i in indices]
        except ValueError as err:
            raise UnreadableVideo(str(err)) from None
        if len({f.shape for f in frames}) > 1:
            raise UnreadableVideo("its frames differ in size")
        return np.stack(frames)
    if path.lower().endswith(".gif"):
        return _read_all(path)[indices]
    import imageio_ffmpeg

    first, count = int(indices[0]), int(indices[-1] - indices[0] + 1)
    try:  # decode from frame ``first`` only (select by frame number: exact, whatever the timestamps)
        reader = imageio_ffmpeg.read_frames(
            path, pix_fmt="rgb24", output_params=["-vf", f"select=gte(n\\,{first})", "-fps_mode", "passthrough"]
        )
        meta = next(reader)
        width, height = meta["size"]
        frames = []
        for raw in reader:
            frames.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3))
            if len(frames) == count:
                break
        reader.close()
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as err:
        raise UnreadableVideo(_last_line(err)) from None
    if len(frames) < count:
        raise ShortVideo(f"ended after {first + len(frames)} frames")
    return np.stack(frames)[indices - first]


def clip_indices(total: int, num_frames: int, strides: Sequence[int], rng: np.random.Generator) -> np.ndarray | None:
    """Frame indices of a random clip of ``num_frames`` at a random stride that fits ``total`` frames, or None."""
    fitting = [s for s in strides if (num_frames - 1) * s < total]
    if not fitting:
        return None
    stride = int(rng.choice(fitting))
    start = int(rng.integers(0, total - (num_frames - 1) * stride))
    return start + stride * np.arange(num_frames)


# ---------------------------------------------------------------------------------------------
# the training stream


class RealClipStream(IterableDataset):
    """Endless stream of batches of unlabeled clips; one epoch = exactly ``epoch_length`` batches per rank."""

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
        self.videos, self.shards = list(videos), list(shards)
        self.batch_size, self.epoch_length = batch_size, epoch_length
        self.num_frames, self.frame_strides = num_frames, list(frame_strides)
        self.resolution = tuple(resolution)
        self.on_corrupt, self.seed, self.rank, self.world_size = on_corrupt, seed, rank, world_size
        self._pipeline: wds.DataPipeline | None = None

    def __len__(self) -> int:
        return self.epoch_length

    def _resize(self, frames: np.ndarray) -> np.ndarray:
        return frames if frames.shape[1:3] == self.resolution else resize_frames(frames, self.resolution)

    def _from_videos(self, videos: list[str], counts: ReaderCounts, rng: np.random.Generator) -> Iterator[dict]:
        lengths: dict[str, int] = {}
        while videos:
            path = videos[int(rng.integers(len(videos)))]
            try:
                if path not in lengths:
                    lengths[path] = count_frames(path)
                indices = clip_indices(lengths[path], self.num_frames, self.frame_strides, rng)
                if indices is None:
                    raise ShortVideo(f"{lengths[path]} frames, fewer than data.num_frames={self.num_frames}")
                frames = read_frames(path, indices)
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
        shards: list[str],
        handler: CorruptShardHandler,
        counts: ReaderCounts,
        rng: np.random.Generator,
        seed: list,
    ) -> Iterator[dict]:
        stream = wds.ResampledShards(
            shards, seed=zlib.crc32(repr(seed).encode()), worker_seed=lambda: 0, deterministic=True
        )
        for sample in read_samples((shard["url"] for shard in stream), handler):
            total = len(frame_names(sample))
            indices = clip_indices(total, self.num_frames, self.frame_strides, rng)
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

    def _examples(self, worker: int, num_workers: int, counts: ReaderCounts) -> Iterator[dict]:
        part, parts = self.rank * num_workers + worker, self.world_size * num_workers
        seed = [self.seed, self.rank, worker, "real"]
        rng = np.random.default_rng(zlib.crc32(repr(seed).encode()))
        videos = split_urls(self.videos, part, parts)
        shards = split_urls(self.shards, part, parts)
        handler = CorruptShardHandler(self.on_corrupt, max_consecutive=200 + 3 * len(shards))
        streams = []
        if videos:
            streams.append((len(videos), self._from_videos(videos, counts, rng)))
        if shards:
            streams.append((len(shards), self._from_shards(shards, handler, counts, rng, seed)))
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

    def _build(self, worker: int, num_workers: int) -> wds.DataPipeline:
        counts = ReaderCounts(worker=worker, stream="real")
        examples = self._examples(worker, num_workers, counts)
        share = self.epoch_length // num_workers + (1 if worker < self.epoch_length % num_workers else 0)

        def collate(examples: list[dict]) -> RealClipBatch:
            return RealClipBatch(
                video=torch.from_numpy(np.stack([e["video"] for e in examples])),
                keys=[e["key"] for e in examples],
                counts=ReaderCounts(**vars(counts)),
            )

        return wds.DataPipeline(
            lambda: examples,  # one generator for every epoch: each continues the reader's draws
            wds.batched(self.batch_size, collation_fn=collate, partial=False),
        ).with_epoch(share)

    def __iter__(self) -> Iterator[RealClipBatch]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        if self._pipeline is None:  # kept across epochs, so the reader's draws continue
            self._pipeline = self._build(worker, num_workers)
        return iter(self._pipeline)


# ---------------------------------------------------------------------------------------------
# tapforge pack-videos


@dataclass
class ClipSpec:
    """One packed clip: ``count`` frames of ``source`` from ``start`` at ``stride``."""

    source: str
    start: int
    stride: int
    count: int


def plan_clips(
    videos: Sequence[str], num_frames: int, stride: int, clips_per_video: int | None
) -> tuple[list[ClipSpec], list[str]]:
    """Non-overlapping clips of each video (at most ``clips_per_video``, spread over it), and the sources left out."""
    specs, skipped = [], []
    span = (num_frames - 1) * stride + 1
    for path in tqdm(videos, desc="counting frames", unit="video", leave=False):
        try:
            total = count_frames(path)
        except UnreadableVideo as err:
            log.warning("%s is unreadable (%s); left out", path, err)
            skipped.append(path)
            continue
        starts = list(range(0, total - span + 1, span))
        if not starts:
            log.warning(
                "%s has %d frames, fewer than a clip of %d at stride %d; left out", path, total, num_frames, stride
            )
            skipped.append(path)
            continue
        if clips_per_video and len(starts) > clips_per_video:
            starts = [starts[i] for i in np.linspace(0, len(starts) - 1, clips_per_video).round().astype(int)]
        specs += [ClipSpec(path, s, stride, num_frames) for s in starts]
    return specs, skipped


def pack_videos(
    videos: Sequence[str],
    out: str,
    num_frames: int = 24,
    size: tuple[int, int] | None = None,
    stride: int = 1,
    clips_per_video: int | None = None,
    clips_per_shard: int = 64,
    codec: str = "jpg",
    jpeg_quality: int = 95,
) -> dict:
    """Write clips of ``videos`` as ``out/shard-%06d.tar`` plus ``manifest.json``; returns the manifest.

    Shards already complete (same plan, recorded in the manifest) are kept, so an interrupted run resumes.
    """
    specs, skipped = plan_clips(videos, num_frames, stride, clips_per_video)
    if not specs:
        raise TapforgeError(
            f"none of the {len(videos)} videos gives a clip of {num_frames} frames at stride {stride}; "
            "fix: lower --num-frames or --stride, or check the files"
        )
    settings = {
        "num_frames": num_frames,
        "size": list(size) if size else None,
        "stride": stride,
        "codec": codec,
        "jpeg_quality": jpeg_quality,
        "clips_per_shard": clips_per_shard,
        "clips": [vars(s) for s in specs],
    }
    plan_hash = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    os.makedirs(out, exist_ok=True)
    manifest_path = os.path.join(out, "manifest.json")
    done: dict[str, dict] = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            previous = json.load(f)
        if previous.get("plan_hash") != plan_hash:
            raise TapforgeError(
                f"{out} holds clips packed with other videos or settings; fix: pack into a new folder "
                "or delete this one"
            )
        done = {s["name"]: s for s in previous["shards"]}
    shards = []

    def write_manifest() -> dict:  # after every shard, so that an interrupted run resumes
        manifest = {
            "kind": "unlabeled video clips",
            "plan_hash": plan_hash,
            "skipped": skipped,
            "shards": shards,
            **{k: v for k, v in settings.items() if k != "clips"},
        }
        atomic_write_bytes(manifest_path, json.dumps(manifest, indent=1).encode())
        return manifest

    groups = [specs[i : i + clips_per_shard] for i in range(0, len(specs), clips_per_shard)]
    for index, group in enumerate(tqdm(groups, desc=f"packing {len(specs)} clips", unit="shard")):
        name = f"shard-{index:06d}.tar"
        path = os.path.join(out, name)
        if name in done and os.path.exists(path):
            shards.append(done[name])
            continue

        def write(tmp: str, group=group, index=index) -> None:
            with wds.TarWriter(tmp) as sink:
                for k, spec in enumerate(group):
                    frames = read_frames(spec.source, spec.start + spec.stride * np.arange(spec.count))
                    if size:
                        frames = resize_frames(frames, size)
                    sample = {
                        "__key__": f"clip{index:06d}_{k:04d}",
                        "meta.json": json.dumps(
                            {"source": os.path.basename(spec.source), "start": spec.start, "stride": spec.stride}
                        ).encode(),
                    }
                    for t, frame in enumerate(frames):
                        sample[frame_entry(t, codec)] = encode_frame(frame, codec, jpeg_quality)
                    sink.write(sample)

        atomic_write(path, write)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        shards.append({"name": name, "samples": len(group), "sha256": digest})
        write_manifest()
    return write_manifest()


def main(argv: list[str] | None = None) -> int:
    """``tapforge pack-videos SOURCE... --out DIR``: unlabeled clips as WebDataset shards for data.real_videos."""
    p = argparse.ArgumentParser(prog="tapforge pack-videos", description=main.__doc__)
    p.add_argument("sources", nargs="+", help="video files, folders of videos or of frames, globs")
    p.add_argument("--out", required=True, help="folder for shard-*.tar and manifest.json")
    p.add_argument("--num-frames", type=int, default=24, help="frames per clip (default 24)")
    p.add_argument("--stride", type=int, default=1, help="take every n-th frame (default 1)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize frames (default: keep the size)")
    p.add_argument(
        "--clips-per-video", type=int, help="at most this many non-overlapping clips per video (default all)"
    )
    p.add_argument("--clips-per-shard", type=int, default=64)
    p.add_argument("--codec", choices=VIDEO_CODECS, default="jpg")
    p.add_argument("--jpeg-quality", type=int, default=95)
    args = p.parse_args(argv)
    for name in ("num_frames", "stride", "clips_per_shard"):
        if getattr(args, name) < 1:
            raise TapforgeError(f"--{name.replace('_', '-')} is {getattr(args, name)}; fix: use 1 or more")
    if args.clips_per_video is not None and args.clips_per_video < 1:
        raise TapforgeError(f"--clips-per-video is {args.clips_per_video}; fix: use 1 or more, or leave it out")
    if args.size and min(args.size) < 8:
        raise TapforgeError(f"--size is {args.size}; fix: give H W of at least 8 pixels each")
    if not 1 <= args.jpeg_quality <= 100:
        raise TapforgeError(f"--jpeg-quality is {args.jpeg_quality}; fix: use 1 to 100")
    videos, shards = expand_video_sources(args.sources, "pack-videos")
    if shards or not videos:
        raise TapforgeError("pack-videos takes videos and frame folders, not shards; fix: list the videos themselves")
    manifest = pack_videos(
        videos,
        args.out,
        args.num_frames,
        tuple(args.size) if args.size else None,
        args.stride,
        args.clips_per_video,
        args.clips_per_shard,
        args.codec,
        args.jpeg_quality,
    )
    clips = sum(s["samples"] for s in manifest["shards"])
    print(
        f"packed {clips} clips of {args.num_frames} frames from {len(videos) - len(manifest['skipped'])} videos into "
        f"{len(manifest['shards'])} shards in {args.out} ({len(manifest['skipped'])} videos left out)"
    )
    return 0
