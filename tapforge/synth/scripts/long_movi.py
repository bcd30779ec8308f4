"""Long MOVi scenes (the long_movi presets): MOVi-E's objects and look in a clip where something happens all the
time, for trackers trained on a thousand frames and more (TAPNext++ fine-tunes on 1024-frame clips).

In MOVi a clip's objects settle in two seconds; here, over the whole clip:

- objects keep arriving: every ``arrival_interval`` seconds one is tossed in towards where the camera looks, from
  a point out of the camera's view until then (``Object.release_frame``: held there until its frame, then physics);
- one or two movers, large kinematic shapes (a puck, a slab, a block) on smooth closed loops over the floor, push
  and carry the objects around, and hide them from the camera for a while;
- the camera orbits the scene (one turn every ``orbit_period`` seconds), so what leaves the view comes back; its
  distance, elevation and look-at point wander smoothly between their bounds (the scale changes), and it rolls
  smoothly by up to ``roll_amplitude`` degrees (TAPNext++ found roll crucial for re-detection).

The objects, their textures, the floor, the dome and the sun are movi's (`tapforge.synth.scripts.movi`: the same
helpers and keys); ``deforming_share`` and ``num_cloths`` deform objects and drape cloth as in movi_deform.
A clip in which nothing would move (no arrivals, no movers, a still camera) is refused before anything renders.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tapforge.base import seeds
from tapforge.synth.scene import Camera, Object, Scene, Shape, about_z
from tapforge.synth.script_config import integer_range, is_int, is_number, number_range, option, subset_of
from tapforge.synth.scripts import movi
from tapforge.synth.shapes import SHAPES

GRAVITY = 9.81
MOVER_SHAPES = {"cylinder": "a puck", "prism": "a slab", "cube": "a block"}
LAUNCH_TRIES = 40
MOVER_TRIES = 20


def _bounds(lo: float, hi: float, what: str) -> tuple:
    """A check and fix for one value or a [min, max] pair in [lo, hi]."""
    return number_range(lo, hi), f"a number or [min, max] in [{lo:g}, {hi:g}] ({what})"


def _or_none(lo: float, hi: float):
    """0 (none), or a number or [min, max] pair in [lo, hi]."""
    return lambda v: (is_number(v) and v == 0) or number_range(lo, hi)(v)


@dataclass
class Config:
    """The long_movi script's keys (``scene:``); a [min, max] pair is drawn once per scene unless it says that the
    value wanders between the two over the clip."""

    # --- objects (movi's objects and looks)
    num_initial_objects: int | list[int] = option(
        [6, 10], integer_range(0, 100), "an integer or [min, max] in [0, 100]"
    )
    arrival_interval: float | list[float] = option(
        [1.0, 2.5], _or_none(0.1, 600), "seconds between arrivals: a number or [min, max] in [0.1, 600], or 0 for none"
    )
    max_arrivals: int = option(40, lambda v: is_int(v) and 0 <= v <= 500, "an integer in [0, 500]")
    shapes: list[str] = option(list(SHAPES), subset_of(SHAPES), f"a non-empty list from {list(SHAPES)}")
    object_scale: float | list[float] = option([0.6, 2.0], *_bounds(0.05, 20, "longest side in metres, uniform"))
    materials: list[str] = option(
        list(movi.MATERIALS), subset_of(movi.MATERIALS), f"a non-empty list from {list(movi.MATERIALS)}"
    )
    appearance: Literal["natural", "plain", "legacy"] = "natural"
    background: Literal["dome", "sky", "hdri", "plain"] = "dome"
    floor_texture: bool = True
    deforming_share: float = option(0.0, movi.number_in(0, 1), "a fraction in [0, 1] of the objects")
    num_cloths: int | list[int] = option(0, integer_range(0, 10), "an integer or [min, max] in [0, 10]")
    # --- movers
    num_movers: int | list[int] = option([1, 2], integer_range(0, 4), "an integer or [min, max] in [0, 4]")
    mover_size: float | list[float] = option([1.5, 3.0], *_bounds(0.5, 10, "metres"))
    mover_speed: float | list[float] = option([1.0, 2.5], *_bounds(0.1, 10, "metres per second"))
    # --- camera
    orbit_period: float | list[float] = option(
        [20.0, 35.0], _or_none(2, 3600), "seconds per turn: a number or [min, max] in [2, 3600], or 0 for no orbit"
    )
    camera_distance: float | list[float] = option([8.0, 15.0], *_bounds(2, 30, "metres to the look-at point; wanders"))
    camera_elevation: float | list[float] = option([12.0, 45.0], *_bounds(5, 85, "degrees above the floor; wanders"))
    target_wander: float = option(2.0, movi.number_in(0, 10), "a number in [0, 10] (metres)")
    roll_amplitude: float = option(25.0, movi.number_in(0, 90), "a number in [0, 90] (degrees)")
    focal_length: float | list[float] = option(35.0, *_bounds(1, 500, "mm"))


def _movi_config(cfg: Config, **keys) -> movi.Config:
    """The movi keys that its helpers read, from ours."""
    shared = {f.name for f in dataclasses.fields(movi.Config)} & {f.name for f in dataclasses.fields(Config)}
    return movi.Config(**{name: getattr(cfg, name) for name in shared}, **keys)


# ------------------------------------------------------------------------------------------------ smooth paths
def _wave(rng: np.random.Generator, seconds: np.ndarray, periods: tuple[float, float] = (8.0, 20.0)) -> np.ndarray:
    """A smooth random curve in [-1, 1]: two sines of random periods (seconds) and phases."""
    p1, p2 = rng.uniform(*periods, size=2)
    a, b = rng.uniform(0, 2 * np.pi, size=2)
    return (np.sin(2 * np.pi * seconds / p1 + a) + 0.6 * np.sin(2 * np.pi * seconds / p2 + b)) / 1.6


def _between(rng: np.random.Generator, seconds: np.ndarray, value) -> np.ndarray:
    """A config value that wanders: a constant, or a smooth curve between [min, max]."""
    lo, hi = (value, value) if not isinstance(value, list) else value
    return lo + (hi - lo) * (0.5 + 0.5 * _wave(rng, seconds))


def camera_path(rng: np.random.Generator, cfg: Config, num_frames: int, frame_rate: int):
    """Per-frame positions [T,3], look-at points [T,3] and roll [T] (radians): an orbit whose distance, elevation
    and look-at point wander, rolling smoothly."""
    seconds = np.arange(num_frames) / frame_rate
    period = movi.draw(rng, cfg.orbit_period)
    turning = rng.choice([-1.0, 1.0]) * 2 * np.pi * seconds / period if period else 0.0
    azimuth = rng.uniform(0, 2 * np.pi) + turning
    distance = _between(rng, seconds, cfg.camera_distance)
    elevation = np.radians(_between(rng, seconds, cfg.camera_elevation))
    wander = cfg.target_wander
    target = np.stack(
        [
            _between(rng, seconds, [-wander, wander]),
            _between(rng, seconds, [-wander, wander]),
            np.full(num_frames, 0.5),
        ],
        -1,
    )
    offset = np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)], -1)
    roll = np.radians(cfg.roll_amplitude) * _wave(rng, seconds, (6.0, 15.0))
    return target + distance[:, None] * offset, target, roll


def mover_path(rng: np.random.Generator, speed: float, num_frames: int, frame_rate: int, lift: float):
    """Positions [T,3] and quaternions [T,4] of a closed loop over the floor (an ellipse with a wobble, turned and
    shifted at random), driven round at about ``speed`` m/s, facing along the path."""
    a, b = rng.uniform(2.5, 5.0, size=2)
    harmonic, wobble, phase = int(rng.integers(2, 4)), rng.uniform(0.0, 0.2), rng.uniform(0, 2 * np.pi)
    turn, centre = rng.uniform(0, 2 * np.pi), rng.uniform(-1.5, 1.5, size=2)

    def loop(s: np.ndarray) -> np.ndarray:
        x = a * np.cos(s) + wobble * a * np.cos(harmonic * s + phase)
        y = b * np.sin(s) + wobble * b * np.sin(harmonic * s + phase)
        c, d = np.cos(turn), np.sin(turn)
        return np.stack([c * x - d * y + centre[0], d * x + c * y + centre[1]], -1)

    length = np.linalg.norm(np.diff(loop(np.linspace(0, 2 * np.pi, 721)), axis=0), axis=-1).sum()
    direction = rng.choice([-1.0, 1.0])
    s = rng.uniform(0, 2 * np.pi) + direction * 2 * np.pi * speed / length * np.arange(num_frames) / frame_rate
    xy = loop(s)
    step = loop(s + 1e-3 * direction) - xy  # along the path
    heading = np.unwrap(np.arctan2(step[:, 1], step[:, 0]))
    return np.column_stack([xy, np.full(num_frames, lift)]), about_z(heading)


# ---------------------------------------------------------------------------------------------- arrivals
def _seen(point: np.ndarray, radius: float, cameras: np.ndarray, camera: Camera, resolution) -> np.ndarray:
    """[T] bool: a sphere at ``point`` shows in the frame of each camera-to-world matrix [T,4,4]."""
    local = np.einsum("tji,tj->ti", cameras[:, :3, :3], point - cameras[:, :3, 3])  # world -> camera (looks down -z)
    depth = -local[:, 2]
    half_x = camera.sensor_width / (2 * camera.focal_length)
    half_y = half_x * resolution[1] / resolution[0]
    margin = radius / np.maximum(depth, 1e-6)
    inside = (np.abs(local[:, 0]) / np.maximum(depth, 1e-6) < half_x + margin) & (
        np.abs(local[:, 1]) / np.maximum(depth, 1e-6) < half_y + margin
    )
    return (depth > -radius) & inside


def arrival_frames(rng: np.random.Generator, cfg: Config, num_frames: int, frame_rate: int) -> list[int]:
    """Release frames, ``arrival_interval`` seconds apart, each early enough to land within the clip."""
    if cfg.arrival_interval == 0:
        return []
    frames, now = [], movi.draw(rng, cfg.arrival_interval) * rng.uniform(0.3, 1.0)
    while len(frames) < cfg.max_arrivals and round(now * frame_rate) < num_frames - frame_rate:
        frames.append(int(round(now * frame_rate)))
        now += movi.draw(rng, cfg.arrival_interval)
    return frames


def toss(
    rng: np.random.Generator,
    obj: Object,
    release: int,
    scene: Scene,
    cameras: np.ndarray,
    targets: np.ndarray,
    held: list[tuple[np.ndarray, float]],
) -> None:
    """Hold ``obj`` until ``release`` at a point out of the camera's view until then (the first of a few tries
    that is, else the least seen; ``cameras``: the clip's camera-to-world matrices), clear of the other held
    objects, with a velocity that lands it near where the camera looks (``targets``) a second later."""
    cameras = cameras[: release + 1]
    radius = obj.size * 0.9
    landing_frame = min(release + scene.frame_rate, scene.num_frames - 1)
    best = None
    for attempt in range(LAUNCH_TRIES):  # higher and higher: a camera that looks down sees much of the air
        landing = targets[landing_frame, :2] + rng.uniform(-3.0, 3.0, size=2)
        angle, reach = rng.uniform(0, 2 * np.pi), rng.uniform(3.0, 8.0)
        height = rng.uniform(4.0, 9.0 + 0.25 * attempt)
        launch = np.array([*(landing + reach * np.array([np.cos(angle), np.sin(angle)])), height])
        if any(np.linalg.norm(launch - other) < radius + size for other, size in held):
            continue
        seen = int(_seen(launch, radius, cameras, scene.camera, scene.resolution).sum())
        if best is None or seen < best[0]:
            best = (seen, launch, landing)
        if seen == 0:
            break
    _, launch, landing = best
    rise = rng.uniform(0.0, 2.0)  # m/s upwards
    drop = launch[2] - radius / 2
    flight = (rise + np.sqrt(rise**2 + 2 * GRAVITY * drop)) / GRAVITY  # seconds until it reaches the floor
    obj.position = tuple(launch.tolist())
    obj.velocity = (*((landing - launch[:2]) / flight).tolist(), float(rise))
    obj.angular_velocity = tuple(rng.uniform(-3.0, 3.0, size=3).tolist())
    obj.release_frame = release
    held.append((launch, radius))


# ------------------------------------------------------------------------------------------------ the scene
def build(scene: Scene, rng: np.random.Generator, cfg: Config) -> None:
    """One long MOVi scene."""
    look = seeds.rng(scene.seed, "movi", "look")  # movi's appearance stream
    mcfg = _movi_config(cfg, num_static_objects=cfg.num_initial_objects, num_dynamic_objects=1, soft_share=0.0)
    T, fps = scene.num_frames, scene.frame_rate

    # --- camera: an orbit that wanders and rolls
    positions, targets, roll = camera_path(rng, cfg, T, fps)
    scene.camera = Camera(movi.draw(rng, cfg.focal_length)).look_at(positions, targets, roll)
    scene.view_transform = movi.VIEW_TRANSFORMS[cfg.appearance]
    scene.metadata["appearance"] = cfg.appearance

    # --- floor, dome and sun: movi's
    movi._surroundings(scene, rng, look, mcfg)

    # --- movers: large kinematic shapes on closed loops over the floor
    movers: list[tuple[Shape, np.ndarray]] = []
    side = movi.texture_side(max(scene.resolution), 1, 128, 512)
    for _ in range(movi.draw(rng, cfg.num_movers, integer=True)):
        shape = str(rng.choice(list(MOVER_SHAPES)))
        params = {"height": float(rng.uniform(0.3, 0.6))} if shape == "cylinder" else movi.shape_params(rng, shape)
        size = movi.draw(rng, cfg.mover_size)
        mover = Shape(shape, size=size, params=params, friction=1.0, restitution=0.1, smooth=shape == "cylinder")
        mover.material = (
            movi.natural_material(look, "textured", size, side, scene.assets.textures)
            if cfg.appearance == "natural"
            else movi.legacy_material(rng, mcfg, scene.assets.textures)
        )
        vertices = mover.mesh()[0]
        lift, reach = 0.005 - vertices[:, 2].min(), np.linalg.norm(vertices[:, :2], axis=-1).max()
        speed = movi.draw(rng, cfg.mover_speed)
        for _ in range(MOVER_TRIES):  # a loop that keeps clear of the other movers
            path, heading = mover_path(rng, speed, T, fps, lift)
            if all((np.linalg.norm(path - other, axis=-1) > reach + r).all() for other, r in movers):
                break
        else:
            continue
        scene += mover.set_poses(path, heading)
        mover.name, mover.metadata = f"mover {len(movers) + 1}", {"is_dynamic": True, "mover": MOVER_SHAPES[shape]}
        movers.append((path, reach))
    if movers:
        scene.simulator.run(1)  # makes the movers' bodies, so that the objects below are placed clear of them

    # --- the first objects, placed and settled as in movi
    for obj in movi._add_objects(scene, rng, look, mcfg, dynamic=False):
        obj.metadata["arrival"] = "initial"
    scene.simulator.run(movi.SETTLE_FRAMES)
    for obj in scene.objects:
        if not obj.scripted:
            obj.velocity = obj.angular_velocity = (0.0, 0.0, 0.0)
            obj.friction, obj.restitution = 0.5, 0.5
    scene.floor.friction, scene.floor.restitution = 0.3, 0.5

    # --- arrivals: tossed in from out of view, one every arrival_interval seconds
    held: list[tuple[np.ndarray, float]] = []
    cameras = scene.camera.matrices(T)
    for release in arrival_frames(rng, cfg, T, fps):
        (obj,) = movi._add_objects(scene, rng, look, mcfg, dynamic=True)
        obj.friction, obj.restitution = 0.5, 0.5
        obj.metadata["arrival"] = "tossed"
        toss(rng, obj, release, scene, cameras, targets, held)

    # --- simulate, then deform and drape (their own streams, as in movi)
    scene.simulator.run()
    if cfg.deforming_share or cfg.num_cloths:
        movi._deform_and_drape(scene, mcfg, look)
    scene.metadata["long_movi"] = {
        "arrival_frames": [o.release_frame for o in scene.objects if o.release_frame is not None],
        "movers": [o.instance_id for o in scene.objects if o.metadata.get("mover")],
    }


def check_config(cfg: Config, config: dict) -> list[str]:
    """Checks across keys, before anything renders: something must move over the clip."""
    problems = movi.check_config(_movi_config(cfg), config)
    arrivals = cfg.arrival_interval != 0 and cfg.max_arrivals > 0
    movers = cfg.num_movers != 0 and cfg.num_movers != [0, 0]
    ranges = [v for v in (cfg.camera_distance, cfg.camera_elevation) if isinstance(v, list) and v[0] < v[1]]
    camera = cfg.orbit_period != 0 or bool(ranges) or cfg.target_wander > 0 or cfg.roll_amplitude > 0
    if not (arrivals or movers or camera):
        problems.append(
            "scene: nothing in this long_movi clip would move after its objects settle (no arrivals, no movers, a "
            "still camera); set scene.arrival_interval (e.g. [1.0, 2.5]), scene.num_movers (e.g. [1, 2]) or a "
            "camera motion (e.g. scene.orbit_period=[20, 35])"
        )
    return problems
