"""Argument checks of the scene API (`tapforge.synth.scene`): one rule per kind of value, one error line per refusal.

A rule takes a value and returns it in plain form (a Python float, int, str, or a tuple of floats), or raises
`Refused` with what is allowed. `check` runs a rule and turns a refusal into one `TapforgeError` line that names
the owner and argument, the value, what is allowed and the script line that made the call, e.g.::

    Camera focal_length -35.0: focal_length must be a finite number in [1, 100000] (mm) (at my_scene.py:12)

The script line is the nearest caller outside the scene API's own modules (`INTERNAL`), so a preset that ships
with tapforge (`tapforge.synth.scripts.movi`) is named like a user's script.
"""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from tapforge.base.errors import TapforgeError

LIMIT = 1e5  # the largest coordinate, length, velocity (m, m/s, rad/s) or time (frames, s) a scene takes
MIN_NORM = 1e-8  # a direction or quaternion shorter than this has no direction
SEED_LIMIT = 2**63  # seeds are integers in [0, 2**63)
Rule = Callable[[Any], Any]


class Refused(Exception):
    """A rule's refusal: what is allowed, and optionally the part of the value that broke it (``name``: e.g. a
    metadata key path, ``value``: that part)."""

    def __init__(self, allowed: str, name: str | None = None, value: Any = None):
        super().__init__(allowed)
        self.allowed, self.name, self.value = allowed, name, value


# ------------------------------------------------------------------------------------------ the error line
INTERNAL = frozenset(
    str(Path(__file__).with_name(name)) for name in ("checks.py", "scene.py", "poses.py", "physics.py")
)


def caller() -> str:
    """``file:line`` of the nearest frame outside the scene API's modules (and the dataclass-made ``__init__``);
    relative to the working folder when inside it; '' when there is none."""
    frame = inspect.currentframe()
    while frame is not None:
        code = frame.f_code
        if code.co_filename not in INTERNAL and not (code.co_filename.startswith("<") and code.co_name == "__init__"):
            path = code.co_filename
            if not path.startswith("<"):
                relative = os.path.relpath(path)
                path = path if relative.startswith("..") else relative
            return f"{path}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


def show(value: Any, width: int = 60) -> str:
    """The value on one short line: its repr (an array's shape and its first values), newlines and runs of
    spaces collapsed, cut at ``width`` characters."""
    if isinstance(value, np.ndarray):
        flat = np.array2string(value.ravel()[:4], separator=", ")
        text = f"array of shape {value.shape} {flat[:-1]}{', ...]' if value.size > 4 else ']'}"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def refuse(owner: str, name: str, value: Any, allowed: str, locate: bool = True) -> TapforgeError:
    """The one error line: ``owner name value: name must be allowed (at file:line)``."""
    where = caller() if locate else ""
    return TapforgeError(
        f"{owner} {name} {show(value)}: {name} must be {allowed}" + (f" (at {where})" if where else "")
    )


def check(owner: str, name: str, value: Any, rule: Rule, locate: bool = True) -> Any:
    """``rule(value)``, or one TapforgeError line: owner, argument, value, what is allowed, and the script line."""
    try:
        return rule(value)
    except Refused as refused:
        if refused.name is not None:
            name, value = refused.name, refused.value
        raise refuse(owner, name, value, refused.allowed, locate) from None


# --------------------------------------------------------------------------------------------------- rules
def _g(x: float) -> str:
    return f"{x:.6g}" if abs(x) < 1e6 or math.isinf(x) else f"{x:.0e}".replace("e+0", "e").replace("e+", "e")


def _real(value: Any) -> float | None:
    """The value as a float when it is a real number (not a bool, not a string), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond any float
        return math.inf


def number(lo: float = -LIMIT, hi: float = LIMIT, *, open_low: bool = False, unit: str = "") -> Rule:
    """A finite real number in [lo, hi] ((lo, hi] with ``open_low``) -> float (refused: "in [lo, hi]")."""
    allowed = f"in {'(' if open_low else '['}{_g(lo)}, {_g(hi)}]" + (f" ({unit})" if unit else "")

    def rule(value: Any) -> float:
        x = _real(value)
        if x is None or not math.isfinite(x) or not (lo < x if open_low else lo <= x) or x > hi:
            raise Refused(allowed)
        return x

    return rule


def positive(hi: float = LIMIT, unit: str = "") -> Rule:
    """A finite number in (0, hi]."""
    return number(0.0, hi, open_low=True, unit=unit)


def integer(lo: int, hi: int, unit: str = "") -> Rule:
    """A whole number in [lo, hi] (an int, a numpy integer or a float without a fraction) -> int."""
    allowed = f"an integer in [{int(lo)}, {int(hi)}]" + (f" ({unit})" if unit else "")

    def rule(value: Any) -> int:
        x = _real(value)
        if x is None or not math.isfinite(x) or x != int(x) or not lo <= int(value) <= hi:
            raise Refused(allowed)
        return int(value)

    return rule


def flag(value: Any) -> bool:
    """True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise Refused("True or False")
    return bool(value)


def text(value: Any) -> str:
    """A string."""
    if not isinstance(value, str):
        raise Refused("a string")
    return value


def one_of(options: Iterable[str], what: str = "") -> Rule:
    """One of ``options`` (strings)."""
    options = tuple(options)
    allowed = (f"{what}: " if what else "") + "one of " + ", ".join(repr(o) for o in options)

    def rule(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise Refused(allowed)
        return value

    return rule


def instance(*kinds: type, optional: bool = False) -> Rule:
    """An instance of one of ``kinds`` (or None with ``optional``), kept as it is."""
    names = " or ".join(k.__name__ for k in kinds) + (" or None" if optional else "")
    allowed = f"a {names}"

    def rule(value: Any) -> Any:
        if not (isinstance(value, kinds) or (optional and value is None)):
            raise Refused(f"{allowed} (got a {type(value).__name__})")
        return value

    return rule


def optional(inner: Rule) -> Rule:
    """None, or what ``inner`` allows."""

    def rule(value: Any) -> Any:
        if value is None:
            return None
        try:
            return inner(value)
        except Refused as refused:
            allowed = f"a number {refused.allowed}" if refused.allowed.startswith("in ") else refused.allowed
            raise Refused(f"None or {allowed}", refused.name, refused.value) from None

    return rule


def _floats(value: Any) -> np.ndarray | None:
    """The value as a float array when it is a sequence or array of real numbers, else None."""
    if isinstance(value, (str, bytes, dict)):
        return None
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged
        return None
    if array.ndim == 0:
        return None
    if array.dtype == object or array.dtype.kind not in "iuf":
        return None
    return array.astype(float)


def vector(size: int = 3, limit: float = LIMIT, what: str = "(x, y, z) in metres", min_norm: float = 0.0) -> Rule:
    """``size`` finite numbers within +-``limit`` (and a length above ``min_norm``) -> a tuple of floats."""
    allowed = f"{size} finite numbers {what}, each within +-{_g(limit)}" + (
        f", of length > {_g(min_norm)}" if min_norm else ""
    )

    def rule(value: Any) -> tuple[float, ...]:
        array = _floats(value)
        if (
            array is None
            or array.shape != (size,)
            or not np.isfinite(array).all()
            or (np.abs(array) > limit).any()
            or (min_norm and np.linalg.norm(array) <= min_norm)
        ):
            raise Refused(allowed)
        return tuple(float(x) for x in array)

    return rule


POINT = vector()
VELOCITY = vector(what="(x, y, z) per second")
DIRECTION = vector(what="(x, y, z), a direction", min_norm=MIN_NORM)
QUATERNION = vector(4, 1e6, "(x, y, z, w), a rotation", min_norm=MIN_NORM)


def color(value: Any) -> tuple[float, float, float]:
    """A linear RGB colour: 3 numbers in [0, 1] -> a tuple of floats."""
    array = _floats(value)
    if array is None or array.shape != (3,) or not np.isfinite(array).all() or (array < 0).any() or (array > 1).any():
        raise Refused("a color (r, g, b) of 3 numbers in [0, 1] (linear RGB)")
    return tuple(float(x) for x in array)


def array(
    trailing: tuple[int, ...], what: str, limit: float = LIMIT, min_norm: float = 0.0, length: int | None = None
) -> Rule:
    """A float array [T, *trailing] with T >= 1 (T = ``length`` when given), finite, within +-``limit`` (each
    last-axis vector longer than ``min_norm``) -> a float64 array."""
    allowed = f"{what}: finite numbers within +-{_g(limit)}" + (
        f", every one of length > {_g(min_norm)}" if min_norm else ""
    )

    def rule(value: Any) -> np.ndarray:
        values = _floats(value)
        if values is None or values.ndim != 1 + len(trailing) or values.shape[1:] != trailing or not len(values):
            raise Refused(allowed)
        if length is not None and len(values) != length:
            raise Refused(allowed)
        if not np.isfinite(values).all() or (np.abs(values) > limit).any():
            raise Refused(allowed)
        if min_norm and (np.linalg.norm(values, axis=-1) <= min_norm).any():
            raise Refused(allowed)
        return values

    return rule


def existing_file(what: str) -> Rule:
    """The path (a string or path object) of a file that exists -> str."""
    allowed = f"the path of an existing {what} (relative paths are from the folder the command runs in)"

    def rule(value: Any) -> str:
        if not isinstance(value, (str, os.PathLike)) or not str(value) or not Path(value).expanduser().is_file():
            raise Refused(allowed)
        return str(value)

    return rule


JSON_VALUES = (
    "a JSON value: None, True/False, an integer, a finite number, a string, or a list or dict (string keys) of these"
)


def json_value(name: str) -> Rule:
    """A JSON-serialisable plain value (numpy scalars count as numbers; no NaN or infinity), named ``name`` in a
    refusal (e.g. 'metadata'); a refusal names the key path of the part that broke it. Returns the value as it is."""

    def walk(value: Any, path: str) -> None:
        if value is None or isinstance(value, (bool, np.bool_, str)):
            return
        if isinstance(value, (int, float, np.integer, np.floating)):
            if not math.isfinite(float(value)):
                raise Refused(JSON_VALUES + " (NaN and infinity are not JSON)", path, value)
            return
        if isinstance(value, (list, tuple)):
            for k, item in enumerate(value):
                walk(item, f"{path}[{k}]")
            return
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise Refused(JSON_VALUES + " (keys are strings)", f"{path}[{key!r}]", key)
                walk(item, f"{path}[{key!r}]")
            return
        raise Refused(JSON_VALUES + f" (not a {type(value).__name__})", path, value)

    def rule(value: Any) -> Any:
        if not isinstance(value, dict):
            raise Refused("a dict of " + JSON_VALUES[2:])
        walk(value, name)
        return value

    return rule
