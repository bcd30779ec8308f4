"""The scene API (tapforge.synth.scene) and scene scripts: scripted motion, physics, config keys, identity, examples."""

from pathlib import Path

import numpy as np
import pytest

from tapforge.base.errors import TapforgeError
from tapforge.synth.config import load_config
from tapforge.synth.scene import Camera, Floor, Scene, Shape, about_z, interpolate_keys, quaternion_product

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "scenes"
SMALL = ["render.resolution=64", "render.samples=4", "scene.num_frames=5", "tracks.num_tracks=512"]


def test_keyframes_interpolate_positions_linearly_and_rotations_spherically():
    quarter = (0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4))  # 90 degrees about z
    obj = Shape("cube").keyframe(0, position=(0, 0, 0), quaternion_xyzw=(0, 0, 0, 1)).keyframe(4, (4, 2, 0), quarter)
    positions, quaternions = obj.poses(6)
    assert np.allclose(positions[2], [2, 1, 0]) and np.allclose(positions[5], [4, 2, 0])  # constant after the last key
    assert np.allclose(quaternions[2], [0, 0, np.sin(np.pi / 8), np.cos(np.pi / 8)])  # 45 degrees halfway
    assert obj.scripted
    assert np.allclose(about_z(np.pi / 2), quarter)
    assert np.allclose(quaternion_product(about_z([0.3, 1.0]), about_z([0.5, 0.5])), about_z([0.8, 1.5]))
    tilt = (np.sin(np.pi / 4), 0.0, 0.0, np.cos(np.pi / 4))  # 90 degrees about x
    assert not np.allclose(quaternion_product(quarter, tilt), quaternion_product(tilt, quarter))  # order matters
    keys = {0: np.array([0.0, 0, 0]), 10: np.array([10.0, 0, 0])}
    assert np.allclose(interpolate_keys(keys, np.array([2.5]))[0], [2.5, 0, 0])


def test_scene_api_refuses_bad_use_with_a_clear_line():
    scene = Scene(num_frames=4)
    cube = scene.add(Shape("cube"))
    with pytest.raises(TapforgeError, match="added to the scene twice"):
        scene.add(cube)
    with pytest.raises(TapforgeError, match="scene.floor = ... instead"):
        scene.add(Floor())
    with pytest.raises(TapforgeError, match="no position: call scene.camera.look_at"):
        scene.camera.matrices(4)
    with pytest.raises(TapforgeError, match="of shape \\[num_frames, 3\\]"):
        Shape("cube").set_poses(np.zeros((4, 2)))
    with pytest.raises(TapforgeError, match="has poses for 3 frames, the scene has 4"):
        Shape("cube").set_poses(np.zeros((3, 3))).poses(4)
    with pytest.raises(TapforgeError, match="shape 'pyramid'"):
        Shape("pyramid").mesh()
    camera = Camera().look_at(np.zeros((3, 3)) + [5, 0, 2], (0, 0, 0))
    with pytest.raises(TapforgeError, match="3 positions for a clip of 4 frames"):
        camera.path(4)
    with pytest.raises(TapforgeError, match="cannot change the resolution .* set render.resolution in the config"):
        scene.resolution = (128, 96)
    assert scene.resolution == (256, 256)


def test_former_and_kubric_names_get_one_line_naming_the_new_spelling():
    from tapforge.synth.scene import AreaLight, Emission, Environment, PointLight, Principled, Texture

    order = "quaternion_xyzw, in \\(x, y, z, w\\) order \\(Kubric's quaternion is \\(w, x, y, z\\)\\)"
    with pytest.raises(TapforgeError, match=f"^Shape\\(quaternion=...\\): the name is now {order}"):
        Shape("cube", quaternion=(1, 0, 0, 0))
    with pytest.raises(TapforgeError, match=f"^keyframe\\(quaternion=...\\): the name is now {order}"):
        Shape("cube").keyframe(0, quaternion=(0, 0, 0, 1))
    with pytest.raises(TapforgeError, match="^set_poses\\(quaternions=...\\): the name is now quaternions_xyzw"):
        Shape("cube").set_poses(np.zeros((2, 3)), quaternions=np.tile([0, 0, 0, 1], (2, 1)))
    cube = Shape("cube", quaternion_xyzw=(0, 0, 1, 0))
    with pytest.raises(TapforgeError, match=f"^Shape.quaternion = ...: the name is now {order}"):
        cube.quaternion = (1, 0, 0, 0)  # would otherwise be a new attribute that nothing reads
    with pytest.raises(TapforgeError, match="^Shape.quaternion: the name is now quaternion_xyzw"):
        _ = cube.quaternion
    assert np.allclose(cube.poses(2)[1], [0, 0, 1, 0])  # (x, y, z, w): half a turn about z
    for kind in (Principled, Emission, Environment, PointLight, AreaLight):
        with pytest.raises(TapforgeError, match=f"^{kind.__name__}\\(colour=...\\): the name is now color"):
            kind(colour=(1, 0, 0))
        assert kind(color=(1, 0, 0)).color == (1, 0, 0)
    with pytest.raises(TapforgeError, match="^Principled.colour = ...: the name is now color"):
        Principled().colour = (1, 0, 0)
    with pytest.raises(TapforgeError, match="^Texture\\(colours=...\\): the name is now colors"):
        Texture("noise", colours=((0, 0, 0), (1, 1, 1)))
    with pytest.raises(TapforgeError, match="^Texture.procedural\\(colour=...\\): the name is now color"):
        Texture.procedural("noise", colour=(1, 0, 0))
    assert Texture.procedural("noise", color=(1, 0, 0), color2=(0, 0, 1)).colors == ((1, 0, 0), (0, 0, 1))
    with pytest.raises(AttributeError):
        _ = Principled().shine  # other missing names stay ordinary AttributeErrors


def _pushed_scene(static_box: bool):
    from tapforge.synth.physics import PyBullet

    scene = Scene(num_frames=24, frame_rate=12, physics_rate=240, simulator_factory=PyBullet)
    scene.floor = Floor()
    box = scene.add(Shape("cube", size=0.8, position=(0.0, 0.0, 0.4), static=static_box))
    sweep = np.linspace(-3.0, 2.0, 24)
    pusher = Shape("sphere", size=1.0).set_poses(np.stack([sweep, np.zeros(24), np.full(24, 0.5)], -1))
    scene.add(pusher)
    scene.simulator.run()
    scene.close()
    return scene, box, pusher


def test_a_scripted_object_pushes_a_simulated_one_and_follows_its_script_exactly():
    pytest.importorskip("pybullet")
    scene, box, pusher = _pushed_scene(static_box=False)
    positions, _ = scene.object_poses()
    assert positions[0, -1, 0] - positions[0, 0, 0] > 0.5  # the box was pushed along +x
    assert np.allclose(positions[1, :, 0], np.linspace(-3.0, 2.0, 24))  # the pusher went exactly where scripted
    assert (positions[0, :, 2] > 0.3).all()  # and the box stayed on the floor
    scene, box, _ = _pushed_scene(static_box=True)
    assert np.allclose(scene.object_poses()[0][0], [0.0, 0.0, 0.4])  # a static object does not move


def test_physics_is_deterministic_and_settled_objects_stay_on_the_floor():
    pytest.importorskip("pybullet")
    from tapforge.synth.pipeline import build_scene

    config = load_config("movi_e", ["scene.num_static_objects=3", "scene.shapes=[cube,torus,blob]"])
    # seed 3: no thrown object hits a static one (in about 1 seed of 10 one does, and pushes it: MOVi's static
    # objects are simulated too)
    a, b = build_scene(config, 3), build_scene(config, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a.object_poses(), b.object_poses()))
    assert a.describe() == b.describe() and build_scene(config, 5).describe() != a.describe()
    positions, quaternions = a.object_poses()
    assert (positions[..., 2] > -0.05).all()  # nothing sinks through the floor
    static = np.array([not o.metadata["is_dynamic"] for o in a.objects])
    assert 1 <= (~static).sum() <= 3 and static.sum() == 3
    assert (np.linalg.norm(positions[static, -1] - positions[static, 0], axis=-1) < 0.5).all()  # settled
    assert np.allclose(np.linalg.norm(quaternions, axis=-1), 1.0)


def _release_scene(num_frames=36, **ball):
    from tapforge.synth.physics import PyBullet

    scene = Scene(num_frames=num_frames, frame_rate=12, physics_rate=240, simulator_factory=PyBullet)
    scene.floor = Floor()
    ball = scene.add(Shape("sphere", size=0.8, **ball))
    return scene, ball


def test_an_object_released_later_is_held_until_its_frame_then_falls_and_is_pushed_like_the_others():
    pytest.importorskip("pybullet")
    scene, ball = _release_scene(position=(0.0, 0.0, 2.5), release_frame=6, velocity=(0.3, 0.0, 0.0))
    sweep = np.linspace(-4.0, 3.0, 36)  # reaches the ball's landing place around frame 20
    scene.add(Shape("cube", size=1.0).set_poses(np.stack([sweep, np.zeros(36), np.full(36, 0.5)], -1)))
    scene.simulate_if_needed()  # the held ball counts as simulated: the pipeline runs the clip for it
    positions, quaternions = scene.object_poses()
    held = positions[0, :7]  # frames 0..6: held where it was put, up to its release frame
    assert (held == [0.0, 0.0, 2.5]).all() and (quaternions[0, :7] == [0, 0, 0, 1]).all()
    assert positions[0, 7, 2] < 2.5 and positions[0, 7, 0] > 0  # then it falls, with its own velocity
    assert abs(positions[0, 16, 2] - 0.4) < 0.05  # lands on the floor
    assert positions[0, -1, 0] - positions[0, 16, 0] > 1.0  # and the scripted cube pushes it along +x
    assert ball.describe()["release_frame"] == 6 and ball.describe()["motion"] == "physics"
    scene.close()


def test_a_held_object_is_a_collider_and_a_scripted_one_is_released_from_its_script():
    pytest.importorskip("pybullet")
    scene, shelf = _release_scene(position=(0.0, 0.0, 2.0), release_frame=1000)  # never released in the clip
    dropped = scene.add(Shape("cube", size=0.6, position=(0.0, 0.0, 3.5)))
    scene.simulator.run(12)  # runs before the clip hold it too
    scene.simulator.run()
    positions, _ = scene.object_poses()
    assert (positions[0] == [0.0, 0.0, 2.0]).all()  # not pushed down by what lands on it
    assert 2.6 < positions[1, -1, 2] < 2.8 and dropped.position[2] > 2.6  # the cube rests on it
    scene.close()
    scene, ball = _release_scene(24, release_frame=10, velocity=(0.0, 0.0, 0.0))
    ball.keyframe(0, position=(-2.0, 0.0, 3.0)).keyframe(10, position=(0.0, 0.0, 3.0)).keyframe(20, (2.0, 0.0, 3.0))
    scene.simulator.run()
    positions, _ = scene.object_poses()
    assert np.allclose(positions[0, :11], ball.pose_at(np.arange(11))[0])  # on its script until the release
    assert np.allclose(positions[0, 10], [0.0, 0.0, 3.0])
    assert positions[0, -1, 2] < 0.5 and abs(positions[0, -1, 0]) < 0.1  # then it falls where it was let go
    assert ball.describe()["motion"] == "scripted, then physics"
    scene.close()


def test_release_frame_is_refused_where_nothing_would_release_it():
    from tapforge.synth.scene import Cloth

    with pytest.raises(TapforgeError, match="^Shape release_frame 5: release_frame must be None for a static object"):
        Shape("cube", static=True, release_frame=5)
    cube = Shape("cube", release_frame=5)
    with pytest.raises(TapforgeError, match="release_frame must be None for a static object .*set static=False"):
        cube.static = True
    with pytest.raises(TapforgeError, match="^Cloth release_frame 3: release_frame must be None for a Cloth"):
        Cloth(release_frame=3)
    with pytest.raises(
        TapforgeError, match="^Shape release_frame -1: release_frame must be None or an integer in \\[0, 100000\\]"
    ):
        Shape("cube", release_frame=-1)


def test_scripted_poses_are_sorted_once_per_change_not_per_physics_step(monkeypatch):
    import tapforge.synth.scene as scene_module

    built = []
    original = scene_module.Keys.__init__
    monkeypatch.setattr(
        scene_module.Keys, "__init__", lambda self, keys: built.append(len(keys)) or original(self, keys)
    )
    frames = 1000
    path = np.stack([np.linspace(0, 10, frames), np.zeros(frames), np.ones(frames)], -1)
    obj = Shape("cube").set_poses(path, about_z(np.linspace(0, 3, frames)))
    for step in np.arange(0, frames - 1, 0.1):  # as the simulator asks, every physics step
        obj.pose_at([step, step + 0.1])
    assert built == [frames]  # the quaternion keys, sorted once
    assert np.allclose(obj.pose_at(500.5)[0], [(500.5 / 999) * 10, 0, 1])  # np.interp's values, exactly
    assert np.array_equal(obj.pose_at([3.25])[0][:, 0], [np.interp(3.25, np.arange(frames), path[:, 0])])
    keyed = Shape("cube").keyframe(0, (0, 0, 0)).keyframe(10, (10, 0, 0))
    assert np.allclose(keyed.pose_at(5)[0], [5, 0, 0])
    keyed.keyframe(20, (10, 10, 0))  # a new key invalidates the sorted keys
    assert np.allclose(keyed.pose_at(15)[0], [10, 5, 0])


def test_movi_variants_are_explicit_keys():
    pytest.importorskip("pybullet")
    from tapforge.synth.pipeline import build_scene
    from tapforge.synth.scripts.movi import CLEVR_COLORS

    a, b = build_scene(load_config("movi_a"), 2), build_scene(load_config("movi_b"), 2)
    assert {o.size for o in a.objects} <= {0.7, 1.4} and all(
        o.material.color in CLEVR_COLORS.values() for o in a.objects
    )
    assert all(0.7 <= o.size <= 1.4 for o in b.objects) and len({o.size for o in b.objects}) == len(b.objects)
    assert all(max(o.material.color) == pytest.approx(1.0) for o in b.objects)  # full-value random hues
    cameras = a.camera.matrices(a.num_frames)
    assert np.allclose(cameras[0], cameras[-1])  # MOVi-A's fixed camera


LONG = [  # long_movi with fewer objects: 1024 frames of physics in a few seconds
    "scene.num_initial_objects=3",
    "scene.max_arrivals=4",
    "scene.arrival_interval=[4, 8]",
    "scene.num_movers=1",
    "scene.shapes=[cube,sphere,cylinder,cone,torus]",
]


def test_long_movi_keeps_a_1024_frame_clip_alive():
    pytest.importorskip("pybullet")
    from tapforge.synth.motion import moving_frames
    from tapforge.synth.pipeline import build_scene
    from tapforge.synth.poses import pose_matrices

    config = load_config("long_movi", LONG)
    assert config.scene.num_frames == 1024 and config.scene.frame_rate == 24
    ci = load_config("long_movi_test")  # the small variant for CI renders
    assert ci.scene.num_frames < 256 and ci.render.resolution == (32, 32) and ci.tracks.num_tracks <= 64
    scene = build_scene(config, 0)  # script and physics, no Blender
    positions, quaternions = scene.object_poses()
    radii = np.array([np.linalg.norm(o.mesh()[0], axis=-1).max() for o in scene.objects])
    assert moving_frames(pose_matrices(positions, quaternions), radii).mean() > 0.95  # something moves all along
    movers = [k for k, o in enumerate(scene.objects) if o.metadata.get("mover")]
    assert movers and all(np.ptp(positions[k, :, :2], axis=0).max() > 4 for k in movers)  # loops over the floor
    assert (positions[movers, 0] != positions[movers, -1]).any()
    arrivals = [(k, o.release_frame) for k, o in enumerate(scene.objects) if o.release_frame is not None]
    assert len(arrivals) == 4 and all(0 < frame < 1000 for _, frame in arrivals)
    for k, frame in arrivals:
        assert (positions[k, :frame] == positions[k, 0]).all()  # held until its release...
        assert positions[k, frame + 48, 2] < positions[k, frame, 2] - 1.0  # ...then tossed in: it falls
    still = [k for k, o in enumerate(scene.objects) if o.release_frame is None and not o.scripted]
    assert max(np.linalg.norm(np.diff(positions[k], axis=0), axis=-1).sum() for k in still) > 1.0  # pushed around
    assert (positions[..., 2] > -0.05).all()  # nothing falls through the floor
    roll = np.degrees(scene.camera.roll(1024))
    assert np.ptp(roll) > 20 and np.abs(roll).max() <= 25.0 + 1e-9  # rolls smoothly, within its amplitude
    assert np.abs(np.diff(roll)).max() < 1.0
    cameras, targets = scene.camera.path(1024)
    distance = np.linalg.norm(cameras - targets, axis=-1)
    assert distance.max() / distance.min() > 1.3  # approaches and retreats
    side = cameras - targets
    assert np.ptp(np.unwrap(np.arctan2(side[:, 1], side[:, 0]))) > 2 * np.pi  # orbits: sees every side
    view = side[:, :2] / np.linalg.norm(side[:, :2], axis=-1, keepdims=True)
    turned = np.degrees(np.arccos(np.clip(view @ view[0], -1, 1)))
    assert turned.max() > 170 and turned[np.argmax(turned) :].min() < 10  # leaves its first view, and comes back


def test_long_movi_refuses_a_clip_where_nothing_would_move():
    still = [
        "scene.arrival_interval=0",
        "scene.num_movers=0",
        "scene.orbit_period=0",
        "scene.camera_distance=10",
        "scene.camera_elevation=30",
        "scene.target_wander=0",
        "scene.roll_amplitude=0",
    ]
    with pytest.raises(TapforgeError) as err:
        load_config("long_movi", still)
    message = str(err.value)
    assert message.startswith("a problem in the config: scene: nothing in this long_movi clip would move")
    assert "set scene.arrival_interval" in message
    load_config("long_movi", still[1:])  # arrivals alone keep it alive
    load_config("long_movi", [*still[:-1], "scene.roll_amplitude=10"])  # and so does a rolling camera
    with pytest.raises(TapforgeError) as err:
        load_config("long_movi", ["scene.arrival_interval=-1", "scene.num_movers=[2, 1]", "scene.num_static_objects=3"])
    message = str(err.value)
    assert "3 problem(s)" in message and "scene.arrival_interval: bad value -1; use seconds between arrivals" in message
    assert "scene.num_movers: bad value [2, 1]" in message
    assert "scene.num_static_objects: unknown key for this scene script" in message


def test_a_script_with_a_bad_or_unknown_key_gets_one_line_per_problem(tmp_path):
    config = tmp_path / "scene.yaml"
    config.write_text(f"inherit: base\nscene:\n  script: {EXAMPLES / 'turntable.py'}\n  num_objects: 99\n  wobble: 2\n")
    with pytest.raises(TapforgeError) as err:
        load_config(config)
    message = str(err.value)
    assert "2 problem(s)" in message and "scene.num_objects: bad value 99; use an integer in [1, 6]" in message
    assert "scene.wobble: unknown key for this scene script" in message
    with pytest.raises(TapforgeError, match="scene.turns: bad value 'fast'"):
        load_config(EXAMPLES / "turntable.yaml", ["scene.turns=fast"])
    with pytest.raises(TapforgeError, match="no such file"):
        load_config("movi_e", ["scene.script=missing.py"])
    broken = tmp_path / "broken.py"
    broken.write_text("def build(scene, rng):\n    pass\n")
    with pytest.raises(TapforgeError, match="must take \\(scene, rng, cfg\\)"):
        load_config("movi_e", [f"scene.script={broken}"])


def _script_config(tmp_path) -> tuple[Path, Path]:
    """A copy of the turntable script and a config that names it."""
    script = tmp_path / "scene.py"
    script.write_text((EXAMPLES / "turntable.py").read_text())
    config = tmp_path / "scene.yaml"
    config.write_text("inherit: base\nscene:\n  script: scene.py\n  num_objects: 1\n")
    return script, config


def test_the_script_is_part_of_the_dataset_identity_and_threads_are_not(tmp_path):
    from tapforge.synth.scripts import load_script

    script, path = _script_config(tmp_path)
    config = load_config(path)
    assert config.scene.script == str(script)  # resolved against the config file's folder
    assert config.hash == load_config(path, ["render.threads=3"]).hash  # threads change no pixel
    script.write_text(script.read_text() + "\n# an edit\n")
    load_script.cache_clear()
    changed = load_config(path)
    assert changed.scene.script_sha256 != config.scene.script_sha256
    assert changed.hash != config.hash


@pytest.mark.slow
def test_resume_refuses_a_changed_script(tmp_path):
    pytest.importorskip("bpy", reason="bpy is needed to render")
    from tapforge.synth.render_job import render_dataset
    from tapforge.synth.scripts import load_script

    script, path = _script_config(tmp_path)
    overrides = [
        "render.resolution=32",
        "render.samples=1",
        "scene.num_frames=2",
        "tracks.num_tracks=16",
        "outputs.scenes_per_shard=1",
    ]
    render_dataset(load_config(path, overrides), tmp_path / "data", 1, progress=False, workers=1)
    render_dataset(load_config(path, overrides), tmp_path / "data", 1, progress=False, workers=1)  # resumes: done
    script.write_text(script.read_text().replace("turns: float = option(0.25", "turns: float = option(0.5"))
    load_script.cache_clear()
    with pytest.raises(TapforgeError, match="made with another config"):
        render_dataset(load_config(path, overrides), tmp_path / "data", 1, progress=False, workers=1)


@pytest.fixture(scope="module", params=["turntable", "tabletop_arm"])
def example(request):
    pytest.importorskip("bpy", reason="bpy is needed to render")
    from tapforge.synth.pipeline import SceneRenderer, make_clip

    config = load_config(EXAMPLES / f"{request.param}.yaml", SMALL)
    rendered = SceneRenderer(config).render(0)
    return request.param, make_clip(rendered, config), rendered


@pytest.mark.slow
def test_example_scripts_render_with_exact_ground_truth_and_scripted_motion(example):
    from tapforge.synth.gt_check import render_pass_agreement

    name, clip, rendered = example
    figures = render_pass_agreement(clip, rendered.passes)
    print(name, figures)
    assert figures["visible_points"] > 500 and figures["visible_segmentation_match"] > 0.9
    assert figures["visible_position_error_px"] < 1.0
    assert figures["hidden_plainly_visible"] < 0.05
    assert figures["flow_error_px"] < 0.1 and figures["median_motion_px"] > 0.05
    scene = rendered.scene
    scripted = [o.instance_id for o in scene.objects if o.scripted]
    assert scripted and set(clip.object_ids) & set(scripted)  # scripted objects are seen and tracked
    positions, _ = scene.object_poses()
    moved = np.linalg.norm(positions[:, -1] - positions[:, 0], axis=-1)
    pushed = [moved[o.instance_id - 1] for o in scene.objects if not o.scripted and not o.static]
    assert name != "tabletop_arm" or max(pushed) > 0.05  # the arm moves objects it sweeps through
