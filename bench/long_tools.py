"""The dataset tools on a long clip: wall time and peak memory of `tapforge synth verify`, `preview`, `to-tapvid` and
`export --to cotracker` on a one-clip dataset of 24 and of 1024 frames (256x256, 2048 tracks, PNG frames).

Each tool runs in a process of its own (its peak RSS is that process's VmHWM, Linux); the clip is procedural
(`tapforge.train.procedural`) and committed as a render commits it. The decoded video of the 1024-frame clip is
1024 x 256 x 256 x 3 bytes = 192 MiB.

    python bench/long_tools.py [--frames 24 1024] [--size 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tapforge.synth.config import load_config
from tapforge.synth.pipeline import scene_key
from tapforge.synth.render_job import dataset_identity, manifest_header
from tapforge.synth.schema import encode_clip
from tapforge.synth.shards import write_shard
from tapforge.train.procedural import make_clip

# VmHWM: this process's own peak (ru_maxrss would count the parent's memory at the fork)
RUN = """
import re, sys
from tapforge.synth.cli import main
main(sys.argv[1:])
print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())[1], file=sys.stderr)
"""


def make_dataset(folder: Path, num_frames: int, size: int) -> None:
    """A one-clip dataset of ``num_frames`` frames at ``size`` x ``size`` with 2048 tracks."""
    config = load_config("tiny", [f"scene.num_frames={num_frames}", f"render.resolution={size}"])
    key = scene_key(0)
    clip = make_clip(
        np.random.default_rng(0),
        key,
        num_frames,
        (size, size),
        num_objects=4,
        points_per_object=400,
        background_points=448,
    )
    c2w = np.tile(np.eye(4), (num_frames, 1, 1)).tolist()
    clip.camera = {"K": [[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]], "cam_to_world_blender": c2w}
    clip.meta = {"config_hash": config.hash, "fps": 24, "seed": 0}
    identity = dataset_identity(config, 1, None)
    record = {**identity, "num_samples": 1, "keys": [key], "seeds": [0]}
    folder.mkdir(parents=True)
    write_shard(folder, 0, [encode_clip(clip)], record, manifest_header(config, 1, "5.0.1"))


def run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``tapforge synth ARGS`` in a fresh process."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, int(result.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[24, 1024])
    parser.add_argument("--size", type=int, default=256)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        idle = subprocess.run(
            [sys.executable, "-c", RUN.replace("main(sys.argv[1:])", "")], capture_output=True, text=True, check=True
        )
        print(f"python + tapforge.synth.cli imported: {int(idle.stderr.strip()) / 1024:.0f} MiB")
        rows = {}
        for frames in options.frames:
            data = root / f"d{frames}"
            make_dataset(data, frames, options.size)
            video_mib = frames * options.size * options.size * 3 / 2**20
            tools = {
                "verify": ["verify", str(data)],
                "preview": ["preview", str(data), "--out", str(root / f"p{frames}.mp4"), "--no-progress"],
                "to-tapvid": ["to-tapvid", str(data), "--out", str(root / f"t{frames}.pkl")],
                "export": ["export", str(data), "--to", "cotracker", "--out", str(root / f"e{frames}")],
            }
            for name, args in tools.items():
                seconds, rss = run(args)
                rows[(name, frames)] = (seconds, rss)
                print(
                    f"{name:<10} {frames:5d} frames ({video_mib:4.0f} MiB decoded): {seconds:6.2f} s, "
                    f"peak RSS {rss:6.0f} MiB"
                )
        print(json.dumps({f"{k[0]}@{k[1]}": v for k, v in rows.items()}))


if __name__ == "__main__":
    main()
