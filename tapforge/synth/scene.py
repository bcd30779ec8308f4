"""The scene API: build a scene in Python, in Kubric's vocabulary; tapforge renders it with exact tracks.

A scene script is a function ``build(scene, rng, cfg)`` that fills a `Scene` (see `tapforge.synth.scripts`)::

    from tapforge.synth.scene import Camera, Emission, Floor, Dome, Principled, Shape, Sun, Texture

    def build(scene, rng, cfg):
        scene.camera = Camera(focal_length=35).look_at((8, -6, 5), (0, 0, 0))
        scene.floor = Floor(Principled(texture=Texture.generated("dead_leaves", seed=1, tile=20)))
        scene.background = Dome(Emission(texture=Texture.generated("mixture", seed=2, tile=40)))
        scene += Sun(direction=(0.3, -0.2, 0.9), strength=3)
        ball = scene.add(Shape("sphere", size=1.5, material=Principled(color=(0.8, 0.2, 0.1)),
                               position=(0, 0, 3), velocity=(1, 0, 0)))
        scene.simulator.run()  # PyBullet: the ball falls and rolls (the pipeline runs it if the script does not)

Objects are procedural shapes (`Shape`), mesh files (`MeshFile`: OBJ, PLY, glTF/GLB) or assets of a
Kubric-manifest folder (`Asset`). Surfaces may deform, with exact tracks: procedural deformations on any object
(``deform=(Deform(...),)``), per-frame vertices from the script (`Object.animate_vertices`), a file's own skinned
or shape-key animation (`AnimatedMesh`), cloth (`Cloth`) and soft bodies (`SoftBody`). An object moves by physics (the default; ``static=True`` keeps it in place
as a collider) or by script: `Object.keyframe` (linear position, spherical rotation between keys) or
`Object.set_poses` (per-frame arrays); a scripted object pushes simulated ones. ``release_frame`` makes an object
arrive later: it is held at its pose (or follows its script) as a collider until that frame, then physics moves it
from its ``velocity``. The camera moves the same way (`Camera.look_at` with per-frame arrays, or
`Camera.keyframe`) and rolls about its viewing axis (``roll`` in radians, one or one per frame: positive turns the
camera counter-clockwise as seen from behind it, the picture clockwise). Several cameras (``scene.views``, or the
rigs `ring_views`, `hemisphere_views`, `stereo_views`) see the one simulated scene: a multi-view clip, one view
per camera. Whatever moves, the renderer is keyed with the exact per-frame poses that the ground truth uses. Poses cost time linear in the clip's length: scripted
keys are sorted once, not per physics step.

Coordinates: world Z-up, metres; quaternions (x, y, z, w), hence ``quaternion_xyzw`` (Kubric's ``quaternion`` is
(w, x, y, z): a ported script that uses it gets one line naming the new spelling); frames 0 .. num_frames - 1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

import numpy as np

from tapforge.base.errors import TapforgeError
from tapforge.synth.checks import (
    DIRECTION,
    LIMIT,
    MIN_NORM,
    POINT,
    QUATERNION,
    SEED_LIMIT,
    VELOCITY,
    Refused,
    Rule,
    array,
    check,
    existing_file,
    flag,
    instance,
    integer,
    json_value,
    number,
    one_of,
    optional,
    positive,
    refuse,
    text,
    vector,
)
from tapforge.synth.checks import color as _color
from tapforge.synth.meshes import volume_and_centroid
from tapforge.synth.poses import (
    Keys,
    interpolate_keys,
    look_at_matrices,
    pose_matrices,
    sample_frames,
    unit_quaternion,
)

# "x as x": re-exported, scene scripts import the rotation helpers from here
from tapforge.synth.poses import about_z as about_z
from tapforge.synth.poses import quaternion_product as quaternion_product
from tapforge.synth.poses import slerp as slerp
from tapforge.synth.shapes import SHAPES, Mesh, make_shape, torus_sectors
from tapforge.synth.textures import FAMILIES

Vector = tuple[float, float, float]
FLOOR_SIZE = 80.0
DOME_RADIUS = FLOOR_SIZE / 2  # a hemisphere standing on the floor, inside its square: no gap at the horizon
VIEW_TRANSFORMS = ("AgX", "Filmic", "Standard")


# ------------------------------------------------------------------------------------------------ renamed names
RENAMED = {
    "colour": "color (as in Kubric and Blender): write color=(r, g, b)",
    "colours": "colors: write colors=((r, g, b), (r, g, b))",
    "colour2": "color2",
    "quaternion": "quaternion_xyzw, in (x, y, z, w) order (Kubric's quaternion is (w, x, y, z)): "
    "write quaternion_xyzw=(x, y, z, w)",
    "quaternions": "quaternions_xyzw, each (x, y, z, w)",
}


def _refuse_renamed(where: str, arguments: dict[str, Any]) -> None:
    """One line for an argument under a former name, naming the new one (a call with others fails as Python's)."""
    for name in arguments:
        if name in RENAMED:
            raise TapforgeError(f"{where}({name}=...): the name is now {RENAMED[name]}")
        raise TypeError(f"{where}() got an unexpected keyword argument {name!r}")


class _Checked:
    """Base of the scene API's values. Every argument of its constructor and every later assignment of one of its
    fields goes through the field's rule (``checks``: name -> rule of `tapforge.synth.checks`, merged over the
    bases), so a bad value is refused with one line where the script sets it, whether in the constructor or by
    ``obj.size = ...``; `check_together` checks rules across fields after construction and after each such
    assignment. It also refuses the former names of its arguments and attributes (``renamed``) with one line naming
    the new one: an attribute set under an old name would be ignored without a word, and Kubric's ``quaternion``
    has another order."""

    renamed: ClassVar[tuple[str, ...]] = ()
    checks: ClassVar[dict[str, Rule]] = {}
    _rules: ClassVar[dict[str, Rule]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._rules = {
            name: rule for base in reversed(cls.__mro__) for name, rule in vars(base).get("checks", {}).items()
        }

    def __new__(cls, *args: Any, **kwargs: Any):
        _refuse_renamed(cls.__name__, {k: v for k, v in kwargs.items() if k in cls.renamed})
        return super().__new__(cls)

    def __getattr__(self, name: str) -> Any:  # only for names the object lacks
        if name in type(self).renamed:
            raise TapforgeError(f"{type(self).__name__}.{name}: the name is now {RENAMED[name]}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).renamed:
            raise TapforgeError(f"{type(self).__name__}.{name} = ...: the name is now {RENAMED[name]}")
        rule = type(self)._rules.get(name)
        if rule is not None:
            value = check(type(self).__name__, name, value, rule)
        super().__setattr__(name, value)
        if rule is not None and self.__dict__.get("_built"):
            self.check_together()

    def __post_init__(self) -> None:
        self.check_together()
        object.__setattr__(self, "_built", True)

    def check_together(self) -> None:
        """Rules across fields (one TapforgeError line); none by default."""

    def _argument(self, method: str, name: str, value: Any, rule: Rule) -> Any:
        """A method's argument through its rule (one line naming the method, the argument and the script line)."""
        return check(f"{type(self).__name__}.{method}", name, value, rule)


# ------------------------------------------------------------------------------------------------ materials
PROCEDURAL_TEXTURES = ("noise", "voronoi", "wave", "checker", "magic", "brick")
TILE = number(1 / LIMIT, LIMIT, unit="metres per repeat")
TEXTURE_SIDE = integer(16, 2048, "pixels")
SEED = integer(0, SEED_LIMIT - 1)
IMAGE_FILE = existing_file("image file")


def _texture_source(value: Any) -> str:
    """A generated family, a procedural texture or the path of an existing image file."""
    if isinstance(value, str) and value in FAMILIES + PROCEDURAL_TEXTURES:
        return value
    try:
        return IMAGE_FILE(value)
    except Refused:
        raise Refused(
            f"a generated family ({', '.join(FAMILIES)}), a procedural texture ({', '.join(PROCEDURAL_TEXTURES)}) "
            "or the path of an existing image file"
        ) from None


def _procedural_kind(value: Any) -> str:
    """A procedural texture, or the path of an existing image file (shown as it is; the colors are then unused)."""
    if isinstance(value, str) and value in PROCEDURAL_TEXTURES:
        return value
    try:
        return IMAGE_FILE(value)
    except Refused:
        raise Refused(f"one of {', '.join(PROCEDURAL_TEXTURES)}, or the path of an existing image file") from None


def _two_colors(value: Any) -> tuple[Vector, Vector]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Refused("two colors ((r, g, b), (r, g, b)), each of 3 numbers in [0, 1]")
    return (_color(value[0]), _color(value[1]))


@dataclass
class Texture(_Checked):
    """A surface texture, projected from the object's own coordinates (no UVs needed).

    ``source``: a generated family of `tapforge.synth.textures` (natural-image statistics, made from ``seed``), a Blender
    procedural texture (`PROCEDURAL_TEXTURES`, ramped between ``colors``) or the path of an existing image file.
    ``scale``: texture coordinates per scene unit (one repeat every 1 / scale units)."""

    source: str
    scale: float = 1.0
    seed: int | None = None
    size: int = 512  # a generated texture's side in pixels
    colors: tuple[Vector, Vector] = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    renamed: ClassVar[tuple[str, ...]] = ("colours",)
    checks: ClassVar[dict[str, Rule]] = {
        "source": _texture_source,
        "scale": number(1 / LIMIT, LIMIT, unit="repeats per metre"),
        "seed": optional(SEED),
        "size": TEXTURE_SIDE,
        "colors": _two_colors,
    }

    def check_together(self) -> None:
        if self.source in FAMILIES and self.seed is None:
            raise refuse(
                "Texture",
                "seed",
                None,
                f"an integer in [0, 2**63) for a generated texture ({self.source!r}); "
                f"write Texture.generated({self.source!r}, seed=...)",
            )

    @classmethod
    def generated(cls, family: str, seed: int, tile: float = 1.0, size: int = 512) -> Texture:
        """A generated texture repeating every ``tile`` scene units."""
        family = check("Texture.generated", "family", family, one_of(FAMILIES, "a generated texture family"))
        seed = check("Texture.generated", "seed", seed, SEED)
        tile = check("Texture.generated", "tile", tile, TILE)
        return cls(family, 1.0 / tile, seed=seed, size=check("Texture.generated", "size", size, TEXTURE_SIDE))

    @classmethod
    def image(cls, path: str | Path, tile: float = 1.0) -> Texture:
        """An image file repeating every ``tile`` scene units."""
        path = check("Texture.image", "path", path, IMAGE_FILE)
        return cls(path, 1.0 / check("Texture.image", "tile", tile, TILE))

    @classmethod
    def procedural(
        cls,
        kind: str,
        color: Vector = (0.0, 0.0, 0.0),
        color2: Vector = (1.0, 1.0, 1.0),
        scale: float = 1.0,
        **renamed: Any,
    ) -> Texture:
        """A Blender procedural texture (noise, voronoi, wave, checker, magic, brick) between two colors."""
        _refuse_renamed("Texture.procedural", renamed)
        kind = check("Texture.procedural", "kind", kind, _procedural_kind)
        colors = tuple(
            check("Texture.procedural", name, c, _color) for name, c in (("color", color), ("color2", color2))
        )
        return cls(kind, check("Texture.procedural", "scale", scale, cls.checks["scale"]), colors=colors)


UNIT = number(0.0, 1.0)


@dataclass
class Principled(_Checked):
    """Blender's Principled BSDF (Kubric's PrincipledBSDFMaterial); ``texture`` replaces ``color`` (linear RGB)."""

    color: Vector = (0.8, 0.8, 0.8)
    roughness: float = 0.5
    metallic: float = 0.0
    texture: Texture | None = None
    label: str = "principled"  # what meta.json calls it (rubber, metal, ...)
    renamed: ClassVar[tuple[str, ...]] = ("colour",)
    checks: ClassVar[dict[str, Rule]] = {
        "color": _color,
        "roughness": UNIT,
        "metallic": UNIT,
        "texture": instance(Texture, optional=True),
        "label": text,
    }


@dataclass
class Emission(_Checked):
    """A surface that shows its color or texture as it is and lights the scene with it (e.g. a dome)."""

    color: Vector = (1.0, 1.0, 1.0)
    strength: float = 1.0
    texture: Texture | None = None
    label: str = "emission"
    renamed: ClassVar[tuple[str, ...]] = ("colour",)
    checks: ClassVar[dict[str, Rule]] = {
        "color": _color,
        "strength": number(0.0, 1e6),
        "texture": instance(Texture, optional=True),
        "label": text,
    }


Material = Principled | Emission


# -------------------------------------------------------------------------------------------------- objects
DEFORM_KINDS = ("bend", "twist", "taper", "stretch", "wave")
AXES = ("X", "Y", "Z")


@dataclass
class Deform(_Checked):
    """A procedural deformation of an object's mesh in its own frame, animated over the clip (Blender's Simple
    Deform and Wave modifiers; the tracks follow the deformed surface exactly).

    ``kind``: bend, twist (``amount`` in radians), taper, stretch (a factor) or wave (travelling ripples of
    height ``amount`` in metres). Its strength swings as ``amount * sin(2 pi (frame / period) + phase)``
    (a wave travels one ``wavelength`` per ``period`` frames instead)."""

    kind: str
    amount: float = 0.5
    axis: str = "Z"
    period: float = 24.0  # frames
    phase: float = 0.0  # radians
    wavelength: float = 0.5  # metres, for waves
    checks: ClassVar[dict[str, Rule]] = {
        "kind": one_of(DEFORM_KINDS),
        "amount": number(-1e3, 1e3, unit="radians, a factor or metres, by kind"),
        "axis": one_of(AXES, "the object's own axis"),
        "period": positive(unit="frames"),
        "phase": number(unit="radians"),
        "wavelength": positive(unit="metres"),
    }

    def strength(self, frames: np.ndarray) -> np.ndarray:
        """The modifier's strength at each frame (bend, twist: angle; taper, stretch: factor)."""
        return self.amount * np.sin(2 * np.pi * np.asarray(frames, float) / self.period + self.phase)


class MeshReader(Protocol):
    """Makes the meshes that numpy alone cannot: Blender's Suzanne, mesh files, Kubric-manifest assets and a file's
    own animation (unit meshes: centred on their bounding box, longest side 1). A `Scene` is handed one
    (``Scene(mesh_reader=...)``; the pipeline's is `tapforge.synth.mesh_files.BlenderMeshReader`) and the objects
    added to it read through it, so this module never imports Blender. Procedural shapes need none."""

    def suzanne(self) -> Mesh: ...

    def mesh_file(self, path: str) -> Mesh: ...

    def asset(self, asset_id: str) -> Mesh: ...

    def animation(
        self, path: str, animation: str | None, start: float, speed: float, num_frames: int, frame_rate: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """World vertices [T,V,3] of the clip's frames and triangles [F,3]."""
        ...


@dataclass(frozen=True)
class CollisionShape:
    """How the simulator sees an object, in the object's frame: ``hulls``, meshes (vertices, faces) at the object's
    size of which each is taken as one convex hull (several: a compound), or ``decompose``, a unit mesh to split
    into convex pieces (cached), scaled by ``scale`` and shifted by ``offset``."""

    hulls: tuple[Mesh, ...] = ()
    decompose: Mesh | None = None
    scale: float = 1.0
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _deforms(value: Any) -> tuple[Deform, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(d, Deform) for d in value):
        raise Refused("a tuple of Deform, e.g. deform=(Deform('twist'),)")
    return tuple(value)


FRAME = integer(-LIMIT, LIMIT, "a frame number")
POSITIONS = array((3,), "an array of shape [num_frames, 3]")
MAX_SIZE = 1e3  # metres: an object's longest side
FRICTION = number(0.0, 10.0)


@dataclass(eq=False, kw_only=True)
class Object(_Checked):
    """Something solid in the scene. Its frame is its centre of mass; ``size`` is its longest side.

    Physics (PyBullet) moves it unless ``static`` (then it stays, and others collide with it) or scripted
    (`keyframe` / `set_poses`: it follows the script, and pushes what it hits). ``release_frame``: it arrives
    later; until that frame it is held at ``position`` / ``quaternion_xyzw`` (or follows its script) as a collider
    that pushes what it hits and is not pushed, and from that frame on physics moves it, starting with its
    ``velocity`` and ``angular_velocity`` (a release at or after the clip's end holds it all clip long). ``deform``:
    procedural deformations of its surface (`Deform`), applied in order; physics sees the undeformed shape."""

    rigid: ClassVar[bool] = True  # PyBullet moves it; False: Blender's own simulation does (cloth)
    renamed: ClassVar[tuple[str, ...]] = ("quaternion",)
    material: Material = field(default_factory=Principled)
    size: float = 1.0
    position: Vector = (0.0, 0.0, 0.0)
    quaternion_xyzw: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)  # (x, y, z, w); Kubric's is (w, x, y, z)
    velocity: Vector = (0.0, 0.0, 0.0)
    angular_velocity: Vector = (0.0, 0.0, 0.0)
    static: bool = False
    release_frame: int | None = None  # None: physics from the start (scripted: never); k: held or scripted before k
    mass: float | None = None  # kg; None: density 1 times the mesh volume
    friction: float = 0.5
    restitution: float = 0.5
    smooth: bool = True  # smooth shading (edges sharper than tapforge.synth.shapes.SHARP_ANGLE stay hard)
    deform: tuple[Deform, ...] = ()
    name: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    instance_id: int = 0  # set by Scene.add: >= 1, the id in segmentation and object_ids
    _keys: dict[int, tuple[np.ndarray | None, np.ndarray | None]] = field(default_factory=dict, repr=False)
    _poses: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # set_poses: scripted
    _compiled: tuple[Keys | None, Keys | None] | None = field(default=None, repr=False)  # pose_at's sorted keys
    _recorded: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # by the simulator
    _mesh: tuple[np.ndarray, np.ndarray, float] | None = field(default=None, repr=False)
    _vertex_positions: np.ndarray | None = field(default=None, repr=False)  # animate_vertices: [T,V,3]
    _reader: MeshReader | None = field(default=None, repr=False)  # the scene's, set by Scene.add
    checks: ClassVar[dict[str, Rule]] = {
        "material": instance(Principled, Emission),
        "size": positive(MAX_SIZE, "metres, its longest side"),
        "position": POINT,
        "quaternion_xyzw": QUATERNION,
        "velocity": VELOCITY,
        "angular_velocity": vector(what="(x, y, z) in radians per second"),
        "static": flag,
        "release_frame": optional(integer(0, int(LIMIT), "the frame from which physics moves it")),
        "mass": optional(positive(1e6, "kg")),
        "friction": FRICTION,
        "restitution": UNIT,
        "smooth": flag,
        "deform": _deforms,
        "name": text,
        "metadata": json_value("metadata"),
        "instance_id": integer(0, 65535),  # segmentation ids are uint16
    }

    def check_together(self) -> None:
        if self.release_frame is None:
            return
        if self.static:
            raise refuse(
                type(self).__name__,
                "release_frame",
                self.release_frame,
                "None for a static object (it never moves); set static=False to release it",
            )
        if not self.rigid:
            raise refuse(
                type(self).__name__,
                "release_frame",
                self.release_frame,
                f"None for a {type(self).__name__} (Blender moves it, not PyBullet); leave release_frame unset",
            )

    # ---- scripted motion
    def keyframe(
        self,
        frame: int,
        position: Vector | None = None,
        quaternion_xyzw: tuple[float, float, float, float] | None = None,
        **renamed: Any,
    ) -> Object:
        """Pin the pose at ``frame`` (either part may be left out); poses between keys are interpolated."""
        _refuse_renamed("keyframe", renamed)
        frame = self._argument("keyframe", "frame", frame, FRAME)
        position = self._argument("keyframe", "position", position, optional(POINT))
        quaternion = self._argument("keyframe", "quaternion_xyzw", quaternion_xyzw, optional(QUATERNION))
        self._keys[frame] = (
            None if position is None else np.array(position),
            None if quaternion is None else unit_quaternion(quaternion),
        )
        self._compiled = None
        return self

    def set_poses(self, positions: Any, quaternions_xyzw: Any = None, **renamed: Any) -> Object:
        """Give the pose of every frame: positions [T,3] and optionally quaternions [T,4] (x, y, z, w)."""
        _refuse_renamed("set_poses", renamed)
        positions = self._argument("set_poses", "positions", positions, POSITIONS)
        if quaternions_xyzw is None:
            quaternions = np.tile(unit_quaternion(self.quaternion_xyzw), (len(positions), 1))
        else:
            rule = array(
                (4,),
                f"an array of shape [{len(positions)}, 4] (x, y, z, w), one per position",
                1e6,
                MIN_NORM,
                length=len(positions),
            )
            quaternions = self._argument("set_poses", "quaternions_xyzw", quaternions_xyzw, rule)
        self._poses = (positions, quaternions / np.linalg.norm(quaternions, axis=-1, keepdims=True))
        self._compiled = None
        return self

    @property
    def scripted(self) -> bool:
        return bool(self._keys) or self._poses is not None

    @property
    def simulated(self) -> bool:
        """PyBullet moves it in some frames: a rigid object, not static, and not scripted or released later."""
        return self.rigid and not self.static and (not self.scripted or self.release_frame is not None)

    @property
    def deforms(self) -> bool:
        """Its surface changes shape over the clip (tracks then follow the deformed mesh)."""
        return bool(self.deform) or not self.rigid or self.animated

    @property
    def animated(self) -> bool:
        """Its vertices move by a per-frame animation (`animate_vertices`, or a file's own animation)."""
        return self._vertex_positions is not None

    def animate_vertices(self, positions: Any) -> Object:
        """Give the mesh's vertices in every frame: [T,V,3] in the object's frame, in the order of `mesh`'s
        vertices (its triangles stay). The render and the tracks follow them exactly; physics sees `mesh`."""
        count = len(self.mesh()[0])
        rule = array((count, 3), f"an array of shape [num_frames, {count}, 3] (the mesh's vertices, object frame)")
        positions = self._argument("animate_vertices", "positions", positions, rule)
        self._vertex_positions = positions
        return self

    def vertex_positions(self, num_frames: int, frame_rate: int) -> np.ndarray | None:
        """The object-frame vertices [T,V,3] of every frame when they are animated, else None."""
        if self._vertex_positions is None:
            return None
        if len(self._vertex_positions) != num_frames:
            raise TapforgeError(
                f"{self.label()}: has vertex positions for {len(self._vertex_positions)} frames, the "
                f"scene has {num_frames}; give one set per frame"
            )
        return self._vertex_positions

    @property
    def two_sided(self) -> bool:
        """No facing-away test for its points (a sheet is seen from both sides): the depth test alone decides."""
        return False

    def pose_at(self, frames: Any) -> tuple[np.ndarray, np.ndarray]:
        """Scripted pose at (fractional) frames: positions [N,3], quaternions [N,4] (unscripted: its pose).

        The keys are sorted once per change of the script, so a call costs O(log T) (the simulator calls it every
        physics step)."""
        frames = np.atleast_1d(np.asarray(frames, float))
        if self._compiled is None:
            if self._poses is not None:
                self._compiled = (None, Keys(dict(enumerate(self._poses[1]))))
            else:
                positions = {f: p for f, (p, _) in self._keys.items() if p is not None}
                rotations = {f: q for f, (_, q) in self._keys.items() if q is not None}
                self._compiled = (Keys(positions) if positions else None, Keys(rotations) if rotations else None)
        positions, rotations = self._compiled
        if self._poses is not None:
            return sample_frames(self._poses[0], frames), rotations.at(frames, rotation=True)
        return (
            positions.at(frames) if positions else np.tile(self.position, (len(frames), 1)),
            rotations.at(frames, True)
            if rotations
            else np.tile(unit_quaternion(self.quaternion_xyzw), (len(frames), 1)),
        )

    def poses(self, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """The pose of every frame [T,3], [T,4]: simulated, set by `set_poses`, keyframed, or at rest."""
        if self._recorded is not None:
            return self._recorded
        if self._poses is not None and not self._keys:
            positions, quaternions = self._poses
            if len(positions) != num_frames:
                raise TapforgeError(
                    f"{self.label()}: has poses for {len(positions)} frames, the scene has "
                    f"{num_frames}; give one pose per frame"
                )
            return positions, quaternions
        return self.pose_at(np.arange(num_frames))

    def record(self, positions: np.ndarray, quaternions: np.ndarray) -> None:
        """Store the simulated poses of the clip (called by the simulator)."""
        self._recorded = (positions, quaternions)

    # ---- geometry
    def unit_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """The mesh with its longest side 1, centred on its bounding box."""
        raise NotImplementedError

    def mesh(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(vertices [V,3] in the object frame, faces [F,3], volume) at ``size``, centred on the centre of mass."""
        if self._mesh is None:
            vertices, faces = self.unit_mesh()
            vertices = vertices * self.size
            volume, centroid = volume_and_centroid(vertices, faces)
            self._mesh = (vertices - centroid, faces, abs(volume))
        return self._mesh

    def collision_shape(self) -> CollisionShape:
        """What the simulator collides: a convex decomposition of the unit mesh, at ``size``, on the centre of mass."""
        unit_vertices, unit_faces = self.unit_mesh()
        offset = self.mesh()[0][0] - unit_vertices[0] * self.size  # the mesh's shift onto its centre of mass
        return CollisionShape(decompose=(unit_vertices, unit_faces), scale=self.size, offset=tuple(offset.tolist()))

    def mesh_reader(self) -> MeshReader:
        """The reader of the scene it was added to, for meshes that need Blender or a file."""
        if self._reader is not None:
            return self._reader
        if not self.instance_id:
            raise TapforgeError(
                f"{self.label()}: its mesh is read by the scene (Blender or a file); add it first "
                "(scene.add), then ask for its mesh"
            )
        raise TapforgeError(
            f"{self.label()}: its scene has no mesh reader; make it with "
            "Scene(..., mesh_reader=tapforge.synth.mesh_files.BlenderMeshReader()), as the pipeline does"
        )

    def label(self) -> str:
        if self.name:
            return self.name
        return f"object {self.instance_id}" if self.instance_id else f"a {type(self).__name__} not added to the scene"

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary for meta.json."""
        base = {f.name for f in dataclasses.fields(Object)}
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in base}
        motion = "scripted" if self.scripted else ("static" if self.static or not self.rigid else "physics")
        if self.scripted and self.release_frame is not None:
            motion = "scripted, then physics"
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "kind": type(self).__name__,
            "size": self.size,
            "motion": motion,
            "release_frame": self.release_frame,
            "friction": self.friction,
            "restitution": self.restitution,
            "material": _describe(self.material),
            "deforms": self.deforms,
            "deform": _describe(list(self.deform)),
            "metadata": _json_metadata(self.label(), self.metadata),
        } | _describe(own)


SHAPE_PARAMS: dict[str, dict[str, Rule]] = {
    "cylinder": {"height": number(1e-3, 1e3, unit="times its diameter")},
    "capsule": {"length": number(0.0, 1e3, unit="of its straight part, in radii")},
    "icosphere": {"subdivisions": integer(0, 5)},
    "prism": {"sides": integer(3, 256)},
    "superquadric": {"e1": number(0.05, 5.0), "e2": number(0.05, 5.0)},
    "blob": {"seed": SEED},
}
REQUIRED_PARAMS = {"superquadric": ("e1", "e2"), "blob": ("seed",)}


def _params(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise Refused("a dict of the shape's parameters by name, e.g. params={'sides': 5} for a prism")
    return value


@dataclass(eq=False)
class Shape(Object):
    """A procedural shape of `tapforge.synth.shapes` (cube, sphere, ..., suzanne) with its parameters
    (`SHAPE_PARAMS`: which shape takes which, and in what range; a superquadric needs e1 and e2, a blob a seed;
    parameters a shape does not take are ignored)."""

    shape: str = "cube"
    params: dict[str, Any] = field(default_factory=dict)
    checks: ClassVar[dict[str, Rule]] = {"shape": one_of(SHAPES), "params": _params}

    def check_together(self) -> None:
        super().check_together()

        def rule(params: dict[str, Any]) -> dict[str, Any]:
            takes = SHAPE_PARAMS.get(self.shape, {})
            missing = [name for name in REQUIRED_PARAMS.get(self.shape, ()) if name not in params]
            if missing:
                raise Refused(f"a dict with {' and '.join(map(repr, missing))} for a {self.shape}")
            for name, param_rule in takes.items():
                if name in params:
                    try:
                        param_rule(params[name])
                    except Refused as refused:
                        raise Refused(refused.allowed, f"params[{name!r}]", params[name]) from None
            return params

        check(type(self).__name__, "params", self.params, rule)

    def unit_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        if self.shape == "suzanne":
            return self.mesh_reader().suzanne()
        try:
            return make_shape(self.shape, self.params)
        except (ValueError, KeyError) as err:
            raise TapforgeError(
                f"{self.label()}: shape {self.shape!r} with params {self.params} cannot be made "
                f"({err}); use a shape from tapforge.synth.shapes.SHAPES with its parameters"
            ) from err

    def collision_shape(self) -> CollisionShape:
        """One convex hull of the mesh; a torus is a compound of convex sectors (one hull would fill its hole)."""
        vertices, faces, _ = self.mesh()
        if self.shape == "torus":
            return CollisionShape(hulls=tuple(torus_sectors(vertices, faces)))
        return CollisionShape(hulls=((vertices, faces),))


@dataclass(eq=False)
class MeshFile(Object):
    """A mesh file (OBJ, PLY, glTF or GLB), scaled to ``size``; its own materials are replaced by ``material``."""

    path: str = ""
    checks: ClassVar[dict[str, Rule]] = {"path": existing_file("mesh file (.obj, .ply, .gltf or .glb)")}

    def unit_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mesh_reader().mesh_file(self.path)


def _asset_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise Refused("the id of an asset in the assets folder's manifest (a non-empty string)")
    return value


@dataclass(eq=False)
class Asset(Object):
    """An object of the Kubric-manifest asset folder named by ``assets.directory`` (its geometry)."""

    asset_id: str = ""
    checks: ClassVar[dict[str, Rule]] = {"asset_id": _asset_id}

    def unit_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mesh_reader().asset(self.asset_id)


@dataclass(eq=False)
class SoftBody(Shape):
    """A squashy procedural shape: PyBullet moves it as a rigid body (it falls, bounces, hits the others) and
    Blender's soft body lets its surface lag, squash on impact and wobble back around that motion (goal springs
    towards the rigid shape, edge springs between vertices, collisions with the floor and the rigid objects).
    ``stiffness``: the goal springs (0..1, softer below); ``damping``: how fast the wobble dies (0..50)."""

    stiffness: float = 0.7
    damping: float = 15.0
    checks: ClassVar[dict[str, Rule]] = {"stiffness": number(0.0, 1.0, open_low=True), "damping": number(0.0, 50.0)}

    @property
    def deforms(self) -> bool:
        return True

    @property
    def two_sided(self) -> bool:
        """Where it squashes on the floor the simulation can turn faces inside out, and the renderer shows them:
        visibility is left to the depth test."""
        return True


@dataclass(eq=False)
class AnimatedMesh(Object):
    """A mesh file's own animation (glTF/GLB or FBX: skinned by an armature, or shape keys), e.g. a rigged
    character or animal: frame k of the clip shows the file at ``start + k * speed / frame_rate`` seconds
    (``animation``: an action's name, else the importer's choice). Scaled so that its first frame's longest side
    is ``size``, centred on that frame's bounding box; its frame moves by script (`keyframe`, `set_poses`) or
    stays. PyBullet ignores it."""

    rigid: ClassVar[bool] = False
    path: str = ""
    animation: str | None = None
    start: float = 0.0  # seconds into the file's animation at frame 0
    speed: float = 1.0
    checks: ClassVar[dict[str, Rule]] = {
        "path": existing_file("animated mesh file (.gltf, .glb or .fbx)"),
        "animation": optional(text),
        "start": number(unit="seconds"),
        "speed": number(-1e3, 1e3, unit="times the file's own speed"),
    }

    @property
    def animated(self) -> bool:
        return True

    def _placed(self, frames: np.ndarray) -> np.ndarray:
        lo, hi = frames[0].min(0), frames[0].max(0)
        return (frames - (lo + hi) / 2) * (self.size / (hi - lo).max())

    def unit_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        frames, faces = self.mesh_reader().animation(self.path, self.animation, self.start, self.speed, 1, 24)
        return self._placed(frames)[0] / self.size, faces

    def mesh(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Its first frame at ``size``, centred on its bounding box."""
        if self._mesh is None:
            vertices, faces = self.unit_mesh()
            self._mesh = (vertices * self.size, faces, 0.0)
        return self._mesh

    def vertex_positions(self, num_frames: int, frame_rate: int) -> np.ndarray:
        frames, _ = self.mesh_reader().animation(
            self.path, self.animation, self.start, self.speed, num_frames, frame_rate
        )
        return self._placed(frames)


PIN_EDGES = ("-x", "+x", "-y", "+y")


@dataclass(eq=False)
class Cloth(Object):
    """A rectangular sheet of cloth (Blender's cloth simulation) that falls onto and drapes over the other
    objects and the floor, which it collides with as they move. ``size`` is its longer side, ``aspect`` its
    shorter side over the longer; it starts flat in the object's XY plane at its pose. ``pin``: an edge held
    in place ("-x", "+x", "-y", "+y"), or None to fall freely. It is two-sided and ignored by PyBullet."""

    rigid: ClassVar[bool] = False
    aspect: float = 1.0
    resolution: int = 32  # vertices along the longer side
    pin: str | None = None
    stiffness: float = 15.0  # Blender's tension/compression stiffness
    bending: float = 0.5  # Blender's bending stiffness
    smooth: bool = True
    checks: ClassVar[dict[str, Rule]] = {
        "aspect": number(0.0, 1.0, open_low=True),
        "resolution": integer(4, 256, "vertices along the longer side"),
        "pin": optional(one_of(PIN_EDGES, "an edge")),
        "stiffness": positive(1e4),
        "bending": number(0.0, 1e4),
    }

    @property
    def two_sided(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"motion": "simulated in Blender"}

    def unit_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        nx, ny = self.resolution, max(2, round(self.resolution * self.aspect))
        x, y = np.meshgrid(np.linspace(-0.5, 0.5, nx), np.linspace(-0.5, 0.5, ny) * self.aspect)
        vertices = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], -1)
        index = np.arange(nx * ny).reshape(ny, nx)
        a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]
        faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
        return vertices, faces

    def mesh(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The sheet at ``size``, centred on its middle (a sheet has no volume)."""
        if self._mesh is None:
            vertices, faces = self.unit_mesh()
            self._mesh = (vertices * self.size, faces, 0.0)
        return self._mesh

    def pinned_vertices(self) -> np.ndarray:
        """Indices of the vertices held by ``pin``."""
        if self.pin is None:
            return np.zeros(0, int)
        vertices = self.mesh()[0]
        axis = 0 if self.pin[1] == "x" else 1
        edge = vertices[:, axis].min() if self.pin[0] == "-" else vertices[:, axis].max()
        return np.flatnonzero(np.isclose(vertices[:, axis], edge))


# --------------------------------------------------------------------------------------- floor, background
LENGTH = positive(unit="metres")
STRENGTH = number(0.0, 1e6)
POWER = positive(1e9, "watts")


@dataclass(eq=False, kw_only=True)
class Floor(_Checked):
    """A square ground plane at z = 0 (part of the static background, id 0); a collider in physics."""

    material: Material = field(default_factory=Principled)
    size: float = FLOOR_SIZE
    friction: float = 1.0
    restitution: float = 0.0
    checks: ClassVar[dict[str, Rule]] = {
        "material": instance(Principled, Emission),
        "size": LENGTH,
        "friction": FRICTION,
        "restitution": UNIT,
    }


@dataclass
class Dome(_Checked):
    """A textured hemisphere around the scene: static background (id 0), trackable, lights the scene with its
    emission; casts no shadow."""

    material: Emission = field(default_factory=Emission)
    radius: float = DOME_RADIUS
    checks: ClassVar[dict[str, Rule]] = {"material": instance(Emission), "radius": LENGTH}


@dataclass
class Sky(_Checked):
    """Blender's Preetham sky towards ``sun_direction`` (not trackable: rays to it hit nothing)."""

    sun_direction: Vector = (0.0, 0.0, 1.0)
    turbidity: float = 2.0
    strength: float = 0.3
    checks: ClassVar[dict[str, Rule]] = {
        "sun_direction": DIRECTION,
        "turbidity": number(1.0, 10.0),
        "strength": STRENGTH,
    }


@dataclass
class Environment(_Checked):
    """An environment map (an HDRI file) or, without ``hdri``, a plain color: lights the scene, not trackable."""

    hdri: str | None = None
    color: Vector = (0.5, 0.5, 0.5)
    strength: float = 1.0
    renamed: ClassVar[tuple[str, ...]] = ("colour",)
    checks: ClassVar[dict[str, Rule]] = {
        "hdri": optional(existing_file("image file (an HDRI)")),
        "color": _color,
        "strength": STRENGTH,
    }


Background = Dome | Sky | Environment


# ---------------------------------------------------------------------------------------------------- lights
@dataclass
class Sun(_Checked):
    """A directional light shining from ``direction`` (a vector towards the sun), ``strength`` in W/m^2."""

    direction: Vector = (0.0, 0.0, 1.0)
    strength: float = 3.0
    angle: float = 3.0  # degrees: the sun's apparent size (soft shadow edges)
    checks: ClassVar[dict[str, Rule]] = {
        "direction": DIRECTION,
        "strength": positive(1e6, "W/m^2"),
        "angle": number(0.0, 180.0, unit="degrees"),
    }


@dataclass
class PointLight(_Checked):
    """A point light (a small sphere of ``radius``; 0: a point with sharp shadows) at ``position``, ``power`` in
    watts; ``path`` [T,3] moves it (one position per frame)."""

    position: Vector = (0.0, 0.0, 5.0)
    power: float = 1000.0
    radius: float = 0.1
    color: Vector = (1.0, 1.0, 1.0)
    path: Any = None
    renamed: ClassVar[tuple[str, ...]] = ("colour",)
    checks: ClassVar[dict[str, Rule]] = {
        "position": POINT,
        "power": POWER,
        "radius": number(0.0, LIMIT, unit="metres"),
        "color": _color,
        "path": optional(array((3,), "an array of shape [num_frames, 3] (a position per frame)")),
    }


@dataclass
class AreaLight(_Checked):
    """A square area light of side ``size`` at ``position`` facing ``look_at``, ``power`` in watts."""

    position: Vector = (0.0, 0.0, 5.0)
    look_at: Vector = (0.0, 0.0, 0.0)
    size: float = 1.0
    power: float = 500.0
    color: Vector = (1.0, 1.0, 1.0)
    renamed: ClassVar[tuple[str, ...]] = ("colour",)
    checks: ClassVar[dict[str, Rule]] = {
        "position": POINT,
        "look_at": POINT,
        "size": LENGTH,
        "power": POWER,
        "color": _color,
    }

    def check_together(self) -> None:
        check(type(self).__name__, "look_at", self.look_at, _apart(self.position, "position"))


Light = Sun | PointLight | AreaLight


# ---------------------------------------------------------------------------------------------------- camera
def _points(value: Any) -> np.ndarray:
    """A point [3] or one per frame [T,3] -> [1,3] or [T,3]."""
    try:
        return np.atleast_2d(array((3,), "")(np.atleast_2d(value) if np.ndim(value) == 1 else value))
    except (Refused, ValueError, TypeError):
        raise Refused(
            f"a point (x, y, z) or one per frame [num_frames, 3]: finite numbers within +-{LIMIT:g}"
        ) from None


def _apart(other: Any, other_name: str) -> Rule:
    """Points [3] or [T,3] away from ``other`` (the same shape, or one point) at every frame: a camera or a light
    looking at where it stands has no direction."""

    def rule(value: Any) -> Any:
        ours, theirs = np.atleast_2d(np.asarray(value, float)), np.atleast_2d(np.asarray(other, float))
        if len(ours) not in (1, len(theirs)) and len(theirs) != 1:
            raise Refused(f"one point or one per frame of {other_name} ({len(theirs)} frames)")
        if (np.linalg.norm(ours - theirs, axis=-1) <= MIN_NORM).any():
            raise Refused(f"a point away from the {other_name} at every frame (it looks from one to the other)")
        return value

    return rule


ROLLS = array((), "an angle in radians or one per frame [num_frames]")


def _rolls(value: Any) -> np.ndarray:
    """A roll angle or one per frame [T] -> [1] or [T] radians."""
    try:
        one = np.ndim(value) == 0
    except (ValueError, TypeError):  # ragged
        one = False
    return ROLLS(np.atleast_1d(value) if one else value)


def _frames_of(*per_frame: np.ndarray) -> Rule:
    """One value, or as many as the per-frame arrays among ``per_frame`` have frames."""
    lengths = {len(a) for a in per_frame} - {1}

    def rule(value: Any) -> Any:
        if lengths and len(value) not in {1} | lengths:
            raise Refused(f"one value or one per frame of the positions and targets ({max(lengths)} frames)")
        return value

    return rule


@dataclass(eq=False)
class Camera(_Checked):
    """A pinhole camera (Kubric's PerspectiveCamera): focal length and sensor width in mm, horizontal fit.

    Its path: `look_at` with one position and target or per-frame arrays [T,3], or `keyframe` per frame
    (linear between keys). Both take a ``roll`` in radians about the camera's viewing axis (one, or one per frame):
    the camera-to-world matrix is the unrolled one (world +Z up in the picture) times a rotation about the camera's
    own z axis, so a positive roll turns the camera counter-clockwise as seen from behind it and the picture's
    content clockwise."""

    focal_length: float = 35.0
    sensor_width: float = 32.0
    _path: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _keys: dict[int, tuple[np.ndarray, np.ndarray, float]] = field(default_factory=dict, repr=False)
    checks: ClassVar[dict[str, Rule]] = {
        "focal_length": number(1.0, LIMIT, unit="mm; Blender's least is 1"),
        "sensor_width": number(1.0, LIMIT, unit="mm; Blender's least is 1"),
    }

    def look_at(self, position: Any, target: Any = (0.0, 0.0, 0.0), roll: Any = 0.0) -> Camera:
        """Place the camera at ``position`` looking at ``target`` (each a point [3] or one per frame [T,3]), turned
        by ``roll`` radians about its viewing axis (one angle or one per frame [T])."""
        points = self._argument("look_at", "position", position, _points)
        targets = self._argument("look_at", "target", target, _points)
        self._argument("look_at", "target", target, _apart(points, "position"))
        rolls = self._argument("look_at", "roll", roll, _rolls)
        self._argument("look_at", "roll", rolls, _frames_of(points, targets))
        self._path, self._keys = (points, targets, rolls), {}
        return self

    def keyframe(self, frame: int, position: Vector, look_at: Vector = (0.0, 0.0, 0.0), roll: float = 0.0) -> Camera:
        """Pin the camera at ``frame``; frames between keys are interpolated linearly (the roll too, in radians,
        unwrapped: keys 0 and 2 pi make a full turn)."""
        frame = self._argument("keyframe", "frame", frame, FRAME)
        position = self._argument("keyframe", "position", position, POINT)
        look_at = self._argument("keyframe", "look_at", look_at, POINT)
        self._argument("keyframe", "look_at", look_at, _apart(position, "position"))
        roll = self._argument("keyframe", "roll", roll, number(unit="radians"))
        self._keys[frame] = (np.array(position), np.array(look_at), roll)
        self._path = None
        return self

    def path(self, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame positions and look-at points [T,3], [T,3]."""
        frames = np.arange(num_frames)
        if self._keys:
            positions = interpolate_keys({k: p for k, (p, _, _) in self._keys.items()}, frames)
            return positions, interpolate_keys({k: t for k, (_, t, _) in self._keys.items()}, frames)
        positions, targets, _ = self._placed(num_frames)
        return np.broadcast_to(positions, (num_frames, 3)).copy(), np.broadcast_to(targets, (num_frames, 3)).copy()

    def roll(self, num_frames: int) -> np.ndarray:
        """Per-frame roll [T] in radians about the viewing axis (positive: the camera turns counter-clockwise as
        seen from behind it)."""
        if self._keys:
            keys = {k: np.array([r]) for k, (_, _, r) in self._keys.items()}
            return interpolate_keys(keys, np.arange(num_frames))[:, 0]
        return np.broadcast_to(self._placed(num_frames)[2], (num_frames,)).copy()

    def _placed(self, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`look_at`'s positions, targets and rolls, each of one or ``num_frames`` entries."""
        if self._path is None:
            raise TapforgeError(
                "the scene's camera has no position: call scene.camera.look_at(position, target) "
                "or scene.camera.keyframe(frame, position, look_at) in the script"
            )
        for name, values in zip(("position", "target", "roll"), self._path):
            if len(values) not in (1, num_frames):
                raise TapforgeError(
                    f"camera.look_at: {len(values)} {name}s for a clip of {num_frames} frames; "
                    "give one, or one per frame"
                )
        return self._path

    def matrices(self, num_frames: int) -> np.ndarray:
        """Camera-to-world matrices [T,4,4] (Blender convention), roll included."""
        return look_at_matrices(*self.path(num_frames), self.roll(num_frames))

    def intrinsics(self, resolution: tuple[int, int]) -> np.ndarray:
        """Pixel intrinsics K (OpenCV convention, pixel centres at +0.5), horizontal sensor fit."""
        width, height = resolution
        fx = self.focal_length / self.sensor_width * width
        return np.array([[fx, 0.0, width / 2.0], [0.0, fx, height / 2.0], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------------------------------- views
def ring_views(
    count: int,
    radius: float,
    height: float,
    center: Vector = (0.0, 0.0, 0.0),
    focal_length: float = 35.0,
    sensor_width: float = 32.0,
    azimuth: float = 0.0,
) -> list[Camera]:
    """``count`` still cameras evenly spaced on a horizontal circle of ``radius`` metres around ``center``, ``height``
    metres above it, each looking at ``center``; the first at ``azimuth`` radians (from +x towards +y), the others
    counter-clockwise seen from above."""
    count = check("ring_views", "count", count, integer(1, 1000, "cameras"))
    radius = check("ring_views", "radius", radius, positive(unit="metres"))
    height = check("ring_views", "height", height, number(unit="metres above the centre"))
    center = np.asarray(check("ring_views", "center", center, POINT), float)
    angles = azimuth + 2 * np.pi * np.arange(count) / count
    return [
        Camera(focal_length, sensor_width).look_at(center + (radius * np.cos(a), radius * np.sin(a), height), center)
        for a in angles
    ]


def hemisphere_views(
    count: int,
    radius: float,
    rng: np.random.Generator,
    center: Vector = (0.0, 0.0, 0.0),
    elevation: tuple[float, float] = (15.0, 60.0),
    focal_length: float = 35.0,
    sensor_width: float = 32.0,
) -> list[Camera]:
    """``count`` still cameras at random on the upper hemisphere of ``radius`` metres around ``center`` (uniform on
    its area between ``elevation`` degrees above the horizon, any azimuth), each looking at ``center``; drawn
    from ``rng``."""
    count = check("hemisphere_views", "count", count, integer(1, 1000, "cameras"))
    radius = check("hemisphere_views", "radius", radius, positive(unit="metres"))
    center = np.asarray(check("hemisphere_views", "center", center, POINT), float)
    low, high = np.radians(np.asarray(elevation, float))
    if not 0 <= low <= high <= np.pi / 2:
        raise refuse("hemisphere_views", "elevation", elevation, "(low, high) degrees with 0 <= low <= high <= 90")
    azimuth = rng.uniform(0, 2 * np.pi, count)
    up = np.arcsin(rng.uniform(np.sin(low), np.sin(high), count))  # uniform in sin(elevation): uniform on the area
    offsets = radius * np.stack([np.cos(up) * np.cos(azimuth), np.cos(up) * np.sin(azimuth), np.sin(up)], -1)
    return [Camera(focal_length, sensor_width).look_at(center + offset, center) for offset in offsets]


def stereo_views(camera: Camera, num_frames: int, baseline: float, convergence: float = 0.0) -> list[Camera]:
    """A stereo pair on ``camera``'s path (its lens and roll): the left and the right camera, ``baseline`` metres
    apart along its x axis at every frame. ``convergence`` 0: parallel optical axes, pointing as ``camera`` does
    (rectified stereo); > 0: the axes cross that many metres ahead of ``camera`` (toe-in)."""
    baseline = check("stereo_views", "baseline", baseline, positive(unit="metres between the two cameras"))
    convergence = check("stereo_views", "convergence", convergence, number(0.0, LIMIT, unit="metres (0: parallel)"))
    matrices = camera.matrices(num_frames)
    positions, targets = camera.path(num_frames)
    right, forward = matrices[:, :3, 0], -matrices[:, :3, 2]
    if convergence:
        targets = positions + convergence * forward
    pair = []
    for side in (-0.5, 0.5):
        shift = side * baseline * right
        aim = targets if convergence else targets + shift
        pair.append(
            Camera(camera.focal_length, camera.sensor_width).look_at(positions + shift, aim, camera.roll(num_frames))
        )
    return pair


def _views(value: Any) -> list[Camera] | None:
    """None (the one camera ``scene.camera``) or a non-empty list of cameras."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, Camera) for c in value):
        raise Refused("a list of Camera, one per view (or None: the one camera scene.camera)")
    if not value:
        raise Refused(
            "at least one Camera: zero views render nothing (leave scene.views unset, or None, for scene.camera)"
        )
    return list(value)


def _inside_mesh(point: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Whether ``point`` lies inside the closed mesh (ray parity: a ray from it crosses the surface an odd number of
    times; the ray is skewed off the axes so that it misses edges and vertices of axis-aligned meshes)."""
    direction = np.array([1.0, 1e-3 * np.pi, 1e-3 * np.e])
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    ab, ac = b - a, c - a
    p = np.cross(direction, ac)
    det = (ab * p).sum(-1)
    ok = np.abs(det) > 1e-12
    inverse = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = point - a
    u = (s * p).sum(-1) * inverse
    q = np.cross(s, ab)
    v = (q * direction).sum(-1) * inverse
    distance = (ac * q).sum(-1) * inverse
    hits = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (distance > 0)
    return bool(hits.sum() % 2)


# ----------------------------------------------------------------------------------------------------- scene
@dataclass
class AssetFiles:
    """The user's asset folders of the config: sorted texture images, HDRIs and Kubric-manifest asset ids."""

    textures: list[str] = field(default_factory=list)
    hdris: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)


class Simulator(Protocol):
    """What a scene asks of its simulator (`tapforge.synth.physics.PyBullet` is one)."""

    recorded: bool  # the clip's frames have been simulated and stored in the objects

    def run(self, frames: int | None = None) -> None: ...

    def close(self) -> None: ...


def _resolution(value: Any) -> tuple[int, int]:
    width_height = integer(1, 65536, "pixels")
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Refused("(width, height): two integers in [1, 65536] (pixels)")
    try:
        return (width_height(value[0]), width_height(value[1]))
    except Refused:
        raise Refused("(width, height): two integers in [1, 65536] (pixels)") from None


class Scene(_Checked):
    """One clip's scene: objects, floor, background, lights, camera and render look.

    The pipeline creates it with the config's frames and resolution, its simulator
    (``simulator_factory``: `tapforge.synth.physics.PyBullet`) and its mesh reader (`MeshReader`), and hands it to
    the script's ``build``. ``scene.add(thing)`` (or ``scene += thing``) adds objects and lights; ``scene.camera``,
    ``scene.floor``, ``scene.background``, ``scene.motion_blur``, ``scene.view_transform`` and ``scene.metadata``
    are set directly (each checked when set).

    Views: ``scene.views = [Camera(...).look_at(...), ...]`` renders the one simulated scene from each camera (a
    multi-view clip: one view per camera, each on its own path, all on the same frames, at the one resolution of
    the config); left unset, ``scene.camera`` is the one view. `ring_views`, `hemisphere_views` and `stereo_views`
    make the common rigs (the config's ``render.views`` applies them)."""

    checks: ClassVar[dict[str, Rule]] = {
        "num_frames": integer(1, LIMIT, "frames"),
        "frame_rate": integer(1, 1000, "frames per second"),
        "physics_rate": integer(1, LIMIT, "steps per second"),
        "seed": SEED,
        "assets": instance(AssetFiles),
        "camera": instance(Camera),
        "views": _views,
        "floor": instance(Floor, optional=True),
        "background": instance(Dome, Sky, Environment, optional=True),
        "motion_blur": number(0.0, 1.0, unit="the shutter, as a fraction of a frame"),
        "view_transform": one_of(VIEW_TRANSFORMS),
        "metadata": json_value("metadata"),
    }

    def __init__(
        self,
        resolution: tuple[int, int] = (256, 256),
        num_frames: int = 24,
        frame_rate: int = 12,
        physics_rate: int = 240,
        seed: int = 0,
        assets: AssetFiles | None = None,
        *,
        simulator_factory: Callable[[Scene], Simulator] | None = None,
        mesh_reader: MeshReader | None = None,
    ):
        self._resolution = check("Scene", "resolution", resolution, _resolution)
        self.num_frames, self.frame_rate, self.physics_rate = num_frames, frame_rate, physics_rate
        self.seed = seed
        self.assets = assets or AssetFiles()
        self.objects: list[Object] = []
        self.lights: list[Light] = []
        self.camera = Camera()
        self.views: list[Camera] | None = None  # several cameras: one view each (None: the one camera above)
        self.floor: Floor | None = None
        self.background: Background | None = None
        self.motion_blur = 0.0  # shutter as a fraction of a frame
        self.view_transform = "AgX"  # AgX | Filmic | Standard
        self.metadata: dict[str, Any] = {}  # the script's own notes, stored in meta.json
        self.simulator_factory, self.mesh_reader = simulator_factory, mesh_reader
        self._simulator: Simulator | None = None
        self.__post_init__()

    def check_together(self) -> None:
        if self.physics_rate < self.frame_rate:
            raise refuse("Scene", "physics_rate", self.physics_rate, f"at least the frame rate ({self.frame_rate})")

    @property
    def resolution(self) -> tuple[int, int]:
        """(width, height) in pixels, from the config's render.resolution: the renderer renders at it and the camera
        intrinsics use it. Read-only, so that the two always agree."""
        return self._resolution

    @resolution.setter
    def resolution(self, value: Any) -> None:
        raise TapforgeError(
            f"scene.resolution = {value!r}: a script cannot change the resolution (the pixels and the camera "
            "intrinsics must agree); set render.resolution in the config instead, e.g. --set render.resolution=[320,240]"
        )

    def add(self, *things: Object | Light) -> Any:
        """Add objects and lights; returns the (last) one added."""
        for thing in things:
            if isinstance(thing, Object):
                if thing in self.objects:
                    raise TapforgeError(f"{thing.label()} is added to the scene twice; add each object once")
                thing.instance_id = len(self.objects) + 1
                thing._reader = self.mesh_reader
                self.objects.append(thing)
            elif isinstance(thing, (Sun, PointLight, AreaLight)):
                self.lights.append(thing)
            elif isinstance(thing, (Floor, Dome, Sky, Environment, Camera)):
                raise TapforgeError(
                    f"scene.add({type(thing).__name__}): set scene."
                    f"{'floor' if isinstance(thing, Floor) else 'camera' if isinstance(thing, Camera) else 'background'}"
                    " = ... instead"
                )
            else:
                raise TapforgeError(
                    f"scene.add: cannot add {type(thing).__name__}; add objects (Shape, MeshFile, "
                    "Asset) or lights (Sun, PointLight, AreaLight)"
                )
        return things[-1] if things else None

    @property
    def cameras(self) -> list[Camera]:
        """The views' cameras: ``scene.views``, or the one ``scene.camera``."""
        return list(self.views) if self.views else [self.camera]

    def check_views(self) -> None:
        """Refuse, with one line naming the view, the frame and the fix, views that cannot make a clip: a camera
        inside an object (its rest shape at its pose) or below the floor, and a view that shows none of the
        scene's objects (their bounding spheres) in any frame. The pipeline calls it for multi-view scenes, after
        the physics and before anything renders."""
        positions, quaternions = self.object_poses()
        poses = pose_matrices(positions, quaternions)  # [O,T,4,4]
        solid = [(o, pose) for o, pose in zip(self.objects, poses) if o.rigid]
        for v, camera in enumerate(self.cameras):
            matrices = camera.matrices(self.num_frames)
            where = matrices[:, :3, 3]
            fix = "move it (render.views, or the camera's look_at in the script)"
            if self.floor is not None and (where[:, 2] < 0).any():
                t = int(np.argmax(where[:, 2] < 0))
                raise TapforgeError(
                    f"view {v}: its camera is below the floor at frame {t} (z = {where[t, 2]:.2f} m); {fix}"
                )
            for obj, pose in solid:
                vertices, faces, _ = obj.mesh()
                inverse = np.linalg.inv(pose)
                local = np.einsum("tij,tj->ti", inverse[:, :3, :3], where) + inverse[:, :3, 3]
                boxed = ((local >= vertices.min(0)) & (local <= vertices.max(0))).all(-1)
                for t in np.flatnonzero(boxed):
                    if _inside_mesh(local[t], vertices, faces):
                        raise TapforgeError(
                            f"view {v}: its camera is inside {obj.label()} at frame {t} (camera at "
                            f"{tuple(np.round(where[t], 2).tolist())}); {fix}"
                        )
            if not self.objects:
                continue
            K = camera.intrinsics(self.resolution)
            if not _sees_any(matrices, K, self.resolution, positions, self._radii()):
                raise TapforgeError(
                    f"view {v} shows none of the scene's {len(self.objects)} objects in any frame (camera at "
                    f"{tuple(np.round(where[0], 2).tolist())} at frame 0); aim it at them (render.views center, radius "
                    "and height, or the camera's look_at in the script)"
                )

    def _radii(self) -> np.ndarray:
        """Each object's bounding radius about its origin (metres)."""
        return np.array([np.linalg.norm(o.mesh()[0], axis=-1).max(initial=0.0) for o in self.objects])

    def __iadd__(self, thing: Object | Light) -> Scene:
        self.add(thing)
        return self

    @property
    def simulator(self) -> Simulator:
        """This scene's simulator (the pipeline's: `tapforge.synth.physics.PyBullet`), made on first use."""
        if self._simulator is None:
            if self.simulator_factory is None:
                raise TapforgeError(
                    "this scene has no simulator and its objects need one (physics, placement); make it with "
                    "Scene(..., simulator_factory=tapforge.synth.physics.PyBullet), as the pipeline does"
                )
            self._simulator = self.simulator_factory(self)
        return self._simulator

    def simulate_if_needed(self) -> None:
        """Run the clip's physics when objects move by physics and the script has not run the clip itself."""
        moving = [o for o in self.objects if o.simulated]
        if moving and (self._simulator is None or not self._simulator.recorded):
            self.simulator.run()

    def close(self) -> None:
        if self._simulator is not None:
            self._simulator.close()
            self._simulator = None

    def object_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions [O,T,3] and quaternions [O,T,4] of every object at every frame."""
        poses = [o.poses(self.num_frames) for o in self.objects]
        if not poses:
            return np.zeros((0, self.num_frames, 3)), np.zeros((0, self.num_frames, 4))
        return np.stack([p for p, _ in poses]), np.stack([q for _, q in poses])

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary stored in each sample's meta.json."""
        return {
            "num_frames": self.num_frames,
            "frame_rate": self.frame_rate,
            "resolution": list(self.resolution),
            "objects": [o.describe() for o in self.objects],
            "camera": {"focal_length": self.camera.focal_length, "sensor_width": self.camera.sensor_width},
            **(
                {"views": [{"focal_length": c.focal_length, "sensor_width": c.sensor_width} for c in self.views]}
                if self.views
                else {}
            ),
            "floor": None if self.floor is None else {"material": _describe(self.floor.material)},
            "background": None if self.background is None else _describe(self.background),
            "lights": [_describe(light) for light in self.lights],
            "motion_blur": self.motion_blur,
            "view_transform": self.view_transform,
            "metadata": _json_metadata("scene", self.metadata),
        }


def _sees_any(
    cam_to_world: np.ndarray, K: np.ndarray, resolution: tuple[int, int], centres: np.ndarray, radii: np.ndarray
) -> bool:
    """Whether any sphere (centres [O,T,3], radii [O]) meets the view frustum of the camera (Blender camera-to-world
    [T,4,4], pixel intrinsics K) in any frame: in front of the camera and within every side plane by its radius."""
    width, height = resolution
    offset = centres - cam_to_world[None, :, :3, 3]
    local = np.einsum("tji,otj->oti", cam_to_world[:, :3, :3], offset) * [1.0, -1.0, -1.0]  # OpenCV camera axes
    x, y, z = np.moveaxis(local, -1, 0)
    r = radii[:, None]
    inside = z > -r
    for coordinate, half in ((x, (width / 2) / K[0, 0]), (y, (height / 2) / K[1, 1])):
        norm = np.sqrt(1 + half**2)
        inside &= (coordinate - half * z) / norm <= r
        inside &= (-coordinate - half * z) / norm <= r
    return bool(inside.any())


def _json_metadata(owner: str, metadata: Any) -> Any:
    """A script's metadata as plain JSON values; one line naming the key of a value that is not JSON (the dict may
    have changed since it was checked on assignment)."""
    return _describe(check(owner, "metadata", metadata, json_value("metadata"), locate=False))


def _describe(thing: Any) -> dict[str, Any]:
    """A dataclass as plain JSON values (numpy arrays to lists), with its kind."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {"kind": type(value).__name__} | {
                f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if not f.name.startswith("_")
            }
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value

    return plain(thing)
