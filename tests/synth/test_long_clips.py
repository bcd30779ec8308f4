"""Long clips end to end: a few hundred frames rendered for real, ground truth checked against the render passes
across the whole clip, memory that does not hold the clip's passes, and the clip's motion statistics."""

from __future__ import annotations

import numpy as np
import pytest

from tapforge.synth.config import load_config

LONG = ["render.resolution=48", "render.samples=1", "scene.num_frames=240", "tracks.num_tracks=256"]


@pytest.fixture(scope="module")
def long_clip():
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    from tapforge.synth.pipeline import SceneRenderer, make_clip

    config = load_config("long_movi_test", LONG)
    rendered = SceneRenderer(config).render(0)
    return config, rendered, make_clip(rendered, config)


@pytest.mark.slow
def test_a_long_clip_agrees_with_its_render_passes_across_the_whole_clip(long_clip):
    from tapforge.synth.gt_check import render_pass_agreement

    config, rendered, clip = long_clip
    assert clip.num_frames == 240 and clip.tracks.shape == (256, 240, 2)
    for start in (0, 80, 160):  # the beginning, the middle and the end of the clip, each on its own
        frames = slice(start, start + 80)
        window = type(clip)(
            key=clip.key,
            video=np.asarray(clip.video)[frames],
            tracks=clip.tracks[:, frames],
            occluded=clip.occluded[:, frames],
            tracks_3d=clip.tracks_3d[:, frames],
            object_ids=clip.object_ids,
            camera=dict(clip.camera, world_to_cam_opencv=clip.camera["world_to_cam_opencv"][frames]),
        )
        passes = {k: v[frames] for k, v in rendered.passes.items()}
        figures = render_pass_agreement(window, passes)
        print(start, figures)
        assert figures["visible_points"] > 1000 and figures["visible_segmentation_match"] > 0.9
        assert figures["visible_position_error_px"] < 1.0
        assert figures["hidden_plainly_visible"] < 0.05
        assert figures["flow_error_px"] < 0.1
    # queries are drawn over the whole clip, not only its first frames
    query_frames = clip.query[:, 0]
    assert (query_frames < 80).any() and (query_frames >= 160).any()


@pytest.mark.slow
def test_a_long_clip_stays_alive(long_clip):
    _, _, clip = long_clip
    motion = clip.meta["motion"]
    print(motion)
    assert motion["moving_frame_share"] > 0.9
    assert motion["reappearing_share"] > 0.05 and motion["longest_gap"] >= 10
    assert motion["reentering_share"] > 0.01
