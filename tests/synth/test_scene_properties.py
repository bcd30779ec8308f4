"""The scene API's argument contract, tried with generated values (hypothesis): every constructor, field assignment
and method either refuses a value with one TapforgeError line that names the argument and the script line, or keeps
a value inside the documented range; scenes built from drawn valid values render with tracks that agree with the
segmentation pass."""

import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapforge.base.errors import TapforgeError
from tapforge.synth.scene import (
    AreaLight,
    Camera,
    Cloth,
    Deform,
    Dome,
    Emission,
    Environment,
    Floor,
    PointLight,
    Principled,
    Scene,
    Shape,
    Sky,
    SoftBody,
    Sun,
    Texture,
)

FAST = settings(max_examples=150, deadline=None, database=None)
HERE = Path(__file__).name


# ------------------------------------------------------------------------------------------- the documented ranges
def within(lo, hi, open_low=False):
    """A real number (not a bool) in [lo, hi] ((lo, hi] with open_low)."""
    return lambda v: isinstance(v, float) and math.isfinite(v) and (lo < v if open_low else lo <= v) and v <= hi


def whole(lo, hi):
    return lambda v: type(v) is int and lo <= v <= hi


def floats_of(n, limit, min_norm=0.0):
    return lambda v: (
        isinstance(v, tuple)
        and len(v) == n
        and all(type(x) is float and math.isfinite(x) and abs(x) <= limit for x in v)
        and (not min_norm or math.hypot(*v) > min_norm)
    )


def optional_(inside):
    return lambda v: v is None or inside(v)


COLOR = lambda v: floats_of(3, 1.0)(v) and min(v) >= 0  # noqa: E731
POINT, QUATERNION, DIRECTION = floats_of(3, 1e5), floats_of(4, 1e6, 1e-8), floats_of(3, 1e5, 1e-8)

# (what makes one, with the value as the argument `name`; the argument; what a kept value must satisfy)
NUMBER_FIELDS = [
    (Camera, "focal_length", within(1, 1e5)),
    (Camera, "sensor_width", within(1, 1e5)),
    (Shape, "size", within(0, 1e3, True)),
    (Shape, "mass", optional_(within(0, 1e6, True))),
    (Shape, "release_frame", optional_(whole(0, 100000))),
    (Shape, "friction", within(0, 10)),
    (Shape, "restitution", within(0, 1)),
    (Principled, "roughness", within(0, 1)),
    (Principled, "metallic", within(0, 1)),
    (Emission, "strength", within(0, 1e6)),
    (Sun, "strength", within(0, 1e6, True)),
    (Sun, "angle", within(0, 180)),
    (PointLight, "power", within(0, 1e9, True)),
    (PointLight, "radius", within(0, 1e5)),
    (AreaLight, "size", within(0, 1e5, True)),
    (AreaLight, "power", within(0, 1e9, True)),
    (Sky, "turbidity", within(1, 10)),
    (Sky, "strength", within(0, 1e6)),
    (Environment, "strength", within(0, 1e6)),
    (Floor, "size", within(0, 1e5, True)),
    (Floor, "friction", within(0, 10)),
    (Dome, "radius", within(0, 1e5, True)),
    (lambda **kw: Deform("bend", **kw), "amount", within(-1e3, 1e3)),
    (lambda **kw: Deform("wave", **kw), "period", within(0, 1e5, True)),
    (lambda **kw: Deform("wave", **kw), "wavelength", within(0, 1e5, True)),
    (lambda **kw: Deform("wave", **kw), "phase", within(-1e5, 1e5)),
    (Cloth, "aspect", within(0, 1, True)),
    (Cloth, "stiffness", within(0, 1e4, True)),
    (Cloth, "bending", within(0, 1e4)),
    (Cloth, "resolution", whole(4, 256)),
    (lambda **kw: SoftBody("sphere", **kw), "stiffness", within(0, 1, True)),
    (lambda **kw: SoftBody("sphere", **kw), "damping", within(0, 50)),
    (lambda **kw: Texture("noise", **kw), "scale", within(1e-5, 1e5)),
    (lambda **kw: Texture("noise", **kw), "size", whole(16, 2048)),
    (lambda **kw: Texture("noise", **kw), "seed", optional_(whole(0, 2**63 - 1))),
    (lambda **kw: Shape("prism", params={"sides": kw.pop("sides")}, **kw), "sides", None),
    (lambda **kw: Shape("superquadric", params={"e1": kw.pop("e1"), "e2": 1.0}, **kw), "e1", None),
]
VECTOR_FIELDS = [
    (Shape, "position", POINT),
    (Shape, "velocity", POINT),
    (Shape, "angular_velocity", POINT),
    (Shape, "quaternion_xyzw", QUATERNION),
    (Sun, "direction", DIRECTION),
    (Sky, "sun_direction", DIRECTION),
    (PointLight, "position", POINT),
    (AreaLight, "look_at", POINT),
    (Principled, "color", COLOR),
    (Emission, "color", COLOR),
    (PointLight, "color", COLOR),
    (AreaLight, "color", COLOR),
    (Environment, "color", COLOR),
]
CHOICE_FIELDS = [
    (Shape, "shape", ("cube", "sphere", "torus", "capsule", "icosphere", "cone", "cylinder", "prism")),
    (lambda **kw: Deform(**({"kind": "bend"} | kw)), "kind", ("bend", "twist", "taper", "stretch", "wave")),
    (lambda **kw: Deform("bend", **kw), "axis", ("X", "Y", "Z")),
    (Cloth, "pin", (None, "-x", "+x", "-y", "+y")),
]

# ------------------------------------------------------------------------------------------------- the values
SPECIAL = [0, 0.0, -0.0, -1, 1, 1e-300, -1e-300, 1e300, -1e300, 1e5, 1e5 + 1, 1e6, 2**63, -(2**63), 0.5, 2.5, 36]
scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e4, 1e4),
    st.integers(-(10**20), 10**20),
    st.integers(-5, 300),
    st.sampled_from(SPECIAL),
    st.sampled_from([np.float32(1.5), np.float64(np.nan), np.int64(3), np.int32(-2), np.bool_(True)]),
)
wrong_types = st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.just({}), st.just(object()))


def sequences(size: int):
    """Sequences of about ``size`` numbers: lists, tuples and arrays of the right length and of others."""
    length = st.sampled_from([size, size, size, 0, 1, size - 1, size + 1])
    items = st.one_of(st.floats(-2.0, 2.0), st.floats(allow_nan=True, allow_infinity=True), scalars, wrong_types)
    seqs = length.flatmap(lambda n: st.lists(items, min_size=max(n, 0), max_size=max(n, 0)))
    return st.one_of(seqs.map(tuple), seqs, seqs.map(lambda v: np.array(v, dtype=object) if v else np.zeros(0)))


anything = st.one_of(scalars, wrong_types, sequences(3))


def refused_in_one_line(err: TapforgeError, name: str) -> None:
    """The contract of a refusal: one line naming the argument and the line of this test that made the call."""
    message = str(err)
    assert "\n" not in message and name in message, message
    assert f"(at {HERE}:" in message or f"/{HERE}:" in message, message


def kept_or_refused(make, name: str, value, inside) -> None:
    """Construct with ``name=value``, then assign it to a valid one: each either refuses in one line or keeps a
    value inside the documented range."""
    for how in ("construct", "assign"):
        try:
            if how == "construct":
                obj = make(**{name: value})
            else:
                obj = make()
                setattr(obj, name, value)
        except TapforgeError as err:
            refused_in_one_line(err, name)
            continue
        if inside is not None:
            kept = getattr(obj, name)
            assert inside(kept), (how, name, value, kept)


@FAST
@given(st.data())
def test_numbers_are_refused_or_kept_in_range(data):
    make, name, inside = data.draw(st.sampled_from(NUMBER_FIELDS))
    value = data.draw(st.one_of(scalars, wrong_types, sequences(1)))
    if inside is None:  # a shape's parameter: the shape is made or the parameter refused
        try:
            obj = make(**{name: value})
        except TapforgeError as err:
            refused_in_one_line(err, f"params['{name}']")
        else:
            vertices = obj.mesh()[0]
            assert np.isfinite(vertices).all() and len(vertices) >= 4
        return
    kept_or_refused(make, name, value, inside)


@FAST
@given(st.data())
def test_vectors_and_colors_are_refused_or_kept_in_range(data):
    make, name, inside = data.draw(st.sampled_from(VECTOR_FIELDS))
    size = 4 if name == "quaternion_xyzw" else 3
    value = data.draw(st.one_of(sequences(size), scalars, wrong_types))
    kept_or_refused(make, name, value, inside)


@FAST
@given(st.data())
def test_names_from_a_list_are_refused_or_kept(data):
    make, name, allowed = data.draw(st.sampled_from(CHOICE_FIELDS))
    value = data.draw(st.one_of(st.sampled_from(allowed), st.text(max_size=6), anything))
    kept_or_refused(make, name, value, lambda v: v in allowed)


@FAST
@given(
    frame=st.one_of(st.integers(-5, 30), scalars, wrong_types),
    position=st.one_of(st.none(), sequences(3)),
    quaternion=st.one_of(st.none(), sequences(4)),
)
def test_keyframes_are_refused_or_give_finite_unit_poses(frame, position, quaternion):
    try:
        obj = Shape("cube").keyframe(frame, position, quaternion)
    except TapforgeError as err:
        refused_in_one_line(err, "keyframe")
        return
    positions, quaternions = obj.poses(4)
    assert np.isfinite(positions).all() and np.allclose(np.linalg.norm(quaternions, axis=-1), 1.0)


def arrays(trailing: int):
    """Arrays [T, trailing] with finite values, and with NaN, inf, huge values, zero rows or a wrong shape."""
    shape = st.tuples(st.integers(0, 5), st.sampled_from([trailing, trailing, trailing - 1, trailing + 1]))
    element = st.one_of(st.floats(-3, 3), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1e7]))
    return shape.flatmap(
        lambda s: st.lists(element, min_size=s[0] * s[1], max_size=s[0] * s[1]).map(
            lambda v: np.array(v, float).reshape(s)
        )
    )


@FAST
@given(positions=st.one_of(arrays(3), anything), quaternions=st.one_of(st.none(), arrays(4), anything))
def test_set_poses_is_refused_or_gives_finite_unit_poses(positions, quaternions):
    try:
        obj = Shape("cube").set_poses(positions, quaternions)
    except TapforgeError as err:
        refused_in_one_line(err, "set_poses")
        return
    count = len(np.asarray(positions))
    p, q = obj.poses(count)
    assert np.isfinite(p).all() and np.allclose(np.linalg.norm(q, axis=-1), 1.0)


@FAST
@given(
    position=st.one_of(arrays(3), sequences(3), anything),
    target=st.one_of(arrays(3), sequences(3)),
    roll=st.one_of(st.just(0.0), scalars, wrong_types, sequences(1), sequences(3)),
)
def test_camera_look_at_is_refused_or_gives_finite_matrices(position, target, roll):
    try:
        camera = Camera().look_at(position, target, roll)
    except TapforgeError as err:
        refused_in_one_line(err, "look_at")
        return
    frames = max(len(values) for values in camera._path)
    if all(len(values) in (1, frames) for values in camera._path):
        matrices = camera.matrices(frames)
        assert np.isfinite(matrices).all()
        rotations = matrices[:, :3, :3]  # still rotations, whatever the roll
        assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-9)
        assert np.isfinite(camera.intrinsics((64, 48))).all()


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@FAST
@given(metadata=st.one_of(st.dictionaries(st.text(max_size=3), json_values, max_size=4), anything))
def test_metadata_is_refused_or_json(metadata):
    scene = Scene(num_frames=2)
    try:
        scene.metadata = metadata
    except TapforgeError as err:
        refused_in_one_line(err, "metadata")
        return
    json.dumps(scene.describe(), allow_nan=False)


@FAST
@given(metadata=st.dictionaries(st.text(max_size=3), json_values, min_size=1, max_size=4))
def test_metadata_changed_after_it_was_set_is_checked_when_described(metadata):
    scene = Scene(num_frames=2)
    cube = scene.add(Shape("cube"))
    scene.metadata["later"] = cube.metadata["later"] = metadata  # a dict changed in place skips the assignment check
    try:
        described = scene.describe()
    except TapforgeError as err:
        message = str(err)
        assert "\n" not in message and "metadata['later']" in message, message
        return
    json.dumps(described, allow_nan=False)


def test_texture_sources_and_files(tmp_path):
    image = tmp_path / "texture.png"
    image.write_bytes(b"not decoded here")
    assert Texture.image(image, tile=2).source == str(image) and Texture.image(image).scale == 1.0
    assert Texture.procedural(str(image)).source == str(image)  # a user image through the legacy look
    for call, name in (
        (lambda: Texture.image(tmp_path / "missing.png"), "path"),
        (lambda: Texture.generated("clouds", 1), "family"),
        (lambda: Texture.generated("spectral", 1.5), "seed"),
        (lambda: Texture.generated("spectral", 1, tile=0), "tile"),
        (lambda: Texture.procedural("plasma"), "kind"),
        (lambda: Texture("spectral"), "seed"),  # a generated family needs a seed
        (lambda: Environment(hdri=str(tmp_path / "sky.hdr")), "hdri"),
    ):
        with pytest.raises(TapforgeError) as err:
            call()
        refused_in_one_line(err.value, name)


def test_errors_name_the_argument_the_value_what_is_allowed_and_the_script_line():
    line = inspect.currentframe().f_lineno + 2
    with pytest.raises(TapforgeError) as err:
        Camera(focal_length=-35)
    message = "Camera focal_length -35: focal_length must be in [1, 100000] (mm; Blender's least is 1) (at "
    assert str(err.value).startswith(message) and str(err.value).endswith(f"{HERE}:{line})"), str(err.value)
    scene = Scene(num_frames=2)
    with pytest.raises(TapforgeError, match=r"^Scene motion_blur nan: motion_blur must be in \[0, 1\]"):
        scene.motion_blur = float("nan")
    cube = Shape("cube")
    with pytest.raises(TapforgeError, match=r"^Shape size 0: size must be in \(0, 1000\]"):
        cube.size = 0  # an assignment after construction is checked like an argument
    assert cube.size == 1.0


def test_place_without_overlap_checks_its_arguments():
    pytest.importorskip("pybullet")
    from tapforge.synth.physics import PyBullet

    scene = Scene(num_frames=2, simulator_factory=PyBullet)
    cube = scene.add(Shape("cube"))
    rng = np.random.default_rng(0)
    for args, name in (
        ((cube, ((1, 1, 1), (0, 0, 0)), rng), "region"),  # min above max
        ((cube, ((0, 0, 0), (1, 1, math.nan)), rng), "region"),
        ((cube, ((0, 0, 0), (1, 1, 1)), 7), "rng"),
        (("cube", ((0, 0, 0), (1, 1, 1)), rng), "obj"),
    ):
        with pytest.raises(TapforgeError) as err:
            scene.simulator.place_without_overlap(*args)
        refused_in_one_line(err.value, name)
    assert scene.simulator.place_without_overlap(cube, ((0, 0, 1), (1, 1, 2)), rng)
    assert 0 <= cube.position[0] <= 1 and 1 <= cube.position[2] <= 2
    scene.close()


# --------------------------------------------------------------------------------------- rendered from drawn values
SCRIPT = """
from math import inf, nan  # noqa: F401 (in the drawn values' repr)

from tapforge.synth.scene import Camera, Dome, Emission, Floor, Principled, Shape, Sun, Texture

V = {values!r}


def build(scene, rng, cfg):
    scene.camera = Camera(V["focal_length"], V["sensor_width"]).look_at(V["camera"], (0.0, 0.0, 0.5))
    scene.floor = Floor(material=Principled(texture=Texture.generated("dead_leaves", 1, tile=8)))
    scene.background = Dome(Emission(strength=1.0, texture=Texture.generated("spectral", 2, tile=30, size=64)))
    scene += Sun(direction=V["sun"], strength=V["sun_strength"])
    for o in V["objects"]:
        scene += Shape(o["shape"], size=o["size"], position=o["position"], quaternion_xyzw=o["quaternion"],
                       static=o["static"], mass=o["mass"], material=Principled(color=o["color"]))
    scene.metadata["drawn"] = V
"""


@st.composite
def scene_values(draw):
    """Valid values drawn from the documented ranges, narrowed to a view where the objects are in frame."""
    unit = st.floats(0.0, 1.0)
    azimuth, elevation = draw(st.floats(0, 2 * np.pi)), draw(st.floats(0.35, 0.9))
    distance = draw(st.floats(7.0, 10.0))
    camera = (
        distance * np.cos(elevation) * np.cos(azimuth),
        distance * np.cos(elevation) * np.sin(azimuth),
        distance * np.sin(elevation),
    )
    quaternion = st.tuples(*[st.floats(-3, 3)] * 4).filter(lambda q: np.linalg.norm(q) > 0.1)  # not unit
    objects = st.fixed_dictionaries(
        {
            "shape": st.sampled_from(["cube", "sphere", "torus", "cone", "cylinder", "icosphere", "capsule"]),
            "size": st.floats(0.7, 1.8),
            "position": st.tuples(st.floats(-1.2, 1.2), st.floats(-1.2, 1.2), st.floats(0.5, 2.0)),
            "quaternion": quaternion,
            "static": st.booleans(),
            "mass": st.one_of(st.none(), st.floats(0.05, 50.0)),
            "color": st.tuples(unit, unit, unit),
        }
    )
    return {
        "focal_length": draw(st.floats(28.0, 60.0)),
        "sensor_width": draw(st.floats(24.0, 40.0)),
        "camera": tuple(float(c) for c in camera),
        "sun": draw(st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(0.3, 1))),
        "sun_strength": draw(st.floats(1.0, 5.0)),
        "objects": draw(st.lists(objects, min_size=1, max_size=2)),
    }


BROKEN = {  # one bad value in a drawn scene, and the argument its error names
    "focal_length": st.sampled_from([0.0, -35.0, math.nan, math.inf, 1e300]),
    "sensor_width": st.sampled_from([0.0, -1.0, math.nan]),
    "camera": st.sampled_from([(0.0, 0.0, 0.5), (math.nan, 1.0, 1.0), (1.0, 2.0)]),
    "sun": st.sampled_from([(0.0, 0.0, 0.0), (math.inf, 0.0, 1.0)]),
    "sun_strength": st.sampled_from([0.0, -3.0, math.nan]),
}
OBJECT_BROKEN = {
    "size": st.sampled_from([0.0, -1.0, math.nan, math.inf]),
    "position": st.sampled_from([(math.nan, 0.0, 1.0), (0.0, 1.0), (1e300, 0.0, 0.0)]),
    "quaternion": st.sampled_from([(0.0, 0.0, 0.0, 0.0), (math.nan, 0.0, 0.0, 1.0), (0.0, 0.0, 1.0)]),
    "mass": st.sampled_from([0.0, -1.0, math.nan]),
    "color": st.sampled_from([(1.5, 0.0, 0.0), (math.nan, 0.0, 0.0), (0.5, 0.5)]),
    "shape": st.sampled_from(["pyramid", ""]),
}
NAMES = {
    "camera": "position",
    "sun": "direction",
    "sun_strength": "strength",
    "quaternion": "quaternion_xyzw",
    "color": "color",
}


@pytest.mark.parametrize("key", sorted(BROKEN) + sorted(OBJECT_BROKEN))
@settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(values=scene_values(), data=st.data())
def test_a_scene_script_with_a_bad_value_stops_at_its_line(key, values, data, tmp_path_factory):
    pytest.importorskip("pybullet")
    from tapforge.synth.config import load_config
    from tapforge.synth.pipeline import build_scene

    if key in BROKEN:
        values[key] = data.draw(BROKEN[key])
    else:
        values["objects"][-1][key] = data.draw(OBJECT_BROKEN[key])
    folder = tmp_path_factory.mktemp("broken")
    (folder / "scene.py").write_text(SCRIPT.format(values=values))
    (folder / "scene.yaml").write_text("inherit: base\nscene:\n  script: scene.py\n")
    with pytest.raises(TapforgeError) as err:
        build_scene(load_config(folder / "scene.yaml", ["scene.num_frames=2"]), 0)
    message = str(err.value)
    assert "\n" not in message and NAMES.get(key, key) in message, message
    assert f"{folder / 'scene.py'}:" in message or "scene.py:" in message, message  # the script's line


@pytest.fixture(scope="module")
def renderer_session():
    """One Blender session for every drawn scene (each gets its own script, config and renderer on it)."""
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    return {}


@pytest.mark.slow
@settings(max_examples=3, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(values=scene_values())
def test_scenes_from_drawn_values_render_with_tracks_that_agree_with_segmentation(
    values, renderer_session, tmp_path_factory
):
    from tapforge.synth.config import load_config
    from tapforge.synth.gt_check import render_pass_agreement
    from tapforge.synth.pipeline import SceneRenderer, make_clip

    folder = tmp_path_factory.mktemp("drawn")
    (folder / "scene.py").write_text(SCRIPT.format(values=values))
    (folder / "scene.yaml").write_text("inherit: base\nscene:\n  script: scene.py\n")
    overrides = ["render.resolution=64", "render.samples=4", "scene.num_frames=4", "tracks.num_tracks=256"]
    renderer = SceneRenderer(load_config(folder / "scene.yaml", overrides), share=renderer_session.get("first"))
    renderer_session.setdefault("first", renderer)
    rendered = renderer.render(0)
    clip = make_clip(rendered, renderer.config)
    assert np.isfinite(clip.tracks).all() and np.isfinite(clip.tracks_3d).all()
    json.dumps(clip.meta, allow_nan=False)  # meta.json is JSON: no NaN token
    figures = render_pass_agreement(clip, rendered.passes)
    on_objects = render_pass_agreement(clip, rendered.passes, [o.instance_id for o in rendered.scene.objects])
    print(figures, on_objects)
    assert figures["visible_points"] > 100 and on_objects["visible_points"] > 50, (figures, on_objects)
    for f in (figures, on_objects):  # the rigid thresholds of tests/synth/test_tracks.py
        assert f["visible_segmentation_match"] > 0.9 and f["visible_position_error_px"] < 1.0, f
        assert not f["hidden_plainly_visible"] > 0.05, f  # NaN: no hidden point in frame
    ids = set(np.unique(clip.object_ids).tolist())
    assert ids <= {0} | {o.instance_id for o in rendered.scene.objects}
