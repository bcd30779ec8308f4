"""``tapforge pack-videos``'s writer: unlabeled videos cut into clips and written as WebDataset shards.

A clip is a sample with the synthetic schema's frame entries (``video.000.jpg`` ...) and a ``meta.json`` (its source
file's name, first frame and stride), no ground truth; ``data.real_videos`` reads the shards.

``manifest.json`` uses the synthetic datasets' field names (``tapforge.synth.shards``) for the same things:
``generator`` ("tapforge-pack-videos") and ``generator_version``; ``config`` (the packing settings) and
``config_hash`` (of the settings and the clip plan: a resumed run must match it); ``num_shards``; ``shards``, one
entry per complete shard with ``name``, ``num_samples``, ``keys``, ``bytes`` and ``sha256``; ``num_complete_shards``.
Its own: ``num_samples`` and ``num_complete_samples`` (clips planned and written) and ``skipped`` (videos left out).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import webdataset as wds
from tqdm import tqdm

from tapforge.base import __version__
from tapforge.base.atomic import atomic_write, atomic_write_bytes, remove_stale_temporaries
from tapforge.base.errors import TapforgeError
from tapforge.base.video import resize_frames
from tapforge.synth.schema import encode_frame, frame_entry
from tapforge.train.video_sources import ShortVideo, UnreadableVideo, count_frames, iter_clips

log = logging.getLogger(__name__)

GENERATOR = "tapforge-pack-videos"
MANIFEST = "manifest.json"


@dataclass
class ClipSpec:
    """One packed clip: ``count`` frames of ``source`` from ``start`` at ``stride``."""

    source: str
    start: int
    stride: int
    count: int


def plan_clips(
    videos: Sequence[str], num_frames: int, stride: int, clips_per_video: int | None
) -> tuple[list[ClipSpec], dict[str, str]]:
    """Non-overlapping clips of each video (at most ``clips_per_video``, spread over it), and the sources left out
    (path -> why)."""
    specs, skipped = [], {}
    span = (num_frames - 1) * stride + 1
    for path in tqdm(videos, desc="counting frames", unit="video", leave=False, disable=None):
        try:
            total = count_frames(path)
        except UnreadableVideo as err:
            skipped[path] = f"unreadable: {err}"
            continue
        starts = list(range(0, total - span + 1, span))
        if not starts:
            skipped[path] = f"{total} frames, fewer than a clip of {num_frames} at stride {stride}"
            continue
        if clips_per_video and len(starts) > clips_per_video:
            starts = [starts[i] for i in np.linspace(0, len(starts) - 1, clips_per_video).round().astype(int)]
        specs += [ClipSpec(path, s, stride, num_frames) for s in starts]
    return specs, skipped


SHARD_FIELDS = {"name": str, "num_samples": int, "keys": list, "bytes": int, "sha256": str}


def read_manifest(out: str) -> dict | None:
    """The manifest of an earlier run into ``out`` (None if there is none), or one TapforgeError line when it is not
    one that pack-videos wrote: damaged, or another tool's."""
    path = os.path.join(out, MANIFEST)
    if not os.path.exists(path):
        return None
    fix = f"fix: delete {out} (or its manifest.json and shard-*.tar) and pack again, or pack into a new folder"
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON (a truncated copy)
        raise TapforgeError(f"{path} is damaged ({type(err).__name__}: {err}), so resuming is refused; {fix}") from None
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
        made_by = manifest.get("generator") if isinstance(manifest, dict) else None
        raise TapforgeError(
            f"{path} was not written by pack-videos ({'generator ' + repr(made_by) if made_by else 'no generator'}): "
            f"{out} holds another dataset; fix: pack into a new folder"
        )
    shards = manifest.get("shards")
    if (
        not isinstance(manifest.get("config_hash"), str)
        or not isinstance(shards, list)
        or not all(
            isinstance(entry, dict) and all(isinstance(entry.get(k), t) for k, t in SHARD_FIELDS.items())
            for entry in shards
        )
    ):
        raise TapforgeError(
            f"{path} is damaged (no config_hash, or shard entries without {', '.join(SHARD_FIELDS)}), so resuming is refused; {fix}"
        )
    return manifest


def _clip_frames(specs: Sequence[ClipSpec]) -> Iterator[np.ndarray]:
    """The frames of each planned clip in turn, a source decoded once for the run of clips cut from it (clips come
    in the plan's order: by source, then by first frame), or one TapforgeError line naming the source that failed to
    decode after planning."""
    for source, run in itertools.groupby(specs, key=lambda spec: spec.source):
        run = list(run)
        indices = [spec.start + spec.stride * np.arange(spec.count) for spec in run]
        with contextlib.closing(iter_clips(source, indices)) as clips:
            for spec in run:
                try:
                    frames = next(clips)
                except (UnreadableVideo, ShortVideo) as err:
                    raise TapforgeError(
                        f"{spec.source} failed while packing frames {spec.start}.. ({err}); the shards written so far "
                        "are kept; fix: repair the file, or remove it from the sources and pack into a new folder"
                    ) from None
                yield frames


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

    Shards already complete (same plan, recorded in the manifest, of the recorded size) are kept, so an interrupted
    run resumes; the temporaries a killed run left are removed. Sources that cannot be read or are too short are left
    out with a warning each (all of them: one error line naming the first).
    """
    previous = read_manifest(out)  # before the work: a damaged or foreign manifest is refused at once
    specs, skipped = plan_clips(videos, num_frames, stride, clips_per_video)
    if not specs:
        path, why = next(iter(skipped.items()))
        more = f"; and {len(skipped) - 1} more" if len(skipped) > 1 else ""
        raise TapforgeError(
            f"none of the {len(videos)} videos gives a clip of {num_frames} frames at stride {stride} ({path}: {why}"
            f"{more}); fix: lower --num-frames or --stride, or check the files"
        )
    for path, why in skipped.items():
        log.warning("%s is left out: %s", path, why)
    config = {
        "num_frames": num_frames,
        "size": list(size) if size else None,
        "stride": stride,
        "codec": codec,
        "jpeg_quality": jpeg_quality,
        "clips_per_shard": clips_per_shard,
    }
    plan = [vars(s) for s in specs]
    identity = hashlib.sha256(json.dumps({**config, "clips": plan}, sort_keys=True).encode()).hexdigest()[:16]
    if previous is not None and previous["config_hash"] != identity:
        raise TapforgeError(
            f"{out} holds clips packed with other videos or settings; fix: pack into a new folder or delete this one"
        )
    done = {entry["name"]: entry for entry in previous["shards"]} if previous else {}
    os.makedirs(out, exist_ok=True)
    manifest_path = os.path.join(out, MANIFEST)
    for name in (MANIFEST, "shard-*.tar"):  # temporaries of a killed run into this folder
        remove_stale_temporaries(os.path.join(out, name))
    groups = [specs[i : i + clips_per_shard] for i in range(0, len(specs), clips_per_shard)]
    shards = []

    def write_manifest() -> dict:  # after every shard, so that an interrupted run resumes
        manifest = {
            "generator": GENERATOR,
            "generator_version": __version__,
            "config": config,
            "config_hash": identity,
            "num_samples": len(specs),
            "num_shards": len(groups),
            "skipped": list(skipped),
            "shards": shards,
            "num_complete_shards": len(shards),
            "num_complete_samples": sum(s["num_samples"] for s in shards),
        }
        atomic_write_bytes(manifest_path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
        return manifest

    names = [f"shard-{index:06d}.tar" for index in range(len(groups))]
    kept = {
        name
        for name in names
        if name in done
        and os.path.isfile(os.path.join(out, name))
        and os.path.getsize(os.path.join(out, name)) == done[name]["bytes"]
    }
    todo = [spec for name, group in zip(names, groups) if name not in kept for spec in group]
    with contextlib.closing(_clip_frames(todo)) as clips:  # one decoder per source, across shards
        for index, group in enumerate(tqdm(groups, desc=f"packing {len(specs)} clips", unit="shard")):
            name, path = names[index], os.path.join(out, names[index])
            if name in kept:
                shards.append(done[name])
                continue
            keys = [f"clip{index:06d}_{k:04d}" for k in range(len(group))]

            def write(tmp: str, group=group, keys=keys) -> None:
                with wds.TarWriter(tmp) as sink:
                    for key, spec in zip(keys, group):
                        frames = next(clips)
                        if size:
                            frames = resize_frames(frames, size)
                        sample = {
                            "__key__": key,
                            "meta.json": json.dumps(
                                {"source": os.path.basename(spec.source), "start": spec.start, "stride": spec.stride}
                            ).encode(),
                        }
                        for t, frame in enumerate(frames):
                            sample[frame_entry(t, codec)] = encode_frame(frame, codec, jpeg_quality)
                        sink.write(sample)

            atomic_write(path, write)
            with open(path, "rb") as f:
                data = f.read()
            record = {"name": name, "num_samples": len(group), "keys": keys, "bytes": len(data)}
            shards.append({**record, "sha256": hashlib.sha256(data).hexdigest()})
            write_manifest()
    return write_manifest()
