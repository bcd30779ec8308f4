"""Ground-truth benchmark: milliseconds per clip for 2048 tracks x 24 frames at 256x256, on real passes,
and the agreement of the tracks with the renderer's segmentation, position and vector passes.

    python bench/gt.py [--config movi_e] [--scenes 1] [--tracks 2048] [--frames 24] [--resolution 256] [--repeats 20]

Agreement figures are the mean over --scenes scenes (0, 1, ...); compare looks side by side with
--config legacy_movi_e.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tapforge.synth.config import load_config
from tapforge.synth.gt_check import render_pass_agreement
from tapforge.synth.pipeline import SceneRenderer, make_clip
from tapforge.synth.tracks import compute_tracks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="movi_e", help="synth preset or YAML")
    parser.add_argument("--scenes", type=int, default=1, help="scenes whose agreement figures are averaged")
    parser.add_argument("--tracks", type=int, default=2048)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    config = load_config(
        args.config,
        [
            f"render.resolution={args.resolution}",
            "render.samples=1",
            f"scene.num_frames={args.frames}",
            f"tracks.num_tracks={args.tracks}",
        ],
    )
    renderer = SceneRenderer(config)
    rendered = renderer.render(0)  # real passes from Blender
    scene = rendered.scene  # the scene the passes were rendered from
    cams = scene.camera.matrices(scene.num_frames)
    ids = np.array([o.instance_id for o in scene.objects])
    K = scene.camera.intrinsics(scene.resolution)
    times = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        gt = compute_tracks(
            rendered.passes, rendered.poses, ids, cams, K, args.tracks, 0.01, np.random.default_rng(repeat)
        )
        times.append(time.perf_counter() - start)
    print(
        f"ground truth: {args.tracks} tracks x {args.frames} frames at {args.resolution}x{args.resolution}: "
        f"median {1000 * statistics.median(times):.1f} ms/clip (min {1000 * min(times):.1f}, "
        f"{args.repeats} repeats); visible fraction {1 - gt.occluded.mean():.2f}"
    )
    figures = [render_pass_agreement(make_clip(rendered, config), rendered.passes)]
    for index in range(1, args.scenes):
        other = renderer.render(index)
        figures.append(render_pass_agreement(make_clip(other, config), other.passes))
    mean = {key: float(np.mean([f[key] for f in figures])) for key in figures[0]}
    print(
        f"agreement with the render passes ({args.config}, mean of {args.scenes} scenes): "
        + ", ".join(f"{k} {v:.4g}" for k, v in mean.items())
    )


if __name__ == "__main__":
    main()
