"""Scene scripts: ``build(scene, rng, cfg)`` functions on `tapforge.synth.scene`, named by the config's ``scene.script``.

``scene.script`` is one of:

- a script shipped here, by name: ``movi`` (the MOVi presets, Kubric's ``challenges/movi`` workers) or
  ``long_movi`` (the long_movi presets: MOVi's objects in clips where something happens all the time);
- a Python file, ``path/to/my_scene.py`` (its ``build``) or ``path/to/my_scene.py:function``;
- an importable module, ``package.module:function``.

The script's module may define ``Config``, a dataclass whose fields are the script's keys in the config's
``scene:`` section (see `tapforge.synth.script_config`); ``cfg`` is an instance of it. It may also define
``check_config(cfg, config) -> list[str]`` for checks across keys (each problem a line with its fix). The script's identity is the
sha256 of its source file, recorded in the config (``scene.script_sha256``), so a changed script is a new
dataset and resume refuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from tapforge.base.errors import TapforgeError

BUILTIN = {"movi": "tapforge.synth.scripts.movi", "long_movi": "tapforge.synth.scripts.long_movi"}
RENAMED = {"synth": "tapforge.synth", "train": "tapforge.train", "tapir": "tapforge.tapir", "tapbase": "tapforge.base"}


@dataclass(frozen=True)
class SceneScript:
    """A loaded scene script: its build function, its config dataclass (None: no keys) and its identity."""

    name: str
    build: Callable[..., Any]
    config: type | None
    sha256: str
    path: str
    check_config: Callable[[Any, dict], list[str]] | None = None  # cross-key checks: (cfg, config tree) -> problems

    def make_config(self, values: dict[str, Any]) -> Any:
        """The script's typed config from validated ``scene:`` values (None when it declares no keys)."""
        if self.config is None:
            return None
        names = {f.name for f in dataclasses.fields(self.config)}
        return self.config(**{k: v for k, v in values.items() if k in names})


def _failed_import(text: str, err: Exception) -> TapforgeError:
    """One line for a script that failed to import; a script written for the old top-level names is told the new."""
    missing = err.name if isinstance(err, ModuleNotFoundError) and err.name else ""
    if missing in RENAMED:
        frame = traceback.extract_tb(err.__traceback__)[-1]  # the failing import (importlib hides its own frames)
        line = (frame.line or "").strip()
        renamed = re.sub(rf"\b(from|import)\s+{missing}\b", lambda m: f"{m[1]} {RENAMED[missing]}", line)
        where = f"line {frame.lineno} imports" if renamed != line else "names"
        if renamed == line:  # module:function names the old package itself
            renamed = RENAMED[missing] + text[len(missing) :]
        return TapforgeError(
            f"scene.script {text}: {where} {missing!r}, whose name is now {RENAMED[missing]!r} "
            f"(tapforge's packages live under one name): write {renamed!r}"
        )
    if missing and text.partition(":")[0].startswith(missing):  # module:function whose module is not there
        return TapforgeError(f"scene.script {text}: cannot import {missing} ({err}); is it on PYTHONPATH?")
    return TapforgeError(f"scene.script {text}: importing it failed ({type(err).__name__}: {err}); fix the script")


def _file_module(path: Path):
    name = "tapforge_scene_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise _failed_import(str(path), err) from err
    return module


@lru_cache(maxsize=16)
def load_script(text: str) -> SceneScript:
    """Load the scene script named by ``scene.script`` (see the module docstring)."""
    target, _, function = text.partition(":")
    if text in BUILTIN:
        module = importlib.import_module(BUILTIN[text])
    elif target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise TapforgeError(
                f"scene.script {text}: no such file; give a .py path (relative to the config "
                f"file or the current folder), module:function, or one of {sorted(BUILTIN)}"
            )
        module = _file_module(path)
    elif function:
        try:
            module = importlib.import_module(target)
        except Exception as err:
            raise _failed_import(text, err) from err
    else:
        raise TapforgeError(
            f"scene.script {text!r}: not a script name {sorted(BUILTIN)}, a .py file or module:function"
        )
    build = getattr(module, function or "build", None)
    if not callable(build):
        raise TapforgeError(
            f"scene.script {text}: {module.__name__} has no function {function or 'build'}"
            "(scene, rng, cfg); define it or name the function as file.py:function"
        )
    if len(inspect.signature(build).parameters) != 3:
        raise TapforgeError(f"scene.script {text}: {build.__name__} must take (scene, rng, cfg)")
    schema = getattr(module, "Config", None)
    if schema is not None and not dataclasses.is_dataclass(schema):
        raise TapforgeError(f"scene.script {text}: Config must be a dataclass of the script's config keys")
    source = Path(inspect.getfile(module))
    return SceneScript(
        text,
        build,
        schema,
        hashlib.sha256(source.read_bytes()).hexdigest(),
        str(source),
        getattr(module, "check_config", None),
    )
