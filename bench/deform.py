"""Deforming-surface benchmark: what movi_deform costs per clip against rigid movi_e at the same settings, and how
well its tracks agree with the render passes, by kind of surface.

    python bench/deform.py [--scenes 3] [--resolution 128] [--frames 24] [--samples 16] [--tracks 1024]

Renders scenes 0 .. --scenes-1 of both presets alternately in one process (one Blender session each), so the two
costs are measured side by side. Prints the median seconds per clip of each and their ratio, the median time of
each stage (the deformation stage reads the deformed meshes and runs the cloth simulation), and the
`tapforge.synth.gt_check` agreement figures of the movi_deform scenes (means weighted by visible points) for the
background, rigid objects, procedurally deformed objects and cloth.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tapforge.synth.config import load_config
from tapforge.synth.gt_check import agreement_by_kind
from tapforge.synth.pipeline import SceneRenderer, make_clip

FIGURES = (
    "visible_segmentation_match",
    "visible_position_error_px",
    "hidden_covered",
    "hidden_plainly_visible",
    "flow_error_px",
    "median_motion_px",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--tracks", type=int, default=1024)
    args = parser.parse_args()
    overrides = [
        f"render.resolution={args.resolution}",
        f"render.samples={args.samples}",
        f"scene.num_frames={args.frames}",
        f"tracks.num_tracks={args.tracks}",
    ]
    rigid = SceneRenderer(load_config("movi_e", overrides))
    renderers = {"movi_e": rigid, "movi_deform": SceneRenderer(load_config("movi_deform", overrides), share=rigid)}
    seconds: dict[str, list[float]] = {p: [] for p in renderers}
    stages: dict[str, dict[str, list[float]]] = {p: {} for p in renderers}
    by_kind: dict[str, list[dict[str, float]]] = {}
    for index in range(args.scenes):
        for preset, renderer in renderers.items():
            start = time.perf_counter()
            rendered = renderer.render(index)
            gt_start = time.perf_counter()
            clip = make_clip(rendered, renderer.config)
            timing = dict(rendered.timing, ground_truth=time.perf_counter() - gt_start)
            seconds[preset].append(time.perf_counter() - start)
            for stage, value in timing.items():
                stages[preset].setdefault(stage, []).append(value)
            if preset == "movi_deform":
                for kind, figures in agreement_by_kind(clip, rendered.passes, rendered.scene).items():
                    by_kind.setdefault(kind, []).append(figures)
    median = {p: statistics.median(s) for p, s in seconds.items()}
    print(f"{args.scenes} scenes each, {args.resolution}x{args.resolution}, {args.frames} frames, {args.samples} spp:")
    for preset in renderers:
        parts = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in stages[preset].items())
        print(f"  {preset:<12} median {median[preset]:.1f} s/clip ({parts})")
    print(f"  movi_deform / movi_e: {median['movi_deform'] / median['movi_e']:.2f}x")
    print("agreement with the render passes (movi_deform, by kind of surface, weighted by visible points):")
    print("  " + "kind".ljust(11) + "points".rjust(8) + "".join(f.rjust(28) for f in FIGURES))
    for kind, figures in by_kind.items():
        points = [f["visible_points"] for f in figures]
        weighted = [np.average([f[k] for f in figures], weights=points) for k in FIGURES]
        print("  " + kind.ljust(11) + f"{int(sum(points)):>8}" + "".join(f"{v:>28.4f}" for v in weighted))


if __name__ == "__main__":
    main()
