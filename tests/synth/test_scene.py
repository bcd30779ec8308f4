"""Procedural shapes, the MOVi script's rules, the camera and the Cycles device choice, without rendering."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from tapforge.base.errors import TapforgeError
from tapforge.synth.config import load_config
from tapforge.synth.meshes import volume_and_centroid
from tapforge.synth.scene import Camera, Scene, look_at_matrices
from tapforge.synth.shapes import SHAPES, make_shape


@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "suzanne"])
def test_shapes_are_closed_outward_and_unit_size(shape):
    vertices, faces = make_shape(shape, {"e1": 0.5, "e2": 1.2, "seed": 1, "sides": 5})
    volume, _ = volume_and_centroid(vertices, faces)
    assert volume > 0.05  # outward-oriented, closed enough to enclose volume
    extent = vertices.max(0) - vertices.min(0)
    assert np.isclose(extent.max(), 1.0)
    # every edge is shared by exactly two faces (watertight)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).mean() > 0.99


def test_movi_e_scenes_follow_the_movi_e_rules():
    pytest.importorskip("pybullet", reason="the movi script places objects with PyBullet")
    from tapforge.synth.pipeline import build_scene

    scene = build_scene(load_config("movi_e"), 11)
    static = [o for o in scene.objects if not o.metadata["is_dynamic"]]
    dynamic = [o for o in scene.objects if o.metadata["is_dynamic"]]
    assert 10 <= len(static) <= 20 and 1 <= len(dynamic) <= 3
    assert all(0.75 <= o.size <= 3.0 for o in scene.objects)
    distance = np.linalg.norm(scene.camera.path(scene.num_frames)[0], axis=1)
    assert (distance > 7.9).all() and (distance < 12.1).all()


def test_look_at_matrices_point_the_camera_at_the_target():
    positions = np.array([[5.0, -5.0, 3.0], [0.0, -8.0, 1.0]])
    mats = look_at_matrices(positions, np.zeros((2, 3)))
    forward = -mats[:, :3, 2]
    expected = -positions / np.linalg.norm(positions, axis=1, keepdims=True)
    assert np.allclose(forward, expected)
    assert np.allclose(np.einsum("nij,nik->njk", mats[:, :3, :3], mats[:, :3, :3]), np.eye(3))


def test_the_renderer_renders_at_the_scenes_resolution_which_the_intrinsics_use():
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed")
    from tapforge.synth.blender_scene import BlenderRenderer

    settings = load_config("movi_e", ["render.resolution=64", "render.device=cpu"]).render
    scene = Scene((48, 32), num_frames=2)
    scene.camera = Camera().look_at((5.0, -5.0, 3.0))
    renderer = BlenderRenderer(settings)
    renderer.build(scene)
    rendered = renderer.scene.render
    assert (rendered.resolution_x, rendered.resolution_y, rendered.resolution_percentage) == (48, 32, 100)
    assert np.allclose(scene.camera.intrinsics(scene.resolution)[:2, 2], [24, 16])  # the same pixels


def test_the_renderer_sets_the_configs_sampling_and_light_paths_and_blenders_own_where_a_config_has_none():
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed")
    from tapforge.synth.blender_scene import BlenderRenderer
    from tapforge.synth.config import RENDER_KEY_DEFAULTS

    settings = load_config("movi_e", ["render.device=cpu"]).render
    renderer = BlenderRenderer(settings)
    cycles = renderer.scene.cycles
    names = ("adaptive_min_samples", "max_bounces", "diffuse_bounces", "glossy_bounces", "use_light_tree")
    assert (cycles.samples, round(cycles.adaptive_threshold, 6), cycles.use_denoising) == (64, 0.01, True)
    assert tuple(getattr(cycles, name) for name in names) == (16, 4, 2, 2, False)
    before = dataclasses.replace(settings, **{k.split(".")[1]: v for k, v in RENDER_KEY_DEFAULTS.items()})
    renderer.apply_sampling(before)  # a config without these keys: what Blender did before they existed
    assert all(getattr(cycles, name) == cycles.bl_rna.properties[name].default for name in names)


def _about_own_z(roll):
    """[T,4,4] rotations about a camera's own z axis by ``roll`` [T] radians."""
    turn = np.tile(np.eye(4), (len(roll), 1, 1))
    turn[:, 0, 0], turn[:, 0, 1], turn[:, 1, 0], turn[:, 1, 1] = np.cos(roll), -np.sin(roll), np.sin(roll), np.cos(roll)
    return turn


def test_a_rolled_camera_is_the_unrolled_one_turned_about_its_own_z_axis():
    frames = 5
    positions = np.stack([np.linspace(6, 8, frames), np.full(frames, -6.0), np.full(frames, 4.0)], -1)
    roll = np.linspace(-0.4, 0.6, frames)
    unrolled = Camera().look_at(positions, (0, 0, 1)).matrices(frames)
    rolled = Camera().look_at(positions, (0, 0, 1), roll=roll).matrices(frames)
    assert np.allclose(rolled, unrolled @ _about_own_z(roll))
    assert np.allclose(Camera().look_at(positions[0], (0, 0, 1), 0.3).matrices(2), unrolled[:1] @ _about_own_z([0.3]))
    # keyframed: the roll is interpolated linearly between keys, like the position
    keyed = Camera().keyframe(0, positions[0], (0, 0, 1), roll=-0.4).keyframe(4, positions[-1], (0, 0, 1), roll=0.6)
    assert np.allclose(keyed.roll(frames), roll) and np.allclose(keyed.matrices(frames), rolled)
    # the stated sign: a positive roll turns the picture clockwise (a point right of the centre moves down)
    from tapforge.synth.tracks import world_to_opencv

    camera = Camera().look_at(positions[0], (0, 0, 1))
    point = np.append(positions[0] + 8 * -unrolled[0, :3, 2] + unrolled[0, :3, 0], 1.0)  # ahead and to the right
    K = camera.intrinsics((64, 64))
    for roll_angle, moves_down in ((0.0, False), (0.2, True), (-0.2, False)):
        camera.look_at(positions[0], (0, 0, 1), roll=roll_angle)
        x, y, z = (world_to_opencv(camera.matrices(1)) @ point)[0, :3]
        u, v = (K @ [x, y, z])[:2] / z
        assert u > 32 and ((v > 32.5) if moves_down else (v <= 32.0 + 1e-9)), (roll_angle, u, v)


def test_camera_roll_is_refused_with_one_line_naming_it():
    for bad in ("a", None, np.zeros((2, 2)), float("nan"), True, [0.1, np.inf]):
        with pytest.raises(TapforgeError, match="^Camera.look_at roll .*: roll must be an angle in radians") as err:
            Camera().look_at((5, 5, 5), (0, 0, 0), roll=bad)
        assert "\n" not in str(err.value) and "test_scene.py:" in str(err.value)
    with pytest.raises(TapforgeError, match="roll must be one value or one per frame of the positions .*4 frames"):
        Camera().look_at(np.ones((4, 3)) * 5, (0, 0, 0), roll=[0.1, 0.2])
    with pytest.raises(TapforgeError, match="^Camera.keyframe roll 'x': roll must be in"):
        Camera().keyframe(0, (5, 5, 5), roll="x")
    with pytest.raises(TapforgeError, match="3 rolls for a clip of 4 frames; give one, or one per frame"):
        Camera().look_at((5, 5, 5), (0, 0, 0), roll=[0.1, 0.2, 0.3]).matrices(4)


def test_the_renderer_keys_the_rolled_camera_with_its_matrices():
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed")
    from tapforge.synth.blender_scene import BlenderRenderer

    settings = load_config("movi_e", ["render.resolution=32", "render.device=cpu"]).render
    scene = Scene((32, 32), num_frames=4)
    roll = np.array([0.0, 0.5, -0.7, 1.2])
    scene.camera = Camera().look_at(np.array([[5.0, -5.0, 3.0]] * 4) + np.arange(4)[:, None], (0, 0, 0), roll)
    renderer = BlenderRenderer(settings)
    renderer.build(scene)
    blender = renderer.scene
    for t, expected in enumerate(scene.camera.matrices(4)):
        blender.frame_set(t)
        assert np.allclose(np.array(blender.camera.matrix_world), expected, atol=1e-5)


class _FakeCyclesPrefs:
    """Cycles add-on preferences as bpy shows them, with a chosen build and chosen GPUs."""

    def __init__(self, backends: set[str], gpus: list[tuple[str, str]]):
        self.backends = backends
        self._type = "NONE"
        self.devices = [SimpleNamespace(name=name, type=kind, use=False) for name, kind in gpus]
        self.devices.append(SimpleNamespace(name="Some CPU", type="CPU", use=True))

    @property
    def compute_device_type(self):
        return self._type

    @compute_device_type.setter
    def compute_device_type(self, value):
        if value not in self.backends:  # bpy refuses enum values the build lacks with a TypeError
            raise TypeError(f"enum {value!r} not found")
        self._type = value

    def refresh_devices(self):
        pass


def _fake_bpy(prefs):
    return SimpleNamespace(
        context=SimpleNamespace(preferences=SimpleNamespace(addons={"cycles": SimpleNamespace(preferences=prefs)}))
    )


H100 = [("NVIDIA H100", "CUDA"), ("NVIDIA H100", "OPTIX")]


@pytest.mark.parametrize(
    "backends, gpus, expected",
    [
        ({"CUDA", "OPTIX"}, H100, "optix"),
        ({"CUDA"}, H100[:1], "cuda"),  # a build without OptiX
        ({"CUDA", "OPTIX"}, H100[:1], "cuda"),  # a GPU that OptiX does not list
    ],
)
def test_auto_device_prefers_optix_then_cuda_and_says_which(backends, gpus, expected):
    from tapforge.synth.blender_scene import _select_device

    prefs = _FakeCyclesPrefs(backends, gpus)
    assert _select_device(_fake_bpy(prefs), "auto") == (
        expected,
        f"render.device=auto: using {expected.upper()} (NVIDIA H100)",
    )
    assert [d.type for d in prefs.devices if d.use] == [expected.upper()]  # only those GPUs, not the CPU too


def test_explicit_gpu_device_missing_from_the_build_names_the_fix():
    from tapforge.synth.blender_scene import _select_device

    with pytest.raises(
        TapforgeError,
        match="render.device=optix: this Blender build has no OPTIX support; use render.device=auto or cpu",
    ):
        _select_device(_fake_bpy(_FakeCyclesPrefs({"CUDA"}, H100[:1])), "optix")


@pytest.fixture
def blender_without_gpu():
    """Real bpy, on a machine where Blender finds no OptiX or CUDA GPU (skipped where it finds one)."""
    bpy = pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed")
    import _cycles

    if any(d[1] == kind for kind in ("CUDA", "OPTIX") for d in _cycles.available_devices(kind)):
        pytest.skip("Blender finds a GPU here")
    return bpy


def test_auto_device_without_a_gpu_renders_on_the_cpu_and_says_so(blender_without_gpu):
    from tapforge.synth.blender_scene import _select_device

    assert _select_device(blender_without_gpu, "auto") == (
        "cpu",
        "render.device=auto: no OptiX or CUDA GPU found, using CPU",
    )


def test_the_render_job_shows_the_device_line_once_outside_the_progress_bar(tmp_path):
    """Each worker's Blender chooses the device; the main process shows the line once, on a line of its own."""
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    import subprocess

    from tests.conftest import TINY, render_command

    sets = [*TINY, "render.resolution=32", "render.samples=1"]
    result = subprocess.run(
        render_command(tmp_path / "data", 2, sets, "--workers", "2"), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "render.device=auto" in line]
    assert lines == ["render.device=auto: no OptiX or CUDA GPU found, using CPU"] or (
        len(lines) == 1 and lines[0].startswith("render.device=auto: using ")
    ), result.stderr


@pytest.mark.parametrize("device", ["cuda", "optix"])
def test_explicit_gpu_device_without_a_gpu_is_one_line_naming_the_fix(blender_without_gpu, device):
    from tapforge.synth.blender_scene import _select_device

    with pytest.raises(TapforgeError) as err:
        _select_device(blender_without_gpu, device)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"render.device={device}: Blender finds no {device.upper()} GPU")
    assert "--gpus all" in message and message.endswith("use render.device=auto or cpu")
