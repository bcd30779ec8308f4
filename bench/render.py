"""Render benchmark: core-seconds per clip of render settings side by side, with each clip's stages.

    python bench/render.py [--configs movi_e movi_deform long_movi:48] [--settings today kubric default]
                           [--add NAME:key=value,...] [--frames 24] [--resolution 256] [--scenes 1] [--threads 2]

Every scene of every config is rendered whole through the real pipeline (scene script and physics, textures,
Blender build, rgb path tracing, aux passes, EXR reading and ground truth, shard encoding: what a render job's
worker does) once with each setting, the settings in turn on the same scenes, each in a fresh Blender session
with the texture cache emptied, so that no setting inherits another's work and a change in machine load hits them
alike. ``config:frames`` gives a config its own clip length (e.g. long_movi per frame). Settings are those of
``bench/render_quality.py`` (``today``, ``kubric``, ``default``, ``--add``). Core-seconds: wall time times the
Cycles threads (the single-threaded stages counted as if they held every thread, as they do in a worker). Prints
per clip and setting the core-seconds, the ratio to ``today``, and the median stage breakdown in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

from render_quality import add_setting_arguments, named_settings, overrides

from tapforge.synth.config import load_config
from tapforge.synth.pipeline import SceneRenderer
from tapforge.synth.render_job import render_scene
from tapforge.synth.textures import generate_texture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["movi_e", "movi_deform", "long_movi:48"])
    add_setting_arguments(parser)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--scenes", type=int, default=1, help="scenes per config")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    specs = named_settings(args)
    results = []
    for item in args.configs:
        preset, frames = item.split(":") if ":" in item else (item, str(args.frames))
        common = [f"render.resolution={args.resolution}", f"scene.num_frames={frames}"]
        configs = {name: load_config(preset, common + overrides(spec)) for name, spec in specs.items()}
        warm = load_config(preset, ["render.resolution=32", "scene.num_frames=2", "tracks.num_tracks=16"])
        SceneRenderer(warm, args.threads).render(0).close()  # loads Cycles' kernels and the denoiser: not counted
        cost: dict[str, list[float]] = {name: [] for name in specs}
        stages: dict[str, list[dict]] = {name: [] for name in specs}
        for index in range(args.scenes):
            for name, config in configs.items():
                generate_texture.cache_clear()
                start = time.perf_counter()
                renderer = SceneRenderer(config, args.threads)
                _, timing = render_scene(renderer, config, index)
                cost[name].append((time.perf_counter() - start) * args.threads)
                stages[name].append({**timing, "textures": renderer.blender.texture_seconds})
                print(f"{preset} scene {index} {name}: {cost[name][-1]:.0f} core-s, {timing}", flush=True)
        results.append((preset, int(frames), cost, stages))
    print(f"\n{args.resolution}x{args.resolution}, {args.threads} Cycles threads, medians over {args.scenes} scene(s)")
    print(f"{'config':<12} {'setting':<10} {'core-s/clip':>11} {'core-s/frame':>12} {'x cheaper':>9}  stages (s)")
    for preset, frames, cost, stages in results:
        base = statistics.median(cost["today"] if "today" in cost else next(iter(cost.values())))
        for name, values in cost.items():
            median = statistics.median(values)
            parts = {k: round(statistics.median(s.get(k, 0.0) for s in stages[name]), 1) for k in stages[name][0]}
            print(
                f"{preset:<12} {name:<10} {median:>11.0f} {median / frames:>12.2f} {base / median:>9.2f}  {parts}",
                flush=True,
            )


if __name__ == "__main__":
    main()
