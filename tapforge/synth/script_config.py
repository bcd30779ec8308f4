"""A scene script's own config keys: a dataclass whose fields are the keys of the config's ``scene:`` section.

Each field is checked up front like every other key: by ``option(default, check, fix)`` when given, else by its
type annotation (bool, int, float, str, a Literal of choices, or a list of those)::

    @dataclass
    class Config:
        num_objects: int = option(3, integer_range(1, 20), "an integer in [1, 20]")
        spin: float = 1.0                                   # checked as a number
        light: Literal["sun", "lamp"] = "sun"               # checked as one of the choices
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, Literal, get_args, get_origin

Check = Callable[[Any], bool]


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool, not NaN or infinity)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _within(check: Check, lo: float, hi: float | None) -> Check:
    return lambda x: check(x) and x >= lo and (hi is None or x <= hi)


def integer_range(lo: int, hi: int | None = None) -> Check:
    """An integer or a [min, max] pair of integers, inside [lo, hi]."""
    return value_or_range(_within(is_int, lo, hi))


def number_range(lo: float, hi: float | None = None) -> Check:
    """A number or a [min, max] pair of numbers, inside [lo, hi]."""
    return value_or_range(_within(is_number, lo, hi))


def value_or_range(check: Check) -> Check:
    """A value passing ``check``, or a [min, max] pair of them with min <= max."""

    def ok(v: Any) -> bool:
        if isinstance(v, list):
            return len(v) == 2 and all(check(x) for x in v) and v[0] <= v[1]
        return check(v)

    return ok


def subset_of(choices: tuple[str, ...], allow_empty: bool = False) -> Check:
    """A list of choices (non-empty unless ``allow_empty``)."""
    return lambda v: isinstance(v, list) and (allow_empty or bool(v)) and all(x in choices for x in v)


def option(default: Any, check: Check, fix: str) -> Any:
    """A dataclass field with a default, a check and the fix shown when the check fails."""
    factory = (lambda: list(default)) if isinstance(default, list) else None
    metadata = {"check": check, "fix": fix}
    if factory:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _annotation_check(annotation: Any) -> tuple[Check, str]:
    if annotation is bool:
        return lambda v: isinstance(v, bool), "true or false"
    if annotation is int:
        return is_int, "an integer"
    if annotation is float:
        return is_number, "a finite number"
    if annotation is str:
        return lambda v: isinstance(v, str), "a string"
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return lambda v: v in choices, f"one of {list(choices)}"
    if get_origin(annotation) is list:
        inner, fix = _annotation_check(get_args(annotation)[0])
        return lambda v: isinstance(v, list) and all(inner(x) for x in v), f"a list of {fix}"
    args = get_args(annotation)
    if type(None) in args:  # Optional[X]
        inner, fix = _annotation_check(next(a for a in args if a is not type(None)))
        return lambda v: v is None or inner(v), f"null or {fix}"
    return lambda v: True, "any value"


def field_checks(schema: type) -> dict[str, tuple[Check, str]]:
    """key -> (check, fix) for every field of a script's config dataclass."""
    hints = typing.get_type_hints(schema)
    checks = {}
    for f in dataclasses.fields(schema):
        if "check" in f.metadata:
            checks[f.name] = (f.metadata["check"], f.metadata["fix"])
        else:
            checks[f.name] = _annotation_check(hints[f.name])
    return checks


def defaults(schema: type) -> dict[str, Any]:
    """The config dataclass's default values, as plain config values."""
    return dataclasses.asdict(schema())


def check_values(schema: type, values: dict[str, Any], prefix: str) -> list[str]:
    """Problems (unknown keys, bad values with their fix) of a script's config section."""
    checks = field_checks(schema)
    problems = [
        f"{prefix}{key}: unknown key for this scene script; its keys: {', '.join(sorted(checks)) or 'none'}"
        for key in sorted(set(values) - set(checks))
    ]
    for key, (check, fix) in checks.items():
        if key in values and not check(values[key]):
            problems.append(f"{prefix}{key}: bad value {values[key]!r}; use {fix}")
    return problems
