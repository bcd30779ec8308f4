"""A scene of every preset renders (small size) and yields consistent ground truth."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow

PRESETS = ["movi_a", "movi_b", "movi_e", "panning_movi_e", "movi_f", "long_clip", "movi_deform", "long_movi"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_renders_a_scene(preset):
    pytest.importorskip("bpy", reason="bpy is needed to render")
    from tapforge.synth.config import load_config
    from tapforge.synth.pipeline import SceneRenderer, make_clip

    frames = 12 if preset in ("long_clip", "long_movi") else 3
    few = "scene.num_initial_objects=[2,3]" if preset == "long_movi" else "scene.num_static_objects=[2,3]"
    config = load_config(
        preset,
        ["render.resolution=[40,32]", "render.samples=1", f"scene.num_frames={frames}", "tracks.num_tracks=64", few],
    )
    rendered = SceneRenderer(config).render(0)
    clip, timing = make_clip(rendered, config), rendered.timing
    assert clip.video.shape == (frames, 32, 40, 3)
    assert clip.tracks.shape == (64, frames, 2) and np.isfinite(clip.tracks).all()
    assert (~clip.occluded).sum(1).min() >= 1  # every track is visible at its query frame
    assert timing["path_tracing"] > 0 and set(clip.object_ids) >= {0}
    positions = np.array(clip.meta["object_poses"]["positions"])
    assert (positions[..., 2] > -0.5).all()  # nothing falls through the floor
    if preset == "movi_a":
        assert len(set(np.array(clip.camera["cam_to_world_blender"])[:, 0, 3].round(6))) == 1  # fixed camera
    if preset == "movi_deform":
        objects = clip.meta["scene"]["objects"]
        assert any(o["kind"] == "Cloth" for o in objects) and all(
            o["deforms"] == bool(o["deform"]) or o["kind"] == "Cloth" for o in objects
        )
    if preset in ("movi_e", "panning_movi_e", "long_clip", "movi_deform", "long_movi"):
        cams = np.array(clip.camera["cam_to_world_blender"])
        assert not np.allclose(cams[0], cams[-1])  # the camera moves
    if preset == "long_movi":  # it rolls: the camera's x axis leaves the floor's plane
        assert np.abs(np.array(clip.camera["cam_to_world_blender"])[:, 2, 0]).max() > 0.01
        assert any(o["metadata"].get("mover") for o in clip.meta["scene"]["objects"])
