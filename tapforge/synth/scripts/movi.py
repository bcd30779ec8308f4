"""MOVi scenes (Kubric's ``challenges/movi`` workers) on the scene API: the movi_a, movi_b, movi_e, movi_f,
panning_movi_e, long_clip and tiny presets are this script with different keys.

Static objects are placed without overlap and settle for 100 frames; 1-3 dynamic ones are tossed in towards the
centre; the camera is fixed, random or moving (optionally panning). The variant choices are keys: the object
set and its sizes, the colour strategy, the camera mode, the look.

``appearance`` chooses the look: ``natural`` (every object, the floor and the background dome carry textures with
natural-image statistics from `tapforge.synth.textures`, or the user's images; smooth shading; AgX), ``plain`` (Kubric's
plain MOVi-A/B materials, smooth shading, AgX) or ``legacy`` (Blender procedural textures, flat shading, the
Standard view: the look before natural textures). The appearance is drawn from its own random stream, so the
three looks of one seed share objects, motion, camera and light.

Deforming surfaces (the movi_deform preset): ``deforming_share`` of the objects bend, twist, taper, stretch or
ripple over the clip (`tapforge.synth.scene.Deform`), ``num_cloths`` sheets of cloth fall over the scene and drape over
the objects (`tapforge.synth.scene.Cloth`), and ``soft_share`` of the tossed shapes are soft (`tapforge.synth.scene.SoftBody`:
same physics, a surface that squashes and wobbles); all are drawn from their own random stream, so the rigid
layout of a seed is the one movi_e draws.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tapforge.base import seeds
from tapforge.synth.scene import (
    DEFORM_KINDS,
    PROCEDURAL_TEXTURES,
    Asset,
    Camera,
    Cloth,
    Deform,
    Dome,
    Emission,
    Environment,
    Floor,
    Principled,
    Scene,
    Shape,
    Sky,
    SoftBody,
    Sun,
    Texture,
)
from tapforge.synth.script_config import integer_range, is_number, number_range, option, subset_of
from tapforge.synth.shapes import FACETED, SHAPES
from tapforge.synth.textures import FAMILIES

# Kubric MOVi constants
STATIC_SPAWN_REGION = ((-7, -7, 0), (7, 7, 10))
DYNAMIC_SPAWN_REGION = ((-5, -5, 1), (5, 5, 5))
VELOCITY_RANGE = ((-4, -4, 0), (4, 4, 0))
SETTLE_FRAMES = 100
MOVI_A_CAMERA = (7.48113, -6.50764, 5.34367)
CLEVR_COLORS = {
    "blue": (0.1628, 0.2932, 0.8412),
    "brown": (0.4977, 0.3190, 0.1192),
    "cyan": (0.1655, 0.8129, 0.8129),
    "gray": (0.3400, 0.3400, 0.3400),
    "green": (0.1255, 0.5020, 0.0784),
    "purple": (0.5059, 0.1412, 0.7529),
    "red": (0.6784, 0.1333, 0.1333),
    "yellow": (1.0000, 0.9333, 0.0784),
}
MATERIALS = ("rubber", "metal", "textured")
CAMERAS = ("fixed", "fixed_random", "linear_movement", "linear_movement_linear_lookat")
# generated texture families: how often each is drawn; stripes are narrow-band, so never on floor or dome
OBJECT_FAMILIES = dict(zip(FAMILIES, (0.35, 0.2, 0.1, 0.15, 0.2)))
SURROUND_FAMILIES = {"dead_leaves": 0.4, "spectral": 0.2, "mosaic": 0.15, "mixture": 0.25}
VIEW_TRANSFORMS = {"natural": "AgX", "plain": "AgX", "legacy": "Standard"}


def number_in(lo: float, hi: float):
    """One number in [lo, hi] (not a range: the key is used as one value)."""
    return lambda v: is_number(v) and lo <= v <= hi


@dataclass
class Config:
    """The MOVi worker's choices (Kubric's flags), as ``scene:`` keys."""

    num_static_objects: int | list[int] = option(
        [10, 20], integer_range(0, 100), "an integer or [min, max] in [0, 100]"
    )
    num_dynamic_objects: int | list[int] = option([1, 3], integer_range(0, 50), "an integer or [min, max] in [0, 50]")
    shapes: list[str] = option(list(SHAPES), subset_of(SHAPES), f"a non-empty list from {list(SHAPES)}")
    size_distribution: Literal["uniform", "choice"] = "uniform"  # uniform in object_scale, or one of its values
    object_scale: float | list[float] = option(
        [0.75, 3.0],
        lambda v: all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and 0.05 <= x <= 20
            for x in (v if isinstance(v, list) and v else [v])
        ),
        "a size or a list of sizes in [0.05, 20]: [min, max] for uniform, the sizes for choice",
    )
    materials: list[str] = option(list(MATERIALS), subset_of(MATERIALS), f"a non-empty list from {list(MATERIALS)}")
    colors: Literal["random", "random_hue", "clevr"] = "random"  # untextured colours (legacy and plain looks)
    camera: Literal[CAMERAS] = "linear_movement"
    max_camera_movement: float = option(4.0, number_in(0, 100), "a number in [0, 100]")
    focal_length: float | list[float] = option(35.0, number_range(1, 500), "a number or [min, max] in [1, 500] (mm)")
    sensor_width: float | list[float] = option(32.0, number_range(1, 200), "a number or [min, max] in [1, 200] (mm)")
    motion_blur: float | list[float] = option(0.0, number_range(0, 1), "a number or [min, max] in [0, 1]")
    background: Literal["dome", "sky", "hdri", "plain"] = "dome"
    surround_color: Literal["grey", "random", "random_hue"] = "random"  # plain background, untextured floor
    appearance: Literal["natural", "plain", "legacy"] = "natural"
    floor_texture: bool = True
    deforming_share: float = option(0.0, number_in(0, 1), "a fraction in [0, 1] of the objects")
    num_cloths: int | list[int] = option(0, integer_range(0, 10), "an integer or [min, max] in [0, 10]")
    soft_share: float = option(0.0, number_in(0, 1), "a fraction in [0, 1] of the dynamic shapes")


def draw(rng: np.random.Generator, value, integer: bool = False):
    """A config value that is a number or a [min, max] pair -> one number."""
    if isinstance(value, list):
        lo, hi = value
        return int(rng.integers(lo, hi + 1)) if integer else float(rng.uniform(lo, hi))
    return int(value) if integer else float(value)


def random_color(rng: np.random.Generator) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.4, 1.0), rng.uniform(0.3, 1.0))


def color(rng: np.random.Generator, strategy: str) -> tuple[float, float, float]:
    """An untextured color: CLEVR's palette, a random hue at full saturation (Kubric's uniform_hue), or random."""
    if strategy == "clevr":
        return CLEVR_COLORS[str(rng.choice(sorted(CLEVR_COLORS)))]
    if strategy == "random_hue":
        return colorsys.hsv_to_rgb(rng.uniform(), 1.0, 1.0)
    return random_color(rng)


def sample_point_in_half_sphere_shell(
    rng: np.random.Generator, inner: float, outer: float, offset: float = 0.0
) -> np.ndarray:
    """Uniform point in the upper half of a spherical shell, z > offset (Kubric's rejection sampler)."""
    while True:
        point = rng.uniform((-outer, -outer, offset), (outer, outer, outer))
        if inner <= np.linalg.norm(point) <= outer:
            return point


def _linear_camera(rng, speed: float, inner: float, outer: float, offset: float = 0.1):
    while True:
        start = sample_point_in_half_sphere_shell(rng, inner, outer, offset)
        direction = rng.random(3) - 0.5
        end = start + direction / np.linalg.norm(direction) * speed
        if inner <= np.linalg.norm(end) <= outer and end[2] > offset:
            return start, end


def _linear_lookat(rng, inner: float = 1.0, outer: float = 4.0):
    through = sample_point_in_half_sphere_shell(rng, 0.0, inner, 0.0)
    while True:
        start = sample_point_in_half_sphere_shell(rng, 0.0, outer, 0.0)
        if start[-1] < inner:
            break
    end = through + rng.random() * 0.5 * (through - start)
    return (end, start) if rng.random() < 0.5 else (start, end)


def camera_path(rng: np.random.Generator, cfg: Config, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame camera positions and look-at points [T,3] for the camera mode."""
    origin = np.zeros(3)
    if cfg.camera == "fixed":
        return np.array(MOVI_A_CAMERA), origin
    if cfg.camera == "fixed_random":
        return sample_point_in_half_sphere_shell(rng, 7.0, 9.0, 0.1), origin
    panning = cfg.camera == "linear_movement_linear_lookat"
    speed = rng.uniform(0.0, cfg.max_camera_movement)
    start, end = _linear_camera(rng, speed, 6.0 if panning else 8.0, 12.0)
    look_start, look_end = _linear_lookat(rng) if panning else (origin, origin)
    # Kubric interpolates over [frame_start-1, frame_end+1] so flow stays defined at the clip ends
    interp = (np.arange(num_frames) + 1.0) / (num_frames + 2.0)
    return (
        interp[:, None] * start + (1 - interp[:, None]) * end,
        interp[:, None] * look_start + (1 - interp[:, None]) * look_end,
    )


def legacy_material(rng: np.random.Generator, cfg: Config, textures: list[str]) -> Principled:
    """Kubric's plain rubber and metal, or a Blender procedural texture (or a user image) between two colors."""
    kind = str(rng.choice(cfg.materials))
    if kind == "metal":
        return Principled(color(rng, cfg.colors), roughness=float(rng.uniform(0.15, 0.35)), metallic=1.0, label="metal")
    if kind == "rubber":
        return Principled(color(rng, cfg.colors), roughness=float(rng.uniform(0.6, 0.9)), label="rubber")
    first = random_color(rng)
    source = str(rng.choice(list(PROCEDURAL_TEXTURES) + (["image"] if textures else [])))
    if source == "image":
        source = str(rng.choice(textures))
    texture = Texture.procedural(source, first, random_color(rng), float(rng.uniform(2.0, 12.0)))
    return Principled(texture=texture, roughness=float(rng.uniform(0.3, 0.9)), label="textured")


def texture_side(resolution: int, texels_per_pixel: float, lo: int, hi: int) -> int:
    """A power-of-two texture side near ``texels_per_pixel`` times the render resolution, in [lo, hi]."""
    return int(np.clip(2 ** np.ceil(np.log2(resolution * texels_per_pixel)), lo, hi))


def natural_texture(
    rng: np.random.Generator, families: dict[str, float], tile: float, size: int, textures: list[str] = ()
) -> Texture:
    """A texture repeating every ``tile`` units: one of the user's images half the time when there are any, else a
    generated one."""
    if textures and rng.random() < 0.5:
        return Texture.image(str(rng.choice(textures)), tile)
    family = str(rng.choice(list(families), p=list(families.values())))
    return Texture.generated(family, int(rng.integers(2**31)), tile, size)


def natural_material(rng: np.random.Generator, kind: str, size: float, side: int, textures: list[str]) -> Principled:
    """An object's natural look: a texture tiled once over its size and a BSDF of its material kind."""
    texture = natural_texture(rng, OBJECT_FAMILIES, size, side, textures)
    roughness = {"metal": (0.15, 0.35), "rubber": (0.6, 0.9)}.get(kind, (0.3, 0.9))
    return Principled(
        texture=texture, roughness=float(rng.uniform(*roughness)), metallic=1.0 if kind == "metal" else 0.0, label=kind
    )


def shape_params(rng: np.random.Generator, shape: str) -> dict:
    if shape == "superquadric":
        return {"e1": float(rng.uniform(0.2, 1.6)), "e2": float(rng.uniform(0.2, 1.6))}
    if shape == "blob":
        return {"seed": int(rng.integers(2**31))}
    if shape == "prism":
        return {"sides": int(rng.integers(3, 7))}
    return {}


def _surroundings(scene: Scene, rng: np.random.Generator, look: np.random.Generator, cfg: Config) -> None:
    """Floor, background and sun; the background is part of the look (drawn from ``look``)."""
    textures = scene.assets.textures
    grey = (0.5, 0.5, 0.5)
    surround = (lambda: grey) if cfg.surround_color == "grey" else (lambda: color(rng, cfg.surround_color))
    if cfg.floor_texture:
        floor = Principled(
            texture=Texture.procedural(
                str(rng.choice(PROCEDURAL_TEXTURES + tuple(textures))),
                random_color(rng),
                random_color(rng),
                float(rng.uniform(0.5, 3.0)),
            ),
            label="textured",
        )
    else:
        floor = Principled(surround(), roughness=0.8, label="rubber")
    background_color = surround()
    side = texture_side(max(scene.resolution), 4, 256, 1024)
    if cfg.appearance == "natural" and cfg.floor_texture:
        floor = Principled(
            texture=natural_texture(look, SURROUND_FAMILIES, look.uniform(16, 32), side, textures),
            roughness=float(look.uniform(0.5, 0.9)),
            label="textured",
        )
    dome_texture = natural_texture(look, SURROUND_FAMILIES, look.uniform(30, 50), side)
    scene.floor = Floor(material=floor)
    elevation, azimuth = rng.uniform(np.radians(25), np.radians(80)), rng.uniform(0, 2 * np.pi)
    sun = (np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation))
    scene += Sun(direction=tuple(map(float, sun)), strength=float(rng.uniform(2.0, 5.0)))
    if cfg.background == "dome":
        scene.background = Dome(Emission(strength=float(look.uniform(1.0, 2.0)), texture=dome_texture))
    elif cfg.background == "plain":
        scene.background = Environment(color=background_color)
    elif cfg.background == "hdri":
        scene.background = Environment(hdri=str(look.choice(scene.assets.hdris)))
    else:
        scene.background = Sky(sun_direction=sun, turbidity=float(look.uniform(1.0, 4.0)))


def _add_objects(scene: Scene, rng: np.random.Generator, look: np.random.Generator, cfg: Config, dynamic: bool) -> list:
    textures, assets = scene.assets.textures, scene.assets.objects
    side = texture_side(max(scene.resolution), 1, 128, 512)
    soft_rng = seeds.rng(scene.seed, "movi", "soft")  # its own stream: soft or not changes no other draw
    added = []
    for _ in range(draw(rng, cfg.num_dynamic_objects if dynamic else cfg.num_static_objects, integer=True)):
        asset_id = str(rng.choice(assets)) if assets and rng.random() < 0.5 else None
        shape = None if asset_id else str(rng.choice(cfg.shapes))
        sizes = cfg.object_scale if isinstance(cfg.object_scale, list) else [cfg.object_scale]
        size = (
            float(rng.choice(sizes))
            if cfg.size_distribution == "choice"
            else draw(rng, sizes[0] if len(sizes) == 1 else sizes)
        )
        material = legacy_material(rng, cfg, textures)  # drawn in every look: the looks share the geometry
        if cfg.appearance == "natural":
            material = natural_material(look, material.label, size, side, textures)
        common = dict(
            size=size,
            material=material,
            smooth=cfg.appearance != "legacy" and shape not in FACETED,
            friction=1.0,
            restitution=0.0,
            metadata={"is_dynamic": dynamic},
        )
        soft = dynamic and cfg.soft_share > 0 and soft_rng.random() < cfg.soft_share
        obj = (
            Asset(asset_id=asset_id, **common)
            if asset_id
            else (SoftBody if soft else Shape)(shape=shape, params=shape_params(rng, shape), **common)
        )
        scene += obj
        scene.simulator.place_without_overlap(obj, DYNAMIC_SPAWN_REGION if dynamic else STATIC_SPAWN_REGION, rng)
        added.append(obj)
    return added


def random_deform(rng: np.random.Generator, size: float) -> Deform:
    """A procedural deformation of moderate strength for an object of ``size``."""
    kind = str(rng.choice(DEFORM_KINDS))
    amount = {
        "bend": rng.uniform(0.3, 0.9),
        "twist": rng.uniform(0.4, 1.2),
        "taper": rng.uniform(0.2, 0.5),
        "stretch": rng.uniform(0.1, 0.3),
        "wave": size * rng.uniform(0.02, 0.05),
    }[kind]
    return Deform(
        kind,
        amount=float(amount),
        axis=str(rng.choice(["X", "Y", "Z"])),
        period=float(rng.uniform(10, 30)),
        phase=float(rng.uniform(0, 2 * np.pi)),
        wavelength=float(size * rng.uniform(0.3, 0.6)),
    )


def _deform_and_drape(scene: Scene, cfg: Config, look: np.random.Generator) -> None:
    """Deformations on a share of the objects, and cloth sheets above the scene's centre (own random stream)."""
    rng = seeds.rng(scene.seed, "movi", "deform")
    for obj in scene.objects:
        if rng.random() < cfg.deforming_share:
            obj.deform = (random_deform(rng, obj.size),)
    side = texture_side(max(scene.resolution), 1, 128, 512)
    for _ in range(draw(rng, cfg.num_cloths, integer=True)):
        size = float(rng.uniform(2.5, 4.5))
        material = natural_material(look, "textured", size, side, scene.assets.textures)
        angle = rng.uniform(0, np.pi)
        scene += Cloth(
            size=size,
            aspect=float(rng.uniform(0.6, 1.0)),
            position=(*rng.uniform(-2.5, 2.5, 2), float(rng.uniform(3.0, 5.0))),
            quaternion_xyzw=(0.0, 0.0, float(np.sin(angle / 2)), float(np.cos(angle / 2))),
            material=material,
            metadata={"is_dynamic": True},
        )


def build(scene: Scene, rng: np.random.Generator, cfg: Config) -> None:
    """One MOVi scene."""
    look = seeds.rng(scene.seed, "movi", "look")  # the appearance's own stream: same geometry in every look
    positions, lookats = camera_path(rng, cfg, scene.num_frames)
    scene.camera = Camera(draw(rng, cfg.focal_length), draw(rng, cfg.sensor_width)).look_at(positions, lookats)
    scene.motion_blur = draw(rng, cfg.motion_blur)
    scene.view_transform = VIEW_TRANSFORMS[cfg.appearance]
    scene.metadata["appearance"] = cfg.appearance
    _surroundings(scene, rng, look, cfg)
    static = _add_objects(scene, rng, look, cfg, dynamic=False)
    scene.simulator.run(SETTLE_FRAMES)  # let the static objects settle, then stop them
    for obj in static:
        obj.velocity = obj.angular_velocity = (0.0, 0.0, 0.0)
        obj.friction, obj.restitution = 0.5, 0.5
    scene.floor.friction, scene.floor.restitution = 0.3, 0.5
    for obj in _add_objects(scene, rng, look, cfg, dynamic=True):
        obj.friction, obj.restitution = 0.5, 0.5
        obj.velocity = tuple(rng.uniform(*VELOCITY_RANGE) - [obj.position[0], obj.position[1], 0.0])
    scene.simulator.run()
    if cfg.deforming_share or cfg.num_cloths:
        _deform_and_drape(scene, cfg, look)


def check_config(cfg: Config, config: dict) -> list[str]:
    """Checks across keys, before anything renders."""
    problems = []
    if cfg.background == "hdri" and not config["assets"]["hdri_dir"]:
        problems.append("scene.background: hdri needs assets.hdri_dir; set it or use background=dome")
    scale = cfg.object_scale
    if (
        cfg.size_distribution == "uniform"
        and isinstance(scale, list)
        and not (len(scale) == 2 and scale[0] <= scale[1])
    ):
        problems.append(
            f"scene.object_scale: bad value {scale!r} for uniform sizes; use [min, max] or one size, "
            "or set scene.size_distribution=choice"
        )
    return problems
