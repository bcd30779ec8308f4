"""`tapforge synth to-tapvid`: rendered shards -> a TAP-Vid DAVIS-format pickle.

Any TAP-Vid evaluation code (``tapforge eval --tapvid-davis``, tapnet's own) then scores trackers on
the synthetic clips: dict name -> {"video": uint8 [T,H,W,3], "points": float32 [N,T,2] (x, y) divided by
(width, height), "occluded": bool [N,T]}.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from tapforge.base.atomic import atomic_write_bytes
from tapforge.synth.shards import iter_dataset_clips


def export_tapvid_pickle(dataset: Path, out: Path, max_tracks: int | None = None, seed: int = 0) -> int:
    """Write the dataset's clips as a TAP-Vid DAVIS-style pickle; return the number of videos written."""
    rng = np.random.default_rng(seed)
    videos = {}
    for clip in iter_dataset_clips(dataset):
        keep = np.arange(clip.num_tracks)
        if max_tracks is not None and clip.num_tracks > max_tracks:
            keep = np.sort(rng.choice(clip.num_tracks, max_tracks, replace=False))
        height, width = clip.video.shape[1:3]
        videos[clip.key] = {
            "video": clip.video,
            "points": (clip.tracks[keep] / np.array([width, height], np.float32)).astype(np.float32),
            "occluded": clip.occluded[keep],
        }
    atomic_write_bytes(out, pickle.dumps(videos, protocol=4))
    return len(videos)
