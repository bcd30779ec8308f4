"""`tapforge synth to-tapvid`: rendered shards -> a TAP-Vid DAVIS-format pickle.

Any TAP-Vid evaluation code (``tapforge eval --tapvid-davis``, tapnet's own) then scores trackers on
the synthetic clips: dict name -> {"video": uint8 [T,H,W,3], "points": float32 [N,T,2] (x, y) divided by
(width, height), "occluded": bool [N,T]} (written by ``tapforge.tapir.tapvid.write_tapvid_pickle``, numpy only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tapforge.synth.shards import iter_dataset_clips
from tapforge.tapir.tapvid import write_tapvid_pickle


def export_tapvid_pickle(dataset: Path, out: Path, max_tracks: int | None = None, seed: int = 0) -> int:
    """Write the dataset's clips as a TAP-Vid DAVIS-style pickle; return the number of videos written."""
    rng = np.random.default_rng(seed)
    clips = []
    for clip in iter_dataset_clips(dataset):
        keep = np.arange(clip.num_tracks)
        if max_tracks is not None and clip.num_tracks > max_tracks:
            keep = np.sort(rng.choice(clip.num_tracks, max_tracks, replace=False))
        clips.append((clip.key, clip.video, clip.tracks[keep], clip.occluded[keep]))
    write_tapvid_pickle(out, clips)
    return len(clips)
