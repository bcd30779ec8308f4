"""The natural look: generated textures everywhere, a trackable dome, smooth shading, controlled exposure."""

import numpy as np
import pytest

from tapforge.synth.config import load_config
from tapforge.synth.textures import FAMILIES
from tapforge.synth.tracks import SKY_DEPTH

SPHERE = [
    "scene.shapes=[sphere]",
    "scene.num_static_objects=0",
    "scene.num_dynamic_objects=1",
    "scene.object_scale=3.0",
    "scene.camera=fixed",
    "render.resolution=64",
    "render.samples=2",
    "scene.num_frames=3",
    "tracks.num_tracks=512",
]


def test_every_surface_is_textured_and_the_looks_share_their_geometry():
    pytest.importorskip("pybullet", reason="the movi script places objects with PyBullet")
    from tapforge.synth.pipeline import build_scene
    from tapforge.synth.scene import Dome, Sky

    natural, legacy = (build_scene(load_config(preset), 3) for preset in ("movi_e", "legacy_movi_e"))
    assert natural.metadata["appearance"] == "natural" and legacy.metadata["appearance"] == "legacy"
    assert all(o.material.texture.source in FAMILIES and o.material.texture.seed is not None for o in natural.objects)
    assert natural.floor.material.texture.source in FAMILIES and isinstance(natural.background, Dome)
    assert natural.background.material.texture.source in FAMILIES
    assert isinstance(legacy.background, Sky) and not any(
        o.material.texture and o.material.texture.source in FAMILIES for o in legacy.objects
    )
    for a, b in zip(natural.objects, legacy.objects, strict=True):
        assert (a.shape, a.params, a.size, a.metadata, a.material.label) == (
            b.shape,
            b.params,
            b.size,
            b.metadata,
            b.material.label,
        )
    assert all(np.array_equal(x, y) for x, y in zip(natural.object_poses(), legacy.object_poses()))
    assert np.array_equal(natural.camera.matrices(24), legacy.camera.matrices(24))
    assert natural.lights == legacy.lights
    # a texture repeats at most once over an object, and every ~16-50 units on floor and dome (aperiodic in view)
    assert all(o.material.texture.scale * o.size == pytest.approx(1.0) for o in natural.objects)
    assert 1 / 32 <= natural.floor.material.texture.scale <= 1 / 16
    assert 1 / 50 <= natural.background.material.texture.scale <= 1 / 30


def _sphere_render(appearance):
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    from tapforge.synth.pipeline import SceneRenderer, make_clip

    config = load_config("movi_e", SPHERE + [f"scene.appearance={appearance}"])
    rendered = SceneRenderer(config).render(1)  # the sphere fills ~300 pixels of every frame
    return make_clip(rendered, config), rendered.passes, rendered.scene.object_poses()[0][0]


@pytest.fixture(scope="module")
def spheres():
    return {look: _sphere_render(look) for look in ("natural", "legacy")}


def _normal_errors(clip, passes, centre):
    """Degrees between the renderer's shading normal and the true sphere normal at the sphere's pixels."""
    on_sphere = passes["object_index"] == 1
    t = np.nonzero(on_sphere)[0]
    radial = passes["position"][on_sphere] - centre[t]
    radial /= np.linalg.norm(radial, axis=-1, keepdims=True)
    normal = passes["normal"][on_sphere] / np.linalg.norm(passes["normal"][on_sphere], axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip((radial * normal).sum(-1), -1, 1)))


def test_smooth_shapes_are_shaded_with_smooth_normals(spheres):
    natural = _normal_errors(*spheres["natural"])
    flat = _normal_errors(*spheres["legacy"])
    assert natural.size > 200
    assert np.percentile(natural, 99) < 0.5  # the interpolated normal is the sphere's own, to a fraction of a degree
    assert np.median(flat) > 3 * np.median(natural)  # flat shading (the legacy look) is measurably not


def test_facing_away_on_a_smooth_sphere_follows_the_true_normal(spheres):
    clip, passes, centre = spheres["natural"]
    on_sphere = clip.object_ids == 1
    assert on_sphere.sum() > 50
    w2c = np.array(clip.camera["world_to_cam_opencv"])
    centre_cam = np.einsum("tij,tj->ti", w2c[:, :3, :3], centre) + w2c[:, :3, 3]
    points = clip.tracks_3d[on_sphere].astype(np.float64)  # [N,T,3]; the camera centre is the origin
    radial = points - centre_cam[None]
    cosine = (radial * points).sum(-1) / np.linalg.norm(radial, axis=-1) / np.linalg.norm(points, axis=-1)
    away, toward = cosine > 0.02, cosine < -0.02  # clear of the silhouette, where rounding decides
    assert away.any() or toward.any()
    assert clip.occluded[on_sphere][away].all()
    # points turned toward the camera and in frame are visible unless another surface covers them
    size = clip.video.shape[1]
    xy = clip.tracks[on_sphere]
    inside = (xy >= 0).all(-1) & (xy < size).all(-1)
    assert not clip.occluded[on_sphere][toward & inside].mean() > 0.05


def test_the_dome_fills_the_background_and_is_tracked_as_static(spheres):
    clip, passes, _ = spheres["natural"]
    assert (passes["depth_z"] < SKY_DEPTH).all()  # no sky: every pixel is a surface
    background = clip.object_ids == 0
    assert background.any()
    # static background points keep their camera-independent world position: the 3D tracks are one point
    c2w = np.linalg.inv(np.array(clip.camera["world_to_cam_opencv"]))
    world = np.einsum("tij,ntj->nti", c2w[:, :3, :3], clip.tracks_3d[background]) + c2w[None, :, :3, 3]
    assert np.abs(world - world[:, :1]).max() < 1e-3


def test_default_scenes_are_neither_blown_out_nor_crushed():
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    from tapforge.synth.pipeline import SceneRenderer

    # seed 5, scene 1 came out 79% white in the Standard view with the old floor colours
    renderer = SceneRenderer(
        load_config(
            "movi_e",
            ["seed=5", "render.resolution=48", "render.samples=4", "scene.num_frames=3", "tracks.num_tracks=64"],
        )
    )
    for index in range(3):
        video = renderer.render(index).passes["rgb"]
        blown = (video >= 250).all(-1).mean()
        crushed = (video <= 5).all(-1).mean()
        assert blown < 0.02 and crushed < 0.05, (index, blown, crushed)
        assert 40 < video.mean() < 200
