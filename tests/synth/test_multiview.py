"""Multi-view clips: one simulated scene rendered by several cameras, one set of surface points, each view's ground
truth checked against that view's own render passes, world tracks that project onto every view's 2D tracks, a
view is a clip in the shards, and bad views refused in one line before anything renders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tapforge.base.errors import TapforgeError
from tapforge.synth.config import load_config
from tapforge.synth.tracks import project
from tests.conftest import render_command

SMALL = ["render.resolution=40", "render.samples=1", "scene.num_frames=4", "tracks.num_tracks=256"]
FEW = ["scene.num_static_objects=[2,3]", "scene.num_dynamic_objects=[1,2]"]

SCRIPT = """
from dataclasses import dataclass

from tapforge.synth.scene import Camera, Environment, Floor, Principled, Shape, Sun, Texture


@dataclass
class Config:
    mode: str = "facing"


def build(scene, rng, cfg):
    scene.floor = Floor(material=Principled(texture=Texture.generated("dead_leaves", seed=1, tile=2.0)))
    scene.background = Environment(color=(0.6, 0.7, 0.8))  # not trackable: every point is on the floor or block
    scene += Sun(direction=(0.3, -0.2, 0.9))
    block = Principled(texture=Texture.generated("mixture", seed=2, tile=0.5))
    scene.add(Shape("cube", size=2.0, position=(0, 0, 1), static=True, material=block))
    a, b = Camera(35).look_at((6, 0, 1.5), (0, 0, 1)), Camera(35).look_at((-6, 0, 1.5), (0, 0, 1))
    if cfg.mode == "inside":
        a = Camera(35).look_at((0.2, 0.1, 1.0), (6, 0, 1))
    elif cfg.mode == "away":
        b = Camera(35).look_at((-6, 0, 1.5), (-12, 0, 1.5))
    elif cfg.mode == "none":
        scene.views = []
    if cfg.mode != "none":
        scene.views = [a, b]
"""


def _script_config(tmp_path: Path, mode: str, *sets: str):
    (tmp_path / "facing.py").write_text(SCRIPT)
    (tmp_path / "facing.yaml").write_text(f"inherit: base\nscene:\n  script: facing.py\n  mode: {mode}\n")
    return load_config(tmp_path / "facing.yaml", [*SMALL, "scene.num_frames=2", "tracks.num_tracks=192", *sets])


@pytest.fixture(scope="module")
def ring():
    """A multiview_movi_e scene (4 still cameras on a ring) rendered for real, its clips one per view."""
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    from tapforge.synth.pipeline import SceneRenderer, make_clips

    config = load_config("multiview_movi_e", [*SMALL, *FEW, "outputs.passes=[depth,segmentation]"])
    renderer = SceneRenderer(config)
    rendered = renderer.render(2)
    return rendered, make_clips(rendered, config), renderer


@pytest.mark.slow
def test_every_view_agrees_with_its_own_render_passes(ring):
    from tapforge.synth.gt_check import view_agreement

    rendered, clips, _ = ring
    assert len(clips) == 4 and rendered.timing["path_tracing"] > 0
    for v, figures in enumerate(view_agreement(clips, rendered)):
        print(v, figures)
        assert figures["visible_points"] > 200 and figures["visible_segmentation_match"] > 0.9
        assert figures["visible_position_error_px"] < 1.0
        assert figures["hidden_plainly_visible"] < 0.1
        assert figures["flow_error_px"] < 0.1


@pytest.mark.slow
def test_the_world_tracks_projected_with_each_views_camera_give_its_2d_tracks(ring):
    _, clips, _ = ring
    world = clips[0].tracks_world.astype(np.float64)
    for v, clip in enumerate(clips):
        np.testing.assert_array_equal(clip.tracks_world, clips[0].tracks_world)  # one set of points, same rows
        np.testing.assert_array_equal(clip.object_ids, clips[0].object_ids)
        w2c = np.asarray(clip.camera["world_to_cam_opencv"])
        camera_points = np.einsum("tij,ntj->nti", w2c[:, :3, :3], world) + w2c[:, :3, 3]
        np.testing.assert_allclose(camera_points, clip.tracks_3d, atol=1e-4)
        front = camera_points[..., 2] > 0.1
        assert np.abs(project(camera_points, np.asarray(clip.camera["K"])) - clip.tracks)[front].max() < 1e-3
        assert clip.key == f"scene-0000002_view-{v:02d}" and clip.meta["view"] == {
            "scene": "scene-0000002",
            "index": v,
            "count": 4,
        }
    positions = np.array([np.asarray(c.camera["cam_to_world_blender"])[0, :3, 3] for c in clips])
    np.testing.assert_allclose(np.linalg.norm(positions[:, :2], axis=1), 12.0)  # the ring: 12 m out, 6 m up
    np.testing.assert_allclose(positions[:, 2], 6.0)


@pytest.mark.slow
def test_queries_are_visible_in_their_view_and_points_are_drawn_over_all_views(ring):
    _, clips, _ = ring
    drawn = np.zeros(len(clips[0].object_ids), int)
    for clip in clips:
        seen = ~np.isnan(clip.query[:, 0])
        assert seen.any() and (seen == (~clip.occluded).any(1)).all()  # NaN exactly where the view never sees it
        rows = np.flatnonzero(seen)
        t = clip.query[rows, 0].astype(int)
        assert not clip.occluded[rows, t].any()
        assert np.abs(clip.tracks[rows, t] - clip.query[rows][:, [2, 1]]).max() < 1e-3
        centre = np.abs(clip.query[rows][:, 1:] % 1 - 0.5).max(1) < 1e-4  # drawn here: a pixel centre
        drawn[rows[centre]] += 1
    assert (drawn >= 1).all()  # every point came from a pixel of some view
    assert all((np.abs(c.query[:, 1:] % 1 - 0.5) < 1e-4).all(1).sum() > 20 for c in clips)  # from every view


@pytest.mark.slow
def test_a_point_on_the_front_of_an_object_is_seen_by_the_camera_it_faces_and_hidden_from_the_one_behind(tmp_path):
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    from tapforge.synth.gt_check import view_agreement
    from tapforge.synth.pipeline import SceneRenderer, make_clips

    config = _script_config(tmp_path, "facing")
    rendered = SceneRenderer(config).render(0)
    a, b = clips = make_clips(rendered, config)
    x = a.tracks_world[:, 0, 0]
    on_block = a.object_ids == 1
    front, back = on_block & (x > 0.99), on_block & (x < -0.99)  # the faces towards camera a (+x) and b (-x)
    assert front.sum() > 10 and back.sum() > 10
    assert not a.occluded[front].any() and b.occluded[front].all()
    assert a.occluded[back].all() and not b.occluded[back].any()
    for figures in view_agreement(clips, rendered):
        assert figures["visible_segmentation_match"] > 0.9 and figures["hidden_plainly_visible"] < 0.1


@pytest.mark.slow
def test_the_stereo_preset_renders_a_pair_on_the_scripts_camera_path():
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    from tapforge.synth.gt_check import view_agreement
    from tapforge.synth.pipeline import SceneRenderer, make_clips

    config = load_config("stereo_movi_e", [*SMALL, *FEW, "render.resolution=[40,32]", "scene.num_frames=3"])
    rendered = SceneRenderer(config).render(0)
    left, right = clips = make_clips(rendered, config)
    assert np.asarray(left.video).shape == (3, 32, 40, 3)
    c2w = [np.asarray(c.camera["cam_to_world_blender"]) for c in clips]
    np.testing.assert_allclose(np.linalg.norm(c2w[1][:, :3, 3] - c2w[0][:, :3, 3], axis=1), 0.5, atol=1e-9)
    np.testing.assert_allclose(c2w[0][:, :3, :3], c2w[1][:, :3, :3], atol=1e-9)  # parallel axes
    offset = np.einsum("tji,tj->ti", c2w[0][:, :3, :3], c2w[1][:, :3, 3] - c2w[0][:, :3, 3])
    np.testing.assert_allclose(offset, [[0.5, 0, 0]] * 3, atol=1e-9)  # the right camera along the left one's x
    assert left.camera["K"] == right.camera["K"]
    for figures in view_agreement(clips, rendered):
        assert figures["visible_segmentation_match"] > 0.9 and figures["visible_position_error_px"] < 1.0


@pytest.mark.slow
def test_a_multiview_dataset_is_a_dataset_of_single_view_clips(tmp_path):
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    from tapforge.synth.shards import iter_dataset_clips, read_manifest, verify_dataset

    sets = ["render.resolution=32", "render.samples=1", "scene.num_frames=3", "tracks.num_tracks=64"]
    sets += ["render.views.rig=hemisphere", "render.views.count=2", "outputs.scenes_per_shard=2"]
    result = subprocess.run(render_command(tmp_path, 2, sets), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert verify_dataset(tmp_path) == []
    verified = subprocess.run(
        [sys.executable, "-m", "tapforge.cli", "synth", "verify", str(tmp_path)], capture_output=True, text=True
    )
    assert "ok: 1 shards, 2 scenes (of 2 planned), 4 clips (their views)" in verified.stdout
    (shard,) = read_manifest(tmp_path)["shards"]  # both scenes' views in one shard
    keys = [f"scene-{i:07d}_view-{v:02d}" for i in range(2) for v in range(2)]
    assert shard["keys"] == keys and shard["num_samples"] == 4
    clips = list(iter_dataset_clips(tmp_path))  # the reader training uses: plain clips
    assert [c.key for c in clips] == keys
    for clip in clips:
        assert clip.tracks.shape == (64, 3, 2) and clip.tracks_world.shape == (64, 3, 3)
    np.testing.assert_array_equal(clips[0].tracks_world, clips[1].tracks_world)
    assert not np.array_equal(clips[0].tracks, clips[1].tracks)  # two cameras, one set of points
    # the hemisphere's cameras are drawn from the scene seed: other scenes, other cameras; the same seed, the same
    cams = [np.asarray(c.camera["cam_to_world_blender"])[0] for c in clips]
    assert not np.allclose(cams[0], cams[2])
    from tapforge.synth.pipeline import build_scene, scene_seed

    config = load_config("tiny", sets)
    again = build_scene(config, scene_seed(config.seed, 1)).cameras[1].matrices(3)[0]
    np.testing.assert_allclose(again, cams[3], atol=1e-9)
    pytest.importorskip("torch", reason="training reads the views: torch is needed for tapforge.train")
    from tapforge.synth.schema import iter_tar_samples
    from tapforge.train.dataset import make_training_example

    for sample in iter_tar_samples(tmp_path / shard["name"]):  # each view is a training clip, as it is
        example = make_training_example(sample, 3, (1,), 8, np.random.default_rng(0))
        assert example["video"].shape == (3, 32, 32, 3) and example["key"] == sample["__key__"]


# --- bad views: one line each, before anything renders ---


def _one_line(err: Exception) -> str:
    message = str(err)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("inside", "view 0: its camera is inside object 1 at frame 0"),
        ("away", "view 1 shows none of the scene's 1 objects in any frame"),
        ("none", "zero views render nothing"),
    ],
)
def test_bad_views_are_refused_in_one_line_before_anything_renders(tmp_path, mode, expected):
    from tapforge.synth.pipeline import build_scene

    config = _script_config(tmp_path, mode)
    with pytest.raises(TapforgeError) as err:
        build_scene(config, 0, scene_index=5)  # the scene as it would render: nothing is built in Blender yet
    assert expected in _one_line(err.value) and "scene 5" in str(err.value)


def test_a_rig_and_the_scripts_own_views_together_are_refused(tmp_path):
    from tapforge.synth.pipeline import build_scene

    config = _script_config(tmp_path, "facing", "render.views.rig=stereo")
    with pytest.raises(TapforgeError) as err:
        build_scene(config, 0)
    assert "render.views (a stereo rig) and the scene script's scene.views both set the cameras" in _one_line(err.value)


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["render.views.rig=ring", "render.views.count=0"], "render.views.count: 0 views render nothing"),
        (["render.views.rig=ring", "render.views.resolution=[64,64]"], "every view renders at render.resolution"),
        (["render.views.rig=stereo", "render.views.count=3"], "not a key of the stereo rig"),
        (["render.views.rig=dome"], "render.views.rig: bad value 'dome'"),
    ],
)
def test_bad_rigs_are_one_config_line(sets, expected):
    with pytest.raises(TapforgeError) as err:
        load_config("movi_e", sets)
    assert expected in _one_line(err.value)


def test_a_config_without_views_keeps_its_identity():
    plain, ring = load_config("movi_e"), load_config("multiview_movi_e")
    assert "views" not in plain.tree["render"] and plain.render.views is None
    assert ring.render.views.count == 4 and ring.hash != plain.hash
    assert ring.tree["render"]["views"] == {
        "rig": "ring",
        "count": 4,
        "radius": 12.0,
        "height": 6.0,
        "center": [0.0, 0.0, 0.0],
        "azimuth": 0.0,
    }


@pytest.mark.slow
def test_the_render_command_refuses_a_camera_inside_an_object_in_one_line(tmp_path):
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    (tmp_path / "facing.py").write_text(SCRIPT)
    (tmp_path / "inside.yaml").write_text("inherit: base\nscene:\n  script: facing.py\n  mode: inside\n")
    command = render_command(tmp_path / "out", 1, SMALL, "--config", str(tmp_path / "inside.yaml"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2  # tapforge's exit status for a refused input
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "view 0: its camera is inside object 1" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()  # nothing rendered, nothing written
