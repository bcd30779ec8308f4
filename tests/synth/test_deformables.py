"""Deforming surfaces: procedural deformations and cloth, with tracks checked against the renderer's passes."""

from pathlib import Path

import numpy as np
import pytest

from tapforge.base.errors import TapforgeError
from tapforge.synth.config import load_config
from tapforge.synth.scene import Cloth, Deform, Scene, Shape, SoftBody

EXAMPLE = Path(__file__).parents[2] / "examples" / "scenes" / "cloth_drape.yaml"
SMALL = ["render.resolution=64", "render.samples=4", "scene.num_frames=8", "tracks.num_tracks=2048", "scene.twist=3.0"]


def test_deform_and_cloth_arguments_are_checked():
    with pytest.raises(TapforgeError, match="Deform kind 'melt'"):
        Deform("melt")
    with pytest.raises(TapforgeError, match="axis 'W'"):
        Deform("bend", axis="W")
    with pytest.raises(TapforgeError, match="pin 'top'"):
        Cloth(pin="top")
    with pytest.raises(TapforgeError, match="stiffness must be in"):
        SoftBody("sphere", stiffness=2.0)
    assert SoftBody("sphere").rigid and SoftBody("sphere").deforms and SoftBody("sphere").two_sided
    sheet = Cloth(size=2.0, aspect=0.5, resolution=9, pin="-x")
    vertices, faces, volume = sheet.mesh()
    assert vertices.shape == (9 * 4, 3) and len(faces) == 2 * 8 * 3 and volume == 0.0
    assert np.ptp(vertices, 0).tolist() == [2.0, 1.0, 0.0]
    assert (vertices[sheet.pinned_vertices(), 0] == -1.0).all() and len(sheet.pinned_vertices()) == 4


def test_physics_leaves_cloth_to_blender():
    from tapforge.synth.physics import PyBullet

    scene = Scene(num_frames=4, simulator_factory=PyBullet)
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


def _checked_against_passes(clip, rendered, num_surfaces: int) -> dict:
    """Check that the rendered surfaces are the tracked meshes; the render-pass agreement by kind of surface."""
    from tapforge.synth.gt_check import agreement_by_kind, surface_reconstruction_error

    errors = surface_reconstruction_error(rendered.passes, rendered.surfaces)
    assert len(errors) == num_surfaces and max(errors.values()) < 1e-4, errors
    figures = agreement_by_kind(clip, rendered.passes, rendered.scene)
    print(figures)
    return figures


@pytest.fixture(scope="module")
def drape():
    pytest.importorskip("bpy", reason="bpy is needed to render")
    from tapforge.synth.pipeline import SceneRenderer, make_clip

    renderer = SceneRenderer(load_config(EXAMPLE, SMALL))
    rendered = renderer.render(0)
    return make_clip(rendered, renderer.config), rendered, renderer


@pytest.mark.slow
def test_tracks_on_cloth_and_deformed_shapes_agree_with_the_render_passes(drape):
    clip, rendered, _ = drape
    figures = _checked_against_passes(clip, rendered, num_surfaces=3)
    assert set(figures) == {"background", "rigid", "cloth", "deformer", "soft_body"}
    for kind, f in figures.items():  # the rigid thresholds, for every kind of surface
        assert f["visible_points"] > 100 and f["visible_segmentation_match"] > 0.9, kind
        assert f["visible_position_error_px"] < 1.0 and f["hidden_plainly_visible"] < 0.05, kind
        assert f["flow_error_px"] < 0.1, kind
    for kind in ("cloth", "deformer", "soft_body"):  # the surfaces move, and the tracks follow them, not a rigid pose
        assert figures[kind]["median_motion_px"] > 0.1
        assert figures[kind]["flow_error_px"] < 0.25 * figures[kind]["median_motion_px"]
    cloth = next(o for o in rendered.scene.objects if not o.rigid)
    sheet = rendered.surfaces[cloth.instance_id]  # the cloth falls onto the block
    assert sheet.vertices[-1, :, 2].mean() < sheet.vertices[0, :, 2].mean() - 0.2
    described = {o["kind"] + ("+deform" if o["deform"] else ""): o for o in clip.meta["scene"]["objects"]}
    assert described["Cloth"]["deforms"] and described["Cloth"]["motion"] == "simulated in Blender"
    assert [d["kind"] for d in described["Shape+deform"]["deform"]] == ["twist", "bend"]
    assert not described["Shape"]["deforms"]


@pytest.mark.slow
def test_deforming_scenes_are_deterministic(drape):
    from tapforge.synth.pipeline import make_clip

    clip, _, renderer = drape
    again = make_clip(renderer.render(0), renderer.config)
    assert np.array_equal(clip.tracks, again.tracks) and np.array_equal(clip.occluded, again.occluded)
    assert np.array_equal(clip.video, again.video)


@pytest.mark.slow
def test_a_deformation_that_changes_topology_is_refused(drape):
    from tapforge.synth.pipeline import build_scene

    _, _, renderer = drape
    scene = build_scene(renderer.config, 5)
    renderer.blender.build(scene)
    _, capsule = next((spec, obj) for spec, obj in renderer.blender.deforming if spec.deform)
    decimate = capsule.modifiers.new("decimate", "DECIMATE")
    decimate.ratio = 1.0
    decimate.keyframe_insert("ratio", frame=0)
    decimate.ratio = 0.3
    decimate.keyframe_insert("ratio", frame=4)
    with pytest.raises(TapforgeError, match="object 4: its deformation changes the mesh's topology at frame 1"):
        renderer.blender.read_surfaces(scene.num_frames)


ANIMATED_SCENE = """
import numpy as np

from tapforge.synth.scene import AnimatedMesh, Camera, Dome, Emission, Floor, Principled, Shape, Sun, Texture


def build(scene, rng, cfg):
    scene.camera = Camera(focal_length=35).look_at((0.0, -6.0, 2.5), (0.0, 0.0, 1.0))
    scene.floor = Floor(material=Principled(texture=Texture.generated("dead_leaves", 1, tile=20)))
    scene.background = Dome(Emission(strength=1.2, texture=Texture.generated("mixture", 2, tile=40)))
    scene += Sun(direction=(0.4, -0.3, 0.85), strength=2.0)
    column = scene.add(AnimatedMesh(path=PATH, size=2.0, speed=2.0, position=(-0.6, 0.0, 1.0),
                                    material=Principled(texture=Texture.generated("dead_leaves", 3, tile=0.5))))
    column.keyframe(0, position=(-0.6, 0.0, 1.0)).keyframe(scene.num_frames - 1, position=(-0.2, 0.0, 1.0))
    blob = scene.add(Shape("blob", size=0.9, static=True, position=(1.0, 0.3, 0.45), params={"seed": 3},
                           material=Principled(texture=Texture.generated("mosaic", 4, tile=0.5, size=256))))
    frames = np.arange(scene.num_frames)[:, None, None]
    blob.animate_vertices(blob.mesh()[0] * (1 + 0.15 * np.sin(2 * np.pi * frames / 8) * np.array([1, 1, -1])))
    scene += Shape("sphere", size=0.6, position=(2.5, -1.5, 0.3), velocity=(-3.0, 0.0, 0.0), friction=0.8,
                   material=Principled(texture=Texture.generated("spectral", 5, tile=0.4, size=256)))
"""


@pytest.fixture(scope="module")
def animated(tmp_path_factory, drape):
    import subprocess
    import sys

    from tapforge.synth.pipeline import SceneRenderer, make_clip

    folder = tmp_path_factory.mktemp("animated")
    glb = folder / "column.glb"
    subprocess.run(
        [sys.executable, str(Path(__file__).with_name("skinned_gltf.py")), str(glb)], check=True, capture_output=True
    )
    (folder / "scene.py").write_text(f"PATH = {str(glb)!r}\n" + ANIMATED_SCENE)
    (folder / "scene.yaml").write_text("inherit: base\nscene:\n  script: scene.py\n")
    renderer = SceneRenderer(load_config(folder / "scene.yaml", SMALL[:-1]), share=drape[2])
    rendered = renderer.render(0)
    return make_clip(rendered, renderer.config), rendered


@pytest.mark.slow
def test_tracks_on_animated_meshes_agree_with_the_render_passes(animated):
    from tapforge.synth.gt_check import render_pass_agreement

    clip, rendered = animated
    figures = _checked_against_passes(clip, rendered, num_surfaces=2)
    f = figures["animated"]  # the skinned glTF column and the blob whose vertices the script moves
    assert f["visible_points"] > 300 and f["visible_segmentation_match"] > 0.9
    assert f["visible_position_error_px"] < 1.0 and f["hidden_plainly_visible"] < 0.05
    assert f["median_motion_px"] > 0.1 and f["flow_error_px"] < 0.25 * f["median_motion_px"]
    column, blob = rendered.scene.objects[:2]
    assert render_pass_agreement(clip, rendered.passes, [column.instance_id])["median_motion_px"] > 0.1
    top = rendered.surfaces[column.instance_id].vertices[..., 2].argmax(1)
    assert np.ptp(rendered.surfaces[column.instance_id].vertices[np.arange(8), top, 1]) > 0.1  # it bends
    described = clip.meta["scene"]["objects"]
    assert described[0]["kind"] == "AnimatedMesh" and described[0]["deforms"] and described[1]["deforms"]
