"""MOVi scene recipes (Kubric's `challenges/movi` workers), as pure numpy sampling of a `SceneSpec`.

Everything random about a scene is drawn here from one seed, so a scene is reproducible from
(config, seed) alone. Placement without overlap and the physics happen in `synth.physics`.

``scene.appearance`` chooses the look: ``natural`` (every object, the floor and the background dome carry
textures with natural-image statistics from `synth.textures`, or the user's images; smooth shading; AgX),
``plain`` (Kubric's plain MOVi-A/B materials, smooth shading, AgX) or ``legacy`` (Blender procedural textures,
flat shading, the Standard view: the look before natural textures). The appearance is drawn from its own
random stream, so the three looks of one seed share objects, motion, camera and light.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synth.textures import FAMILIES

# Kubric MOVi constants
STATIC_SPAWN_REGION = np.array([(-7, -7, 0), (7, 7, 10)], float)
DYNAMIC_SPAWN_REGION = np.array([(-5, -5, 1), (5, 5, 5)], float)
VELOCITY_RANGE = np.array([(-4, -4, 0), (4, 4, 0)], float)
MOVI_A_CAMERA = np.array([7.48113, -6.50764, 5.34367])
CLEVR_COLOURS = {
    "blue": (0.1628, 0.2932, 0.8412), "brown": (0.4977, 0.3190, 0.1192), "cyan": (0.1655, 0.8129, 0.8129),
    "gray": (0.3400, 0.3400, 0.3400), "green": (0.1255, 0.5020, 0.0784), "purple": (0.5059, 0.1412, 0.7529),
    "red": (0.6784, 0.1333, 0.1333), "yellow": (1.0000, 0.9333, 0.0784),
}
PROCEDURAL_TEXTURES = ("noise", "voronoi", "wave", "checker", "magic", "brick")
# generated texture families: how often each is drawn; stripes are narrow-band, so never on floor or dome
OBJECT_FAMILIES = dict(zip(FAMILIES, (0.35, 0.2, 0.1, 0.15, 0.2)))
SURROUND_FAMILIES = {"dead_leaves": 0.4, "spectral": 0.2, "mosaic": 0.15, "mixture": 0.25}


@dataclass
class MaterialSpec:
    kind: str  # rubber | metal | textured
    colour: tuple[float, float, float]
    colour2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    texture: str | None = None  # a procedural texture, a generated texture family or an image path
    texture_scale: float = 1.0  # texture coordinates per scene unit
    roughness: float = 0.7
    metallic: float = 0.0
    texture_seed: int | None = None  # a generated texture's seed (`synth.textures.generate_texture`)
    texture_size: int = 512  # a generated texture's side in pixels

    def describe(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ObjectSpec:
    instance_id: int  # >= 1; 0 is the static background
    shape: str
    shape_params: dict[str, Any]
    size: float  # longest side in scene units
    material: MaterialSpec
    dynamic: bool
    mass_density: float = 1.0
    friction: float = 0.5
    restitution: float = 0.5
    asset_id: str | None = None  # set for objects from a local asset directory

    def describe(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "material"}
        out["material"] = self.material.describe()
        return out


@dataclass
class SceneSpec:
    seed: int
    num_frames: int
    frame_rate: int
    physics_rate: int
    resolution: tuple[int, int]  # (width, height)
    objects: list[ObjectSpec]
    camera_positions: np.ndarray  # [T,3] world
    camera_lookats: np.ndarray  # [T,3] world
    focal_length: float
    sensor_width: float
    motion_blur: float
    background: str  # dome | sky | hdri | plain
    background_colour: tuple[float, float, float]
    hdri: str | None
    floor: MaterialSpec
    sun_direction: np.ndarray  # unit vector towards the sun
    sun_strength: float
    sky_params: dict[str, float] = field(default_factory=dict)
    placement_seed: int = 0
    appearance: str = "natural"
    dome: MaterialSpec | None = None  # the background dome's texture (background == "dome")
    dome_strength: float = 1.0  # its emission: the scene's ambient light

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary stored in each sample's meta.json."""
        return {
            "seed": self.seed, "num_frames": self.num_frames, "frame_rate": self.frame_rate,
            "objects": [o.describe() for o in self.objects], "focal_length": self.focal_length,
            "sensor_width": self.sensor_width, "motion_blur": self.motion_blur, "background": self.background,
            "background_colour": list(self.background_colour), "hdri": self.hdri, "floor": self.floor.describe(),
            "sun_direction": self.sun_direction.tolist(), "sun_strength": self.sun_strength,
            "appearance": self.appearance, "dome": self.dome.describe() if self.dome else None,
            "dome_strength": self.dome_strength,
        }


def _draw(rng: np.random.Generator, value: Any, integer: bool = False) -> Any:
    """A config value that is a number or a [min, max] pair -> one number."""
    if isinstance(value, list):
        lo, hi = value
        return int(rng.integers(lo, hi + 1)) if integer else float(rng.uniform(lo, hi))
    return int(value) if integer else float(value)


def sample_point_in_half_sphere_shell(rng: np.random.Generator, inner: float, outer: float,
                                      offset: float = 0.0) -> np.ndarray:
    """Uniform point in the upper half of a spherical shell, z > offset (Kubric's rejection sampler)."""
    while True:
        point = rng.uniform((-outer, -outer, offset), (outer, outer, outer))
        if inner <= np.linalg.norm(point) <= outer:
            return point


def _linear_camera(rng: np.random.Generator, speed: float, inner: float, outer: float,
                   offset: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    while True:
        start = sample_point_in_half_sphere_shell(rng, inner, outer, offset)
        direction = rng.random(3) - 0.5
        end = start + direction / np.linalg.norm(direction) * speed
        if inner <= np.linalg.norm(end) <= outer and end[2] > offset:
            return start, end


def _linear_lookat(rng: np.random.Generator, inner: float = 1.0, outer: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    through = sample_point_in_half_sphere_shell(rng, 0.0, inner, 0.0)
    while True:
        start = sample_point_in_half_sphere_shell(rng, 0.0, outer, 0.0)
        if start[-1] < inner:
            break
    end = through + rng.random() * 0.5 * (through - start)
    return (end, start) if rng.random() < 0.5 else (start, end)


def _camera_path(rng: np.random.Generator, scene_cfg: dict, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    mode = scene_cfg["camera"]
    origin = np.zeros(3)
    if mode == "fixed":
        return np.tile(MOVI_A_CAMERA, (num_frames, 1)), np.tile(origin, (num_frames, 1))
    if mode == "fixed_random":
        position = sample_point_in_half_sphere_shell(rng, 7.0, 9.0, 0.1)
        return np.tile(position, (num_frames, 1)), np.tile(origin, (num_frames, 1))
    panning = mode == "linear_movement_linear_lookat"
    speed = rng.uniform(0.0, scene_cfg["max_camera_movement"])
    start, end = _linear_camera(rng, speed, 6.0 if panning else 8.0, 12.0)
    look_start, look_end = _linear_lookat(rng) if panning else (origin, origin)
    # Kubric interpolates over [frame_start-1, frame_end+1] so flow stays defined at the clip ends
    interp = (np.arange(num_frames) + 1.0) / (num_frames + 2.0)
    positions = interp[:, None] * start + (1 - interp[:, None]) * end
    lookats = interp[:, None] * look_start + (1 - interp[:, None]) * look_end
    return positions, lookats


def _random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.4, 1.0), rng.uniform(0.3, 1.0))


def _material(rng: np.random.Generator, kinds: list[str], recipe: str, texture_images: list[str]) -> MaterialSpec:
    kind = str(rng.choice(kinds))
    if recipe == "movi_ab" and kind != "textured" and rng.random() < 0.5:
        colour = CLEVR_COLOURS[str(rng.choice(sorted(CLEVR_COLOURS)))]
    else:
        colour = _random_colour(rng)
    if kind == "metal":
        return MaterialSpec("metal", colour, roughness=float(rng.uniform(0.15, 0.35)), metallic=1.0)
    if kind == "rubber":
        return MaterialSpec("rubber", colour, roughness=float(rng.uniform(0.6, 0.9)))
    choices = list(PROCEDURAL_TEXTURES) + (["image"] if texture_images else [])
    texture = str(rng.choice(choices))
    if texture == "image":
        texture = str(rng.choice(texture_images))
    return MaterialSpec("textured", colour, _random_colour(rng), texture, float(rng.uniform(2.0, 12.0)),
                        roughness=float(rng.uniform(0.3, 0.9)))


def _generated(rng: np.random.Generator, families: dict[str, float], tile: float, size: int,
               texture_images: list[str] = ()) -> tuple[str, float, int | None, int]:
    """(texture, texture_scale, texture_seed, texture_size) for a surface whose texture repeats every ``tile``
    units: one of the user's images half the time when there are any, else a generated texture."""
    if texture_images and rng.random() < 0.5:
        return str(rng.choice(texture_images)), 1.0 / tile, None, size
    family = str(rng.choice(list(families), p=list(families.values())))
    return family, 1.0 / tile, int(rng.integers(2 ** 31)), size


def _texture_side(resolution: int, texels_per_pixel: float, lo: int, hi: int) -> int:
    """A power-of-two texture side near ``texels_per_pixel`` times the render resolution, in [lo, hi]."""
    return int(np.clip(2 ** np.ceil(np.log2(resolution * texels_per_pixel)), lo, hi))


def _natural_material(rng: np.random.Generator, kind: str, size: float, side: int,
                      texture_images: list[str]) -> MaterialSpec:
    """An object's natural look: a texture tiled once over its size and a BSDF of its material kind."""
    texture, scale, seed, side = _generated(rng, OBJECT_FAMILIES, size, side, texture_images)
    roughness = {"metal": (0.15, 0.35), "rubber": (0.6, 0.9)}.get(kind, (0.3, 0.9))
    return MaterialSpec(kind, (1.0, 1.0, 1.0), texture=texture, texture_scale=scale, texture_seed=seed,
                        texture_size=side, roughness=float(rng.uniform(*roughness)),
                        metallic=1.0 if kind == "metal" else 0.0)


def _natural_surroundings(rng: np.random.Generator, floor: MaterialSpec, resolution: int,
                          texture_images: list[str]) -> tuple[MaterialSpec, MaterialSpec]:
    """The natural floor (when it is textured) and dome: aperiodic at the scale the camera sees them."""
    side = _texture_side(resolution, 4, 256, 1024)
    if floor.texture is not None:
        texture, scale, seed, side = _generated(rng, SURROUND_FAMILIES, rng.uniform(16, 32), side, texture_images)
        floor = MaterialSpec("textured", (1.0, 1.0, 1.0), texture=texture, texture_scale=scale, texture_seed=seed,
                             texture_size=side, roughness=float(rng.uniform(0.5, 0.9)))
    texture, scale, seed, side = _generated(rng, SURROUND_FAMILIES, rng.uniform(30, 50), side)
    return floor, MaterialSpec("emission", (1.0, 1.0, 1.0), texture=texture, texture_scale=scale, texture_seed=seed,
                               texture_size=side)


def _shape_params(rng: np.random.Generator, shape: str) -> dict[str, Any]:
    if shape == "superquadric":
        return {"e1": float(rng.uniform(0.2, 1.6)), "e2": float(rng.uniform(0.2, 1.6))}
    if shape == "blob":
        return {"seed": int(rng.integers(2 ** 31))}
    if shape == "prism":
        return {"sides": int(rng.integers(3, 7))}
    return {}


def sample_scene(config: dict, seed: int, texture_images: list[str] = (), hdris: list[str] = (),
                 assets: list[str] = ()) -> SceneSpec:
    """Draw a whole scene (objects, materials, camera path, lighting) from a config and a per-scene seed.

    `texture_images`, `hdris` and `assets` are the sorted file lists from the configured asset folders.
    """
    rng = np.random.default_rng(seed)
    look = np.random.default_rng([seed, 1])  # the appearance's own stream: same geometry in every look
    sc = config["scene"]
    recipe, appearance = sc["recipe"], sc["appearance"]
    object_side = _texture_side(max(config["render"]["resolution"]), 1, 128, 512)
    num_frames = sc["num_frames"]
    width, height = config["render"]["resolution"]
    positions, lookats = _camera_path(rng, sc, num_frames)
    objects: list[ObjectSpec] = []
    counts = [(False, _draw(rng, sc["num_static_objects"], True)), (True, _draw(rng, sc["num_dynamic_objects"], True))]
    for dynamic, count in counts:
        for _ in range(count):
            asset_id = str(rng.choice(assets)) if assets and rng.random() < 0.5 else None
            shape = "asset" if asset_id else str(rng.choice(sc["shapes"]))
            if recipe == "movi_ab" and sc["object_scale"] == [0.75, 3.0]:
                size = float(rng.choice([0.7, 1.4]) if sc["materials"] == ["rubber", "metal"] else rng.uniform(0.7, 1.4))
            else:
                size = _draw(rng, sc["object_scale"])
            params = _shape_params(rng, shape)
            material = _material(rng, sc["materials"], recipe, list(texture_images))  # drawn in every look
            if appearance == "natural":
                material = _natural_material(look, material.kind, size, object_side, list(texture_images))
            objects.append(ObjectSpec(
                instance_id=len(objects) + 1, shape=shape, shape_params=params, size=size,
                material=material, dynamic=dynamic,
                friction=0.5 if dynamic else 1.0, restitution=0.5 if dynamic else 0.0, asset_id=asset_id))
    background = sc["background"]
    floor = (MaterialSpec("textured", _random_colour(rng), _random_colour(rng),
                          str(rng.choice(PROCEDURAL_TEXTURES + tuple(texture_images))), float(rng.uniform(0.5, 3.0)))
             if sc["floor_texture"] else MaterialSpec("rubber", (0.5, 0.5, 0.5) if sc["camera"] == "fixed"
                                                      else _random_colour(rng), roughness=0.8))
    dome = None
    if appearance == "natural" or background == "dome":
        natural_floor, dome = _natural_surroundings(look, floor, max(width, height), list(texture_images))
        floor = natural_floor if appearance == "natural" else floor
        dome = dome if background == "dome" else None
    elevation = rng.uniform(np.radians(25), np.radians(80))
    azimuth = rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    return SceneSpec(
        seed=seed, num_frames=num_frames, frame_rate=sc["frame_rate"], physics_rate=sc["physics_rate"],
        resolution=(width, height), objects=objects, camera_positions=positions, camera_lookats=lookats,
        focal_length=_draw(rng, sc["focal_length"]), sensor_width=_draw(rng, sc["sensor_width"]),
        motion_blur=_draw(rng, sc["motion_blur"]), background=background,
        background_colour=(0.5, 0.5, 0.5) if sc["camera"] == "fixed" else _random_colour(rng),
        hdri=str(rng.choice(hdris)) if background == "hdri" and hdris else None, floor=floor,
        sun_direction=sun, sun_strength=float(rng.uniform(2.0, 5.0)),
        sky_params={"turbidity": float(rng.uniform(1.0, 4.0)), "air": float(rng.uniform(0.5, 2.0))},
        placement_seed=int(rng.integers(2 ** 31)), appearance=appearance, dome=dome,
        dome_strength=float(look.uniform(1.0, 2.0)),
    )


def look_at_matrices(positions: np.ndarray, lookats: np.ndarray) -> np.ndarray:
    """Camera-to-world 4x4 matrices [T,4,4] in Blender's convention (camera looks down -Z, +Y up)."""
    forward = lookats - positions
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    degenerate = np.linalg.norm(right, axis=-1) < 1e-8
    right[degenerate] = [1.0, 0.0, 0.0]
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    true_up = np.cross(right, forward)
    mats = np.tile(np.eye(4), (len(positions), 1, 1))
    mats[:, :3, 0], mats[:, :3, 1], mats[:, :3, 2], mats[:, :3, 3] = right, true_up, -forward, positions
    return mats


def intrinsics(spec: SceneSpec) -> np.ndarray:
    """Pixel intrinsics K (OpenCV convention, pixel centres at +0.5) for a horizontal sensor fit."""
    width, height = spec.resolution
    fx = spec.focal_length / spec.sensor_width * width
    return np.array([[fx, 0.0, width / 2.0], [0.0, fx, height / 2.0], [0.0, 0.0, 1.0]])
