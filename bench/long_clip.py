"""Long-clip benchmark: seconds per frame and peak memory of one render worker by clip length.

    python bench/long_clip.py [--config long_movi] [--lengths 24 120 480 1024] [--resolution 64] [--samples 1]

Each length renders one scene in a fresh process, as a render job's worker does (scene script and physics,
Blender build, path tracing, aux passes, ground truth, encoding: `render_scene`), and reports wall seconds per frame,
the stages per frame, the process's peak resident memory, and the clip's motion statistics (meta.json
``motion``). The last lines are the ratios of the longest clip's s/frame to the shortest's (goal: at most 1.15):
in all, and for the pipeline's own work (scene script and physics, Blender build, deformation read-back, ground
truth, encoding: everything but Cycles' two layer renders, whose cost per frame follows what is in view, e.g. the
objects that have arrived so far, rather than the clip's length; ``--set scene.arrival_interval=0`` keeps the
content of long_movi constant).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time
from tapforge.synth.config import load_config
from tapforge.synth.pipeline import SceneRenderer
from tapforge.synth.render_job import render_scene
config = load_config(sys.argv[1], sys.argv[3:])
renderer = SceneRenderer(config)
start = time.perf_counter()
sample, timing = render_scene(renderer, config, int(sys.argv[2]))
wall = time.perf_counter() - start
motion = json.loads(sample["meta.json"])["motion"]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"wall": wall, "timing": timing, "peak_mib": peak, "motion": motion}))
"""


def run(config: str, scene: int, sets: list[str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, config, str(scene), *sets], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise SystemExit(f"the render failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="long_movi")
    parser.add_argument("--lengths", type=int, nargs="+", default=[24, 120, 480, 1024])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--tracks", type=int, default=2048)
    parser.add_argument("--scene", type=int, default=0, help="scene index (the same scene seed at every length)")
    parser.add_argument("--set", action="append", default=[], help="more config overrides, KEY=VALUE")
    args = parser.parse_args()
    print(f"{args.config} at {args.resolution}x{args.resolution}, {args.samples} spp, {args.tracks} tracks")
    print(f"{'frames':>6} {'s/frame':>8} {'peak MiB':>9}  stages (ms/frame)  motion")
    per_frame, pipeline = {}, {}
    for length in args.lengths:
        sets = [f"scene.num_frames={length}", f"render.resolution={args.resolution}"]
        sets += [f"render.samples={args.samples}", f"tracks.num_tracks={args.tracks}", *args.set]
        out = run(args.config, args.scene, sets)
        per_frame[length] = out["wall"] / length
        rendering = sum(out["timing"].get(k, 0.0) for k in ("path_tracing", "aux_passes"))
        pipeline[length] = (out["wall"] - rendering) / length
        stages = " ".join(f"{k} {1000 * v / length:.0f}" for k, v in out["timing"].items())
        print(f"{length:>6} {per_frame[length]:8.3f} {out['peak_mib']:9.0f}  {stages}  {out['motion']}", flush=True)
    longest, shortest = max(per_frame), min(per_frame)
    print(f"s/frame ratio, {longest} frames / {shortest} frames: {per_frame[longest] / per_frame[shortest]:.2f}")
    print(
        f"pipeline s/frame (all but the two layer renders): {pipeline[shortest]:.3f} -> {pipeline[longest]:.3f}, "
        f"ratio {pipeline[longest] / pipeline[shortest]:.2f}"
    )


if __name__ == "__main__":
    main()
