"""Render configuration: YAML presets with `inherit:`, `--set key=value` overrides, up-front validation.

Every problem in a config is collected and reported at once, each with its fix, before anything renders.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import yaml

from tapforge.errors import TapforgeError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "synth"

SHAPES = ("cube", "cylinder", "sphere", "cone", "torus", "suzanne", "capsule", "superquadric", "blob",
          "icosphere", "prism")
MATERIALS = ("rubber", "metal", "textured")
CAMERAS = ("fixed", "fixed_random", "linear_movement", "linear_movement_linear_lookat")
PASSES = ("depth", "segmentation")
BACKGROUNDS = ("dome", "sky", "hdri", "plain")
APPEARANCES = ("natural", "plain", "legacy")  # see synth.recipe


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _range_of(check: Callable[[Any], bool], lo: float, hi: float | None = None) -> Callable[[Any], bool]:
    """A number or a [min, max] pair of numbers, each passing `check` and inside [lo, hi]."""
    def ok(v: Any) -> bool:
        values = v if isinstance(v, list) and len(v) == 2 and v[0] <= v[1] else [v]
        return all(check(x) and x >= lo and (hi is None or x <= hi) for x in values)
    return ok


def _subset(choices: tuple[str, ...], allow_empty: bool = False) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and (allow_empty or v) and all(x in choices for x in v)


def _optional_dir(v: Any) -> bool:
    return v is None or (isinstance(v, str) and Path(v).expanduser().is_dir())


def _resolution(v: Any) -> bool:
    if _is_int(v):
        v = [v, v]
    return isinstance(v, list) and len(v) == 2 and all(_is_int(x) and 16 <= x <= 8192 for x in v)


# key -> (check, fix shown when the check fails)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_is_int, "an integer"),
    "scene.recipe": (lambda v: v in ("movi_ab", "movi_e"), "movi_ab or movi_e"),
    "scene.num_frames": (lambda v: _is_int(v) and 2 <= v <= 2000, "an integer in [2, 2000]"),
    "scene.frame_rate": (lambda v: _is_int(v) and 1 <= v <= 240, "an integer in [1, 240]"),
    "scene.physics_rate": (lambda v: _is_int(v) and 60 <= v <= 2400, "an integer in [60, 2400], a multiple of frame_rate"),
    "scene.num_static_objects": (_range_of(_is_int, 0, 100), "an integer or [min, max] with 0 <= min <= max <= 100"),
    "scene.num_dynamic_objects": (_range_of(_is_int, 0, 50), "an integer or [min, max] with 0 <= min <= max <= 50"),
    "scene.object_scale": (_range_of(_is_num, 0.05, 20), "a number or [min, max] in [0.05, 20]"),
    "scene.shapes": (_subset(SHAPES), f"a non-empty list from {list(SHAPES)}"),
    "scene.materials": (_subset(MATERIALS), f"a non-empty list from {list(MATERIALS)}"),
    "scene.camera": (lambda v: v in CAMERAS, f"one of {list(CAMERAS)}"),
    "scene.max_camera_movement": (_range_of(_is_num, 0, 100), "a number in [0, 100]"),
    "scene.focal_length": (_range_of(_is_num, 1, 500), "a number or [min, max] in [1, 500] (mm)"),
    "scene.sensor_width": (_range_of(_is_num, 1, 200), "a number in [1, 200] (mm)"),
    "scene.motion_blur": (_range_of(_is_num, 0, 1), "a number or [min, max] in [0, 1]"),
    "scene.background": (lambda v: v in BACKGROUNDS, f"one of {list(BACKGROUNDS)}"),
    "scene.appearance": (lambda v: v in APPEARANCES, f"one of {list(APPEARANCES)}"),
    "scene.floor_texture": (lambda v: isinstance(v, bool), "true or false"),
    "render.resolution": (_resolution, "[width, height] or one integer, each in [16, 8192]"),
    "render.samples": (lambda v: _is_int(v) and 1 <= v <= 65536, "an integer >= 1"),
    "render.device": (lambda v: v in ("auto", "cpu", "cuda", "optix"), "auto, cpu, cuda or optix"),
    "render.denoise": (lambda v: isinstance(v, bool), "true or false"),
    "render.noise_threshold": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1) (0 = no adaptive sampling)"),
    "render.threads": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 = cores split between the workers)"),
    "tracks.num_tracks": (lambda v: _is_int(v) and 1 <= v <= 100000, "an integer in [1, 100000]"),
    "tracks.depth_tolerance": (lambda v: _is_num(v) and 0 < v < 1, "a number in (0, 1)"),
    "outputs.passes": (_subset(PASSES, allow_empty=True), f"a list from {list(PASSES)}, e.g. [depth,segmentation]"),
    "outputs.video_codec": (lambda v: v in ("png", "jpg"), "png or jpg"),
    "outputs.jpeg_quality": (lambda v: _is_int(v) and 1 <= v <= 100, "an integer in [1, 100]"),
    "outputs.scenes_per_shard": (lambda v: _is_int(v) and 1 <= v <= 10000, "an integer >= 1"),
    "assets.directory": (_optional_dir, "null or an existing folder with a Kubric-format manifest"),
    "assets.textures_dir": (_optional_dir, "null or an existing folder of images"),
    "assets.hdri_dir": (_optional_dir, "null or an existing folder of .hdr/.exr files"),
}


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


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
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise TapforgeError(f"config {path} is not valid YAML ({str(err).splitlines()[0]}); fix its syntax") from err
    if not isinstance(tree, dict):
        raise TapforgeError(f"config {path} must be a YAML mapping of sections (scene:, render:, ...)")
    parent = tree.pop("inherit", None)
    if parent is None:
        return tree
    parent_path = resolve_preset_path(parent if "/" in str(parent) else path.parent / f"{parent}.yaml")
    return _merge(_load_yaml(parent_path, seen + (path,)), tree)


def parse_override(text: str) -> tuple[str, Any]:
    """``render.samples=64`` -> ("render.samples", 64); the value is parsed as YAML."""
    if "=" not in text:
        raise TapforgeError(f"--set {text!r} is not key=value; write e.g. --set render.samples=64")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise TapforgeError(f"--set {key}: value {raw!r} is not valid YAML; quote lists as [a,b]") from err
    return key.strip(), value


def load_config(preset: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Load a preset (name or path), apply ``key=value`` overrides, validate, and return the config tree."""
    tree = _load_yaml(resolve_preset_path(preset))
    if "inherit" not in tree:
        tree = _merge(_load_yaml(CONFIG_DIR / "base.yaml"), tree)
    problems: list[str] = []
    for item in overrides:
        key, value = parse_override(item)
        if key not in RULES:
            problems.append(f"--set {key}: unknown key; known keys: {', '.join(sorted(RULES))}")
            continue
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    validate(tree, problems)
    if isinstance(tree["render"]["resolution"], int):
        tree["render"]["resolution"] = [tree["render"]["resolution"]] * 2
    return tree


def validate(tree: dict, problems: list[str] | None = None) -> None:
    """Raise one TapforgeError listing every unknown key, missing key and bad value with its fix."""
    problems = list(problems or [])
    flat = _flatten(tree)
    for key in sorted(set(flat) - set(RULES)):
        problems.append(f"{key}: unknown key; remove it (known keys: see configs/synth/base.yaml)")
    for key, (check, fix) in RULES.items():
        if key not in flat:
            problems.append(f"{key}: missing; set it to {fix}")
        elif not check(flat[key]):
            problems.append(f"{key}: bad value {flat[key]!r}; use {fix}")
    scene = tree.get("scene", {})
    if not problems and scene["physics_rate"] % scene["frame_rate"]:
        problems.append("scene.physics_rate: must be a multiple of scene.frame_rate; e.g. 240 for 12 or 24 fps")
    if not problems and scene["background"] == "hdri" and not tree["assets"]["hdri_dir"]:
        problems.append("scene.background: hdri needs assets.hdri_dir; set it or use background=dome")
    if problems:
        raise TapforgeError(f"{len(problems)} problem(s) in the config:\n  " + "\n  ".join(problems))


def config_hash(tree: dict) -> str:
    """Short stable hash of a resolved config (recorded in every sample's meta and the manifest)."""
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]
