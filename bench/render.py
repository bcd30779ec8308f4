"""Render benchmark: seconds per frame and the share of wall time spent outside Cycles path tracing.

    python bench/render.py [--resolutions 128 256] [--samples 16 32 64] [--frames 24] [--repeats 1]

Each configuration renders whole scenes through the real pipeline (scene sampling, physics, Blender build,
rgb path tracing, aux passes, EXR reading, ground truth, shard encoding) and reports medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tapforge.synth.config import load_config
from tapforge.synth.pipeline import SceneRenderer
from tapforge.synth.render_job import render_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="movi_e")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--samples", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=1, help="scenes per configuration")
    args = parser.parse_args()
    print(f"{'res':>5} {'spp':>4} {'s/frame':>8} {'cycles s/frame':>14} {'outside cycles':>14}  breakdown (s/scene)")
    for resolution in args.resolutions:
        for samples in args.samples:
            config = load_config(
                args.config,
                [f"render.resolution={resolution}", f"render.samples={samples}", f"scene.num_frames={args.frames}"],
            )
            renderer = SceneRenderer(config)
            totals, cycles, breakdowns = [], [], []
            for scene in range(args.repeats):
                start = time.perf_counter()
                _, timing = render_scene(renderer, config, scene)  # what a render job's worker does per scene
                totals.append(time.perf_counter() - start)
                cycles.append(timing["path_tracing"])
                breakdowns.append(timing)
            total, cyc = statistics.median(totals), statistics.median(cycles)
            parts = {k: round(statistics.median(b[k] for b in breakdowns), 2) for k in breakdowns[0]}
            print(
                f"{resolution:>5} {samples:>4} {total / args.frames:>8.3f} {cyc / args.frames:>14.3f} "
                f"{1 - cyc / total:>13.1%}  {parts}",
                flush=True,
            )


if __name__ == "__main__":
    main()
