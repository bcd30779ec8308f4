"""Scene script + physics time of long clips: does building a scene grow linearly with the clip's length?

Times `tapforge.synth.pipeline.build_scene` (the scene script and PyBullet, no Blender) of the long_movi preset at
24, 240 and 1024 frames, the median of a few seeds each, and prints seconds, milliseconds per frame and the
per-frame ratio of each length to 240 frames. Two variants: the preset as it is (its objects keep arriving, so
longer clips hold more objects) and one whose population is fixed (no arrivals), which isolates the length. Also
times one scripted pose lookup (`Object.pose_at`, what the simulator asks every physics step) on per-frame arrays
of 24 to 8192 frames. The time of a clip is a constant (setup, the settling before the clip) plus a per-frame
part: the per-frame figure at 24 frames is mostly the constant.

    python bench/long_scene.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tapforge.synth.config import load_config
from tapforge.synth.pipeline import build_scene
from tapforge.synth.scene import Shape, about_z

LENGTHS = (24, 240, 1024)
VARIANTS = {"long_movi": [], "long_movi, no arrivals": ["scene.arrival_interval=0"]}


def build_seconds(sets: list[str], frames: int, seeds: int) -> float:
    """Median seconds of build_scene over ``seeds`` seeds."""
    config = load_config("long_movi", [*sets, f"scene.num_frames={frames}"])
    times = []
    for seed in range(seeds):
        start = time.perf_counter()
        build_scene(config, seed)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def pose_lookup_microseconds(frames: int, calls: int = 2000) -> float:
    """Microseconds per `pose_at` of two fractional frames on an object with ``frames`` per-frame poses."""
    path = np.stack([np.linspace(0, 10, frames), np.zeros(frames), np.ones(frames)], -1)
    obj = Shape("cube").set_poses(path, about_z(np.linspace(0, 3, frames)))
    steps = np.linspace(0, frames - 1.1, calls)
    start = time.perf_counter()
    for step in steps:
        obj.pose_at([step, step + 0.1])
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="scenes per length (the median is shown)")
    args = parser.parse_args()
    build_seconds([], 24, 1)  # warm up: imports, Blender's Suzanne, texture caches
    for name, sets in VARIANTS.items():
        seconds = {frames: build_seconds(sets, frames, args.seeds) for frames in LENGTHS}
        per_frame = {frames: seconds[frames] / frames for frames in LENGTHS}
        print(f"{name} (scene script + physics, median of {args.seeds} seeds):")
        for frames in LENGTHS:
            print(
                f"  {frames:5d} frames: {seconds[frames]:7.2f} s  {per_frame[frames] * 1e3:6.2f} ms/frame  "
                f"per-frame ratio to 240 frames {per_frame[frames] / per_frame[240]:.2f}"
            )
    lookups = {frames: pose_lookup_microseconds(frames) for frames in (24, 240, 1024, 8192)}
    print("pose_at per physics step: " + ", ".join(f"{f} frames {us:.1f} us" for f, us in lookups.items()))


if __name__ == "__main__":
    main()
