"""`tapforge synth preview`: one scene's frames with its ground-truth tracks drawn on, as GIF or MP4."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tapforge.base.errors import TapforgeError
from tapforge.synth.schema import decode_clip
from tapforge.synth.shards import iter_checked_samples, read_manifest


def load_scene(dataset: Path, index: int):
    """The `index`-th scene of a dataset folder, in shard order, as a `Clip` (its shard checked first)."""
    manifest = read_manifest(dataset)
    total = sum(entry["num_samples"] for entry in manifest["shards"])
    if not 0 <= index < total:
        raise TapforgeError(f"--index {index} is out of range: {dataset} holds {total} complete scenes")
    for entry in manifest["shards"]:
        if index < entry["num_samples"]:
            samples = iter_checked_samples(dataset, entry, decode=lambda sample: sample)
            for k, sample in enumerate(samples):
                if k == index:
                    return decode_clip(sample)
        index -= entry["num_samples"]
    raise TapforgeError(f"{dataset}: the manifest lists more scenes than the shards hold; run `tapforge synth verify`")


def write_preview(dataset: Path, out: Path, index: int = 0, max_tracks: int = 64) -> Path:
    """Draw scene `index`'s tracks (hidden points marked differently) on its frames, enlarged to a readable size,
    and write a GIF or MP4."""
    from tapforge.base.drawing import draw_tracks, enlarge
    from tapforge.base.video import write_video

    clip = load_scene(dataset, index)
    keep = np.random.default_rng(0).permutation(clip.num_tracks)[:max_tracks]
    frames, scale = enlarge(clip.video)
    frames = draw_tracks(frames, clip.tracks[keep] * scale, clip.occluded[keep])
    write_video(out, frames, fps=float(clip.meta.get("fps", 12)))
    return out
