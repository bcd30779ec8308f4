"""``tapforge pack-videos``'s writer: unlabeled videos cut into clips and written as WebDataset shards.

A clip is a sample with the synthetic schema's frame entries (``video.000.jpg`` ...) and a ``meta.json`` (its source
file's name, first frame and stride), no ground truth; ``data.real_videos`` reads the shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import webdataset as wds
from tqdm import tqdm

from tapforge.base.atomic import atomic_write, atomic_write_bytes
from tapforge.base.errors import TapforgeError
from tapforge.base.video import resize_frames
from tapforge.synth.schema import encode_frame, frame_entry
from tapforge.train.video_sources import UnreadableVideo, count_frames, read_frames

log = logging.getLogger(__name__)


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
