"""Deforming surfaces: procedural deformations and cloth, with tracks checked against the renderer's passes."""
from pathlib import Path

import numpy as np
import pytest

from synth.config import load_config
from synth.scene import Cloth, Deform, Scene, Shape
from tapforge.errors import TapforgeError

EXAMPLE = Path(__file__).parents[1] / "examples" / "scenes" / "cloth_drape.yaml"
SMALL = ["render.resolution=64", "render.samples=4", "scene.num_frames=8", "tracks.num_tracks=512", "scene.twist=3.0"]


def test_deform_and_cloth_arguments_are_checked():
    with pytest.raises(TapforgeError, match="Deform kind 'melt'"):
        Deform("melt")
    with pytest.raises(TapforgeError, match="axis 'W'"):
        Deform("bend", axis="W")
    with pytest.raises(TapforgeError, match="pin 'top'"):
        Cloth(pin="top")
    sheet = Cloth(size=2.0, aspect=0.5, resolution=9, pin="-x")
    vertices, faces, volume = sheet.mesh()
    assert vertices.shape == (9 * 4, 3) and len(faces) == 2 * 8 * 3 and volume == 0.0
    assert np.ptp(vertices, 0).tolist() == [2.0, 1.0, 0.0]
    assert (vertices[sheet.pinned_vertices(), 0] == -1.0).all() and len(sheet.pinned_vertices()) == 4


def test_physics_leaves_cloth_to_blender():
    scene = Scene(num_frames=4)
    ball = scene.add(Shape("sphere", position=(0, 0, 2)))
    sheet = scene.add(Cloth(position=(3, 0, 2)))
    with pytest.raises(TapforgeError, match="simulated by Blender"):
        scene.simulator.place_without_overlap(sheet, ((0, 0, 0), (1, 1, 1)), np.random.default_rng(0))
    scene.simulator.run()
    positions, _ = scene.object_poses()
    assert positions[0, -1, 2] < 2.0 and (positions[1] == [3, 0, 2]).all()  # the ball falls, the sheet waits
    assert sheet.describe()["motion"] == "simulated in Blender" and sheet.describe()["deforms"]
    assert not ball.deforms and Shape("cube", deform=(Deform("twist"),)).deforms
    scene.close()


@pytest.fixture(scope="module")
def drape():
    pytest.importorskip("bpy", reason="bpy is needed to render")
    from synth.pipeline import SceneRenderer

    renderer = SceneRenderer(load_config(EXAMPLE, SMALL))
    clip, _ = renderer.render(0)
    return clip, renderer


@pytest.mark.slow
def test_tracks_on_cloth_and_deformed_shapes_agree_with_the_render_passes(drape):
    from synth.gt_check import agreement_by_kind

    clip, renderer = drape
    figures = agreement_by_kind(clip, renderer.last_passes, renderer.last_scene)
    print(figures)
    assert set(figures) == {"background", "rigid", "cloth", "deformer"}
    for kind, f in figures.items():  # the rigid thresholds, for every kind of surface
        assert f["visible_points"] > 100 and f["visible_segmentation_match"] > 0.9, kind
        assert f["visible_position_error_px"] < 1.0 and f["hidden_plainly_visible"] < 0.05, kind
        assert f["flow_error_px"] < 0.1, kind
    for kind in ("cloth", "deformer"):  # the surfaces move, and the tracks follow them, not a rigid pose
        assert figures[kind]["median_motion_px"] > 0.1
        assert figures[kind]["flow_error_px"] < 0.25 * figures[kind]["median_motion_px"]
    cloth = next(o for o in renderer.last_scene.objects if not o.rigid)
    sheet = renderer.last_surfaces[cloth.instance_id]  # the cloth falls onto the block
    assert sheet.vertices[-1, :, 2].mean() < sheet.vertices[0, :, 2].mean() - 0.2
    described = {o["kind"] + ("+deform" if o["deform"] else ""): o for o in clip.meta["scene"]["objects"]}
    assert described["Cloth"]["deforms"] and described["Cloth"]["motion"] == "simulated in Blender"
    assert [d["kind"] for d in described["Shape+deform"]["deform"]] == ["twist", "bend"]
    assert not described["Shape"]["deforms"]


@pytest.mark.slow
def test_deforming_scenes_are_deterministic(drape):
    clip, renderer = drape
    again, _ = renderer.render(0)
    assert np.array_equal(clip.tracks, again.tracks) and np.array_equal(clip.occluded, again.occluded)
    assert np.array_equal(clip.video, again.video)


@pytest.mark.slow
def test_a_deformation_that_changes_topology_is_refused(drape):
    from synth.pipeline import build_scene

    _, renderer = drape
    scene = build_scene(renderer.config, 5)
    renderer.blender.build(scene)
    _, capsule = renderer.blender.deforming[-1]
    decimate = capsule.modifiers.new("decimate", "DECIMATE")
    decimate.ratio = 1.0
    decimate.keyframe_insert("ratio", frame=0)
    decimate.ratio = 0.3
    decimate.keyframe_insert("ratio", frame=4)
    with pytest.raises(TapforgeError, match="object 4: its deformation changes the mesh's topology at frame 1"):
        renderer.blender.read_surfaces(scene.num_frames)
