"""Multi-view cost: seconds per clip for 1, 2, 4 and 8 views of the same scenes, side by side in one run, and the
share of the per-view cost that is path tracing.

Each scene is rendered as a render job's worker does (`render_views`: scene script and physics, Blender build,
then per view the path tracing, aux passes, ground truth and encoding), with the views on a ring (`render.views`,
the multiview_movi_e rig) and one Blender session for all counts. "once" is what a clip costs whatever its views
(scene script, physics, scene build); "per view" is the rest divided by the views; "path tracing" is its share of
the per-view cost (the rest: the exact aux passes, ground truth and encoding). Figures are medians over
``--scenes`` scenes (the same scenes for every count).

``--sheet PNG`` also writes a contact sheet: the 4 views of two clips at three frames each, the tracks of the same
points drawn in every view (one colour per point), for a look at the views' agreement, and prints each view's
ground truth against its own render passes (`tapforge.synth.gt_check.view_agreement`, as bench/gt.py measures a
single view).

    python bench/multiview.py [--resolution 64] [--samples 16] [--frames 12] [--scenes 3] [--sheet sheet.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np

from tapforge.synth.config import load_config
from tapforge.synth.pipeline import SceneRenderer, make_clips
from tapforge.synth.render_job import render_views

ONCE = ("scene_script", "scene_build", "deformation")


def measure(args, renderer_for) -> None:
    print(f"multiview_movi_e, ring rig, {args.resolution}x{args.resolution}, {args.samples} spp, {args.frames} frames")
    print(
        f"{'views':>5} {'s/clip':>7} {'s/view':>7} {'x 1 view':>8} {'once s':>7} {'per view s':>10} "
        f"{'path tracing':>12}  per view: aux, ground truth, encode (s)"
    )
    base = None
    for count in args.views:
        config = load_config("multiview_movi_e", [*args.sets, f"render.views.count={count}"])
        renderer = renderer_for(config)
        walls, timings = [], []
        for scene in range(args.scenes):
            start = time.perf_counter()
            _, timing = render_views(renderer, config, scene)
            walls.append(time.perf_counter() - start)
            timings.append(timing)
        wall = statistics.median(walls)
        stage = {k: statistics.median(t.get(k, 0.0) for t in timings) for k in {k for t in timings for k in t}}
        once = sum(stage.get(k, 0.0) for k in ONCE)
        per_view = (wall - once) / count
        base = base or wall
        rest = ", ".join(f"{stage.get(k, 0.0) / count:.2f}" for k in ("aux_passes", "ground_truth", "encode"))
        print(
            f"{count:>5} {wall:7.2f} {wall / count:7.2f} {wall / base:8.2f} {once:7.2f} {per_view:10.2f} "
            f"{stage['path_tracing'] / count / per_view:12.1%}  {rest}",
            flush=True,
        )


def contact_sheet(path: str, args) -> None:
    """The 4 views of two clips at their first, middle and last frames, the same points in every view."""
    from PIL import Image

    from tapforge.base.drawing import draw_tracks, enlarge, track_colors
    from tapforge.synth.gt_check import view_agreement

    sets = [*args.sets, f"render.resolution={args.sheet_resolution}", "render.views.count=4", "tracks.num_tracks=2048"]
    config = load_config("multiview_movi_e", [*sets, "scene.num_frames=24"])
    renderer = SceneRenderer(config)  # a session of its own: another resolution
    rows = []
    names = ("visible_segmentation_match", "visible_position_error_px", "hidden_plainly_visible", "flow_error_px")
    print(
        f"{'clip':>4} {'view':>4} {'visible':>7} {'seg match':>9} {'pos err px':>10} {'hidden vis':>10} {'flow px':>8}"
    )
    for scene in range(2):
        rendered = renderer.render(scene)
        try:
            clips = make_clips(rendered, config)
            for v, figures in enumerate(view_agreement(clips, rendered)):
                values = " ".join(f"{figures[k]:>{w}.4f}" for k, w in zip(names, (9, 10, 10, 8)))
                print(f"{scene:>4} {v:>4} {figures['visible_points']:>7.0f} {values}")
            clips = [dataclasses.replace(c, video=np.asarray(c.video)) for c in clips]  # before the files go
        finally:
            rendered.close()
        # points on objects seen by at least two views, up to 12 of them, one colour each in every view
        seen = np.stack([(~c.occluded).any(1) for c in clips]).sum(0)
        rows_of = np.flatnonzero((seen >= 2) & (clips[0].object_ids > 0))[:12]
        colors = track_colors(len(rows_of))
        frames = [0, config.scene.num_frames // 2, config.scene.num_frames - 1]
        drawn = []
        for clip in clips:
            video, factor = enlarge(np.asarray(clip.video), 192)
            overlay = draw_tracks(
                video, clip.tracks[rows_of] * factor, clip.occluded[rows_of], colors, trail=0, radius=5
            )
            drawn.append(overlay[frames])
        for k in range(len(frames)):
            rows.append(np.concatenate([views[k] for views in drawn], axis=1))
    sheet = np.concatenate(rows, axis=0)
    Image.fromarray(sheet).save(path)
    print(f"contact sheet: {path} (rows: clip 0 then clip 1, frames {frames}; columns: views 0-3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--tracks", type=int, default=1024)
    parser.add_argument("--scenes", type=int, default=3, help="scenes per view count (medians)")
    parser.add_argument("--views", type=int, nargs="*", default=[1, 2, 4, 8], help="view counts (none: only --sheet)")
    parser.add_argument("--sheet", help="also write a contact sheet PNG of 4 views of two clips (24 frames)")
    parser.add_argument("--sheet-resolution", type=int, default=128)
    args = parser.parse_args()
    args.sets = [
        f"render.resolution={args.resolution}",
        f"render.samples={args.samples}",
        f"scene.num_frames={args.frames}",
        f"tracks.num_tracks={args.tracks}",
    ]
    session: list[SceneRenderer] = []

    def renderer_for(config) -> SceneRenderer:  # one Blender session for every view count
        renderer = SceneRenderer(config, share=session[0] if session else None)
        if not session:
            session.append(renderer)
        return renderer

    if args.views:
        measure(args, renderer_for)
    if args.sheet:
        contact_sheet(args.sheet, args)


if __name__ == "__main__":
    main()
