"""Synth configuration: YAML presets with `inherit:`, `--set key=value` overrides, up-front validation.

A config has the sections ``seed``, ``scene`` (the scene script and the clip's frames, plus the script's own
keys, see `tapforge.synth.scripts`), ``render`` (with the optional ``render.views``: a rig of cameras that sees
the one simulated scene, `VIEW_RIGS`), ``tracks``, ``outputs`` and ``assets``. Every problem in a config is
collected and reported at once, each with its fix, before anything renders; `load_config` then returns a frozen
`SynthConfig`, one typed dataclass per section, whose ``tree`` is the plain resolved config the manifest stores.
Presets are package data (``tapforge/synth/presets``), so a preset name works from any folder after any install.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import yaml

from tapforge.base.errors import TapforgeError
from tapforge.base.video import IMAGE_SUFFIXES
from tapforge.synth.schema import OPTIONAL_PASSES
from tapforge.synth.script_config import check_values, defaults, is_int, is_number, subset_of

CONFIG_DIR = Path(__file__).resolve().parent / "presets"
GENERAL_SCENE_KEYS = ("script", "num_frames", "frame_rate", "physics_rate")
SECTIONS = ("scene", "render", "tracks", "outputs", "assets")  # mappings of keys; ``seed`` is a value
SCRIPT_HASH_KEY = "scene.script_sha256"  # filled in by load_config: the script's identity
IDENTITY_FREE_KEYS = ("render.threads",)  # keys that change no pixel: not part of the dataset's identity
HDRI_SUFFIXES = (".hdr", ".exr")
VIEWS_KEY = "render.views"  # optional: absent (the scene script's camera or cameras) leaves a config's hash as it was
# optional render keys and the value that an absent key means: the settings from before the key existed, so a
# config written before them (a manifest's) renders as it did and keeps its hash
RENDER_KEY_DEFAULTS: dict[str, Any] = {
    "render.adaptive_min_samples": 0,
    "render.max_bounces": 12,
    "render.diffuse_bounces": 4,
    "render.glossy_bounces": 4,
    "render.light_tree": True,
}
# render.views rigs -> their keys and defaults (lengths in metres, angles in degrees); `count` cameras each
VIEW_RIGS: dict[str, dict[str, Any]] = {
    "ring": {"count": 4, "radius": 12.0, "height": 6.0, "center": [0.0, 0.0, 0.0], "azimuth": 0.0},
    "hemisphere": {"count": 4, "radius": 13.0, "center": [0.0, 0.0, 0.0], "elevation": [15.0, 60.0]},
    "stereo": {"baseline": 0.5, "convergence": 0.0},
}
MAX_VIEWS = 64


def _optional_dir(v: Any) -> bool:
    return v is None or (isinstance(v, str) and Path(v).expanduser().is_dir())


def folder_files(folder: str | None, suffixes: tuple[str, ...]) -> list[str]:
    """The sorted files of ``folder`` with one of ``suffixes`` (none for no folder)."""
    if not folder:
        return []
    return sorted(str(p) for p in Path(folder).expanduser().iterdir() if p.suffix.lower() in suffixes)


def _folder_of(suffixes: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda v: v is None or (_optional_dir(v) and bool(folder_files(v, suffixes)))


def _unreadable_images(folder: str) -> list[str]:
    """The images of ``folder`` that do not decode (a truncated file, another format under an image suffix)."""
    from PIL import Image

    bad = []
    for path in folder_files(folder, IMAGE_SUFFIXES):
        try:
            with Image.open(path) as image:
                image.load()
        except Exception:  # PIL raises many kinds for broken files
            bad.append(Path(path).name)
    return bad


HDRI_MAGIC = {".hdr": (b"#?",), ".exr": (b"\x76\x2f\x31\x01",)}  # Radiance RGBE, OpenEXR


def _unreadable_hdris(folder: str) -> list[str]:
    """The HDRIs of ``folder`` that are not Radiance or OpenEXR files (by their header; Blender checks the rest
    when it loads them)."""
    bad = []
    for path in folder_files(folder, HDRI_SUFFIXES):
        with open(path, "rb") as f:
            head = f.read(4)
        if not head.startswith(HDRI_MAGIC[Path(path).suffix.lower()]):
            bad.append(Path(path).name)
    return bad


def _resolution(v: Any) -> bool:
    if is_int(v):
        v = [v, v]
    return isinstance(v, list) and len(v) == 2 and all(is_int(x) and 16 <= x <= 8192 for x in v)


def _is_point(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 3 and all(is_number(x) for x in v)


VIEW_KEY_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "count": (lambda v: is_int(v) and 1 <= v <= MAX_VIEWS, f"an integer in [1, {MAX_VIEWS}] (cameras)"),
    "radius": (lambda v: is_number(v) and 0 < v <= 1e4, "a number of metres in (0, 10000]"),
    "height": (lambda v: is_number(v) and abs(v) <= 1e4, "a number of metres above the centre"),
    "center": (_is_point, "[x, y, z] in metres: the point the cameras look at"),
    "azimuth": (is_number, "a number of degrees: where the first camera stands, from +x towards +y"),
    "elevation": (
        lambda v: isinstance(v, list) and len(v) == 2 and all(is_number(x) for x in v) and 0 <= v[0] <= v[1] <= 90,
        "[low, high] degrees above the horizon, 0 <= low <= high <= 90",
    ),
    "baseline": (lambda v: is_number(v) and 0 < v <= 1e3, "a number of metres in (0, 1000]: between the cameras"),
    "convergence": (lambda v: is_number(v) and 0 <= v <= 1e4, "metres ahead where the axes cross (0: parallel)"),
}


def view_rig_problems(views: Any) -> list[str]:
    """The problems of a ``render.views`` mapping (each a line with its fix); none for null."""
    if not isinstance(views, dict):
        return []
    rig = views.get("rig")
    if rig not in VIEW_RIGS:
        return [f"{VIEWS_KEY}.rig: bad value {rig!r}; use one of {', '.join(VIEW_RIGS)}"]
    problems = []
    if views.get("count") == 0:
        problems.append(
            f"{VIEWS_KEY}.count: 0 views render nothing; give at least 1 camera (or remove {VIEWS_KEY} for the scene "
            "script's own camera)"
        )
    for key in sorted(set(views) - {"rig"}):
        if key == "resolution":
            problems.append(
                f"{VIEWS_KEY}.resolution: every view renders at render.resolution (one resolution for all views: "
                "they are one Blender scene, and multi-view loaders stack them); remove it"
            )
        elif key not in VIEW_RIGS[rig]:
            problems.append(f"{VIEWS_KEY}.{key}: not a key of the {rig} rig; its keys: {', '.join(VIEW_RIGS[rig])}")
        elif not VIEW_KEY_RULES[key][0](views[key]) and not (key == "count" and views[key] == 0):
            problems.append(f"{VIEWS_KEY}.{key}: bad value {views[key]!r}; use {VIEW_KEY_RULES[key][1]}")
    return problems


# key -> (check, fix shown when the check fails); the scene script's own keys are checked by its Config
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (is_int, "an integer"),
    "scene.script": (
        lambda v: isinstance(v, str) and bool(v.strip()),
        "a script name (movi), a .py file or module:function",
    ),
    "scene.num_frames": (lambda v: is_int(v) and 2 <= v <= 2000, "an integer in [2, 2000]"),
    "scene.frame_rate": (lambda v: is_int(v) and 1 <= v <= 240, "an integer in [1, 240]"),
    "scene.physics_rate": (
        lambda v: is_int(v) and 60 <= v <= 2400,
        "an integer in [60, 2400], a multiple of frame_rate",
    ),
    "render.resolution": (_resolution, "[width, height] or one integer, each in [16, 8192]"),
    "render.samples": (lambda v: is_int(v) and 1 <= v <= 65536, "an integer >= 1"),
    "render.device": (lambda v: v in ("auto", "cpu", "cuda", "optix"), "auto, cpu, cuda or optix"),
    "render.denoise": (lambda v: isinstance(v, bool), "true or false"),
    "render.noise_threshold": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1) (0 = no adaptive sampling)"),
    "render.adaptive_min_samples": (
        lambda v: is_int(v) and 0 <= v <= 65536,
        "an integer >= 0: samples every pixel gets before adaptive sampling may stop it (0 = Cycles' own rule)",
    ),
    "render.max_bounces": (lambda v: is_int(v) and 0 <= v <= 1024, "an integer in [0, 1024] (light bounces in all)"),
    "render.diffuse_bounces": (lambda v: is_int(v) and 0 <= v <= 1024, "an integer in [0, 1024]"),
    "render.glossy_bounces": (lambda v: is_int(v) and 0 <= v <= 1024, "an integer in [0, 1024]"),
    "render.light_tree": (lambda v: isinstance(v, bool), "true or false (Cycles' light tree for light sampling)"),
    VIEWS_KEY: (
        lambda v: v is None or isinstance(v, dict),
        "null or a rig, e.g. {rig: ring, count: 4} (rigs: " + ", ".join(VIEW_RIGS) + ")",
    ),
    "render.threads": (
        lambda v: is_int(v) and 0 <= v <= 1024,
        "an integer in [0, 1024] (0 = cores split between the workers)",
    ),
    "tracks.num_tracks": (lambda v: is_int(v) and 1 <= v <= 100000, "an integer in [1, 100000]"),
    "tracks.depth_tolerance": (lambda v: is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    "outputs.passes": (
        subset_of(OPTIONAL_PASSES, allow_empty=True),
        f"a list from {list(OPTIONAL_PASSES)}, e.g. [depth,segmentation]",
    ),
    "outputs.video_codec": (lambda v: v in ("png", "jpg"), "png or jpg"),
    "outputs.jpeg_quality": (lambda v: is_int(v) and 1 <= v <= 100, "an integer in [1, 100]"),
    "outputs.scenes_per_shard": (lambda v: is_int(v) and 1 <= v <= 10000, "an integer >= 1"),
    "assets.directory": (_optional_dir, "null or an existing folder with a Kubric-format manifest"),
    "assets.textures_dir": (
        _folder_of(IMAGE_SUFFIXES),
        "null or an existing folder holding .png/.jpg images (also "
        + ", ".join(s for s in IMAGE_SUFFIXES if s not in (".png", ".jpg"))
        + ")",
    ),
    "assets.hdri_dir": (_folder_of(HDRI_SUFFIXES), "null or an existing folder holding .hdr/.exr files"),
}


def _flatten(tree: dict) -> dict[str, Any]:
    """``section.key`` -> value for the keys of every section (a value is kept whole, even a mapping: a mapping
    where a value belongs is then a bad value, not keys of its own); top-level keys stay as they are."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[str(key)] = value
    return flat


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice (YAML itself would keep the last silently)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (merge keys ``<<`` may still be overridden)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    first = lines.get(key)
                except TypeError:  # an unhashable key: the base loader reports it
                    continue
                if first is not None:
                    where = f"line {line}" if first == line else f"lines {first} and {line}"
                    raise DuplicateKeyError(f"key {key!r} is given twice in one mapping ({where})")
                lines[key] = line
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_preset_path(name_or_path: str | Path) -> Path:
    """A preset name (``movi_e``) or a YAML path -> an existing YAML path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise TapforgeError(f"config {name_or_path!r} not found; give a YAML path or a preset name from {names}")


def _load_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise TapforgeError(f"config {path} inherits itself in a cycle; fix the `inherit:` chain")
    try:
        tree = _parse_yaml(path.read_text()) or {}
    except DuplicateKeyError as err:
        raise TapforgeError(f"config {path}: {err}; keep one of them") from None
    except yaml.YAMLError as err:
        raise TapforgeError(f"config {path} is not valid YAML ({str(err).splitlines()[0]}); fix its syntax") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise TapforgeError(f"config {path} cannot be read ({reason}); give a YAML file") from None
    if not isinstance(tree, dict):
        raise TapforgeError(f"config {path} must be a YAML mapping of sections (scene:, render:, ...)")
    scene = tree.get("scene")
    script = scene.get("script") if isinstance(scene, dict) else None
    if isinstance(script, str) and script.split(":")[0].endswith(".py") and not Path(script).expanduser().is_absolute():
        tree["scene"]["script"] = str((path.parent / script).resolve())  # relative to the config file
    parent = tree.pop("inherit", None)
    if parent is None:
        return tree
    if not isinstance(parent, str) or not parent.strip():
        raise TapforgeError(f"config {path}: inherit: {parent!r} is not a preset name or a YAML path; fix it")
    sibling = path.parent / f"{parent}.yaml"
    parent_path = resolve_preset_path(sibling if "/" not in str(parent) and sibling.is_file() else parent)
    return _merge(_load_yaml(parent_path, seen + (path,)), tree)


def parse_override(text: str) -> tuple[str, Any]:
    """``render.samples=64`` -> ("render.samples", 64); the value is parsed as YAML."""
    if "=" not in text:
        raise TapforgeError(f"--set {text!r} is not key=value; write e.g. --set render.samples=64")
    key, raw = text.split("=", 1)
    try:
        value = _parse_yaml(raw) if raw.strip() else None
    except DuplicateKeyError as err:
        raise TapforgeError(f"--set {key}: value {raw!r}: {err}; keep one of them") from None
    except yaml.YAMLError:
        raise TapforgeError(f"--set {key}: value {raw!r} is not valid YAML; quote lists as [a,b]") from None
    return key.strip(), value


def _apply_override(tree: dict, key: str, value: Any) -> str | None:
    """Set ``key`` (``section.name``) to ``value`` in ``tree``; the problem with the key path, None when set."""
    if key in SECTIONS:
        example = next((k for k in RULES if k.startswith(key + ".")), key + ".KEY")
        return f"--set {key}: {key} is a section of keys, not a value; set one of its keys, e.g. --set {example}=..."
    if key.startswith(VIEWS_KEY + ".") and key.count(".") == 2:  # one key of the rig: --set render.views.count=8
        render = tree.setdefault("render", {})
        if not isinstance(render, dict):
            return f"--set {key}: render is a value ({render!r}), not a section of keys; set render itself"
        if not isinstance(render.get("views"), dict):
            render["views"] = {}
        render["views"][key.rsplit(".", 1)[1]] = value
        return None
    if key == SCRIPT_HASH_KEY or (key not in RULES and not key.startswith("scene.")):
        return (
            f"--set {key}: unknown key; known keys: {', '.join(sorted(RULES))}, and the scene script's own scene.* keys"
        )
    node = tree
    *parents, leaf = key.split(".")
    for depth, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where = ".".join(parents[: depth + 1])
            return f"--set {key}: {where} is a value ({node!r}), not a section of keys; set {where} itself"
    node[leaf] = value
    return None


def load_config(preset: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SynthConfig:
    """Load a preset (name or path), apply ``key=value`` overrides, validate, and return the typed config.

    The scene script's keys get its defaults where the config leaves them out, and ``scene.script_sha256``
    records the script's identity."""
    tree = _load_yaml(resolve_preset_path(preset))
    if "inherit" not in tree:
        tree = _merge(_load_yaml(CONFIG_DIR / "base.yaml"), tree)
    problems: list[str] = []
    for item in overrides:
        if problem := _apply_override(tree, *parse_override(item)):
            problems.append(problem)
    validate(tree, problems)
    if isinstance(tree["render"]["resolution"], int):
        tree["render"]["resolution"] = [tree["render"]["resolution"]] * 2
    views = tree["render"].pop("views", None)
    if views is not None:  # the rig's defaults filled in: the manifest says exactly which cameras rendered
        tree["render"]["views"] = {"rig": views["rig"], **VIEW_RIGS[views["rig"]], **views}
    return SynthConfig.of(tree)


@dataclass(frozen=True)
class SceneSettings:
    """The ``scene:`` section's general keys, typed (the script's own keys: `SynthConfig.script_values`)."""

    script: str  # as in the config: a script name, a .py path (resolved) or module:function
    script_sha256: str  # the script's identity
    num_frames: int
    frame_rate: int
    physics_rate: int


@dataclass(frozen=True)
class ViewRig:
    """``render.views``, typed: a rig of cameras (`VIEW_RIGS`) that renders the scene instead of the script's
    camera or cameras (ring, hemisphere) or around it (stereo: a pair on the script's camera path)."""

    rig: str  # ring | hemisphere | stereo
    count: int = 2  # cameras (a stereo pair: 2)
    radius: float = 0.0  # ring, hemisphere: metres from the centre
    height: float = 0.0  # ring: metres above the centre
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)  # ring, hemisphere: where the cameras look
    azimuth: float = 0.0  # ring: degrees, where the first camera stands (from +x towards +y)
    elevation: tuple[float, float] = (15.0, 60.0)  # hemisphere: degrees above the horizon
    baseline: float = 0.0  # stereo: metres between the two cameras
    convergence: float = 0.0  # stereo: metres ahead where the optical axes cross (0: parallel)

    @classmethod
    def of(cls, views: dict | None) -> ViewRig | None:
        """From a validated ``render.views`` mapping with its defaults (None: no rig)."""
        if views is None:
            return None
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in views.items()}
        return cls(**values)


@dataclass(frozen=True)
class RenderSettings:
    """The ``render:`` section, typed: what the renderer is given."""

    resolution: tuple[int, int]  # (width, height)
    samples: int
    device: str
    denoise: bool
    noise_threshold: float
    threads: int  # 0: the cores split between the workers; changes no pixel
    adaptive_min_samples: int  # 0: Cycles' rule (e.g. 52 of 64 at noise_threshold 0.02)
    max_bounces: int  # light paths; a config without these keys means RENDER_KEY_DEFAULTS (Blender's)
    diffuse_bounces: int
    glossy_bounces: int
    light_tree: bool
    views: ViewRig | None = None  # render.views: several cameras of one scene (None: the script's)


@dataclass(frozen=True)
class TrackSettings:
    """The ``tracks:`` section, typed."""

    num_tracks: int
    depth_tolerance: float


@dataclass(frozen=True)
class OutputSettings:
    """The ``outputs:`` section, typed."""

    passes: tuple[str, ...]  # from OPTIONAL_PASSES
    video_codec: str
    jpeg_quality: int
    scenes_per_shard: int


@dataclass(frozen=True)
class AssetSettings:
    """The ``assets:`` section, typed (None: no such folder)."""

    directory: str | None
    textures_dir: str | None
    hdri_dir: str | None


@dataclass(frozen=True)
class SynthConfig:
    """A validated synth config (`load_config`), one typed section per config section; `tree` is the plain resolved
    config, which the manifest stores and `hash` identifies."""

    seed: int
    scene: SceneSettings
    render: RenderSettings
    tracks: TrackSettings
    outputs: OutputSettings
    assets: AssetSettings
    resolved: str = field(repr=False)  # the resolved tree as sorted JSON: the config stays immutable and picklable

    @classmethod
    def of(cls, tree: dict) -> SynthConfig:
        """From a validated config tree (with ``render.resolution`` as [width, height])."""
        sc, r, t, o, a = (tree[k] for k in ("scene", "render", "tracks", "outputs", "assets"))
        return cls(
            int(tree["seed"]),
            SceneSettings(
                str(sc["script"]),
                str(sc["script_sha256"]),
                int(sc["num_frames"]),
                int(sc["frame_rate"]),
                int(sc["physics_rate"]),
            ),
            RenderSettings(
                (int(r["resolution"][0]), int(r["resolution"][1])),
                int(r["samples"]),
                str(r["device"]),
                bool(r["denoise"]),
                float(r["noise_threshold"]),
                int(r["threads"]),
                **{
                    key.split(".")[1]: type(default)(r.get(key.split(".")[1], default))
                    for key, default in RENDER_KEY_DEFAULTS.items()
                },
                views=ViewRig.of(r.get("views")),
            ),
            TrackSettings(int(t["num_tracks"]), float(t["depth_tolerance"])),
            OutputSettings(
                tuple(o["passes"]), str(o["video_codec"]), int(o["jpeg_quality"]), int(o["scenes_per_shard"])
            ),
            AssetSettings(a["directory"], a["textures_dir"], a["hdri_dir"]),
            json.dumps(tree, sort_keys=True),
        )

    @property
    def tree(self) -> dict:
        """The plain resolved config (a fresh copy): what the manifest stores."""
        return json.loads(self.resolved)

    @cached_property
    def hash(self) -> str:
        """The dataset's identity (`config_hash` of `tree`)."""
        return config_hash(self.tree)

    @property
    def script_values(self) -> dict[str, Any]:
        """The scene script's own keys (the ``scene:`` section without the general keys)."""
        return script_values(self.tree)


def script_values(tree: dict) -> dict[str, Any]:
    """The scene script's own keys of a config: the ``scene:`` section without the general keys."""
    return {k: v for k, v in tree.get("scene", {}).items() if k not in GENERAL_SCENE_KEYS + ("script_sha256",)}


def validate(tree: dict, problems: list[str] | None = None) -> None:
    """Raise one TapforgeError listing every unknown key, missing key and bad value with its fix; fill in the scene
    script's defaults and its sha256."""
    problems = list(problems or [])
    sections = [k for k in SECTIONS if k in tree and not isinstance(tree[k], dict)]
    for key in sections:
        problems.append(
            f"{key}: a section of keys ({key}: then its keys indented below it) is needed, not the value "
            f"{tree[key]!r}; see tapforge/synth/presets/base.yaml"
        )
    flat = _flatten({k: v for k, v in tree.items() if k != "scene"})
    scene = tree.get("scene") if isinstance(tree.get("scene"), dict) else {}
    flat.update({f"scene.{k}": v for k, v in scene.items() if k in GENERAL_SCENE_KEYS})
    for key in sorted(set(flat) - set(RULES) - set(sections)):
        problems.append(f"{key}: unknown key; remove it (known keys: see tapforge/synth/presets/base.yaml)")
    for key, (check, fix) in RULES.items():
        if key.split(".")[0] in sections:
            continue
        if key not in flat:
            if key != VIEWS_KEY and key not in RENDER_KEY_DEFAULTS:  # optional
                problems.append(f"{key}: missing; set it to {fix}")
        elif not check(flat[key]):
            problems.append(f"{key}: bad value {flat[key]!r}; use {fix}")
    problems += view_rig_problems(flat.get(VIEWS_KEY))
    if "script_sha256" in scene:
        problems.append("scene.script_sha256: set by tapforge from the script's source; remove it")
    rates = scene.get("physics_rate"), scene.get("frame_rate")
    if all(RULES[f"scene.{k}"][0](scene.get(k)) for k in ("physics_rate", "frame_rate")) and rates[0] % rates[1]:
        problems.append("scene.physics_rate: must be a multiple of scene.frame_rate; e.g. 240 for 12 or 24 fps")
    for key, unreadable, kind in (
        ("assets.textures_dir", _unreadable_images, "image(s) do not decode"),
        ("assets.hdri_dir", _unreadable_hdris, "file(s) are not HDR/EXR images"),
    ):
        folder = flat.get(key)
        if folder and RULES[key][0](folder) and (bad := unreadable(folder)):
            problems.append(
                f"{key}: {len(bad)} {kind} ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}); "
                "remove or replace them"
            )
    if RULES["scene.script"][0](scene.get("script")):
        problems += _check_script_keys(tree, clean=not problems)
    if len(problems) == 1:
        raise TapforgeError(f"a problem in the config: {problems[0]}")
    if problems:
        raise TapforgeError(f"{len(problems)} problem(s) in the config:\n  " + "\n  ".join(problems))


def _check_script_keys(tree: dict, clean: bool) -> list[str]:
    """Problems of the scene script's own keys; when there are none, fill in its defaults, run its cross-key
    checks (only on an otherwise ``clean`` config) and record its sha256."""
    from tapforge.synth.scripts import load_script

    scene = tree["scene"]
    try:
        script = load_script(scene["script"])
    except TapforgeError as err:
        return [str(err)]
    values = script_values(tree)
    if script.config is None:
        problems = [
            f"scene.{k}: unknown key; the scene script {scene['script']} declares no keys (no Config)"
            for k in sorted(values)
        ]
    else:
        problems = check_values(script.config, values, "scene.")
    try:  # the script's own code: a bug in it is one line naming the script, as in build()
        if script.config is not None and not problems:
            scene.update({k: v for k, v in defaults(script.config).items() if k not in scene})
        if clean and not problems and script.check_config:
            found = script.check_config(script.make_config(script_values(tree)), tree)
            if not isinstance(found, list) or not all(isinstance(p, str) for p in found):
                raise TypeError(f"check_config returned {type(found).__name__}, not a list of problem lines")
            problems += found
    except Exception as err:
        problems.append(
            f"scene.script {scene['script']}: its Config or check_config failed ({type(err).__name__}: {err}); "
            "fix the script (every Config field needs a default)"
        )
    scene["script_sha256"] = script.sha256
    return problems


def config_hash(tree: dict) -> str:
    """Short stable hash of a resolved config (recorded in every sample's meta and the manifest): the dataset's
    identity, which includes the scene script's sha256 and leaves out keys that change no pixel."""
    identity = copy.deepcopy(tree)
    for key in IDENTITY_FREE_KEYS:
        section, leaf = key.split(".")
        identity.get(section, {}).pop(leaf, None)
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
