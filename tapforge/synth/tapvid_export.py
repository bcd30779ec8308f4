"""`tapforge synth to-tapvid`: rendered shards -> TAP-Vid DAVIS-format pickles.

Any TAP-Vid evaluation code (``tapforge eval --tapvid-davis``, tapnet's own) then scores trackers on
the synthetic clips: dict name -> {"video": uint8 [T,H,W,3], "points": float32 [N,T,2] (x, y) divided by
(width, height), "occluded": bool [N,T]} (written by ``tapforge.tapir.tapvid.write_tapvid_pickle``, numpy only).
One pickle holds every clip (and a reader loads it whole); with ``clips_per_file`` the clips go into a folder of
``part-NNNNN.pkl`` files of that many clips each, as TAP-Vid Kinetics ships, so writing and evaluating long clips
holds one file's clips at a time.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import numpy as np

from tapforge.synth.shards import iter_dataset_clips
from tapforge.tapir.tapvid import write_tapvid_pickle

PART = "part-{:05d}.pkl"


def _selected(dataset: Path, max_tracks: int | None, seed: int) -> Iterator[tuple]:
    """(key, video, tracks, occluded) of every clip, at most ``max_tracks`` tracks each (a seeded random choice)."""
    rng = np.random.default_rng(seed)
    for clip in iter_dataset_clips(dataset):
        keep = np.arange(clip.num_tracks)
        if max_tracks is not None and clip.num_tracks > max_tracks:
            keep = np.sort(rng.choice(clip.num_tracks, max_tracks, replace=False))
        yield clip.key, clip.video, clip.tracks[keep], clip.occluded[keep]


def export_tapvid_pickle(
    dataset: Path, out: Path, max_tracks: int | None = None, seed: int = 0, clips_per_file: int | None = None
) -> int:
    """Write the dataset's clips as a TAP-Vid DAVIS-style pickle at ``out`` (or, with ``clips_per_file``, a folder
    ``out`` of pickles of that many clips each, parts an earlier run left beyond the last one removed); return
    the number of videos written."""
    clips = _selected(dataset, max_tracks, seed)
    if clips_per_file is None:
        chosen = list(clips)
        write_tapvid_pickle(out, chosen)
        return len(chosen)
    out.mkdir(parents=True, exist_ok=True)
    count = parts = 0
    while group := list(itertools.islice(clips, clips_per_file)):
        write_tapvid_pickle(out / PART.format(parts), group)
        count, parts = count + len(group), parts + 1
    for stale in out.glob("part-*.pkl"):
        if stale.name not in {PART.format(i) for i in range(parts)}:
            stale.unlink()
    return count
