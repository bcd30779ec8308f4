"""The base layer every package may import: errors, atomic writes, video files, track drawing, named random
streams, safe unpickling of data files, and where tapforge keeps its caches.

Dependency-free beyond numpy and Pillow (no torch, no bpy, no lightning); synth, tapir, train and the
``tapforge`` command line all sit on top of it and it imports none of them.
"""

import os
from pathlib import Path

__version__ = "0.2.0"  # the project's version (pyproject.toml says the same), written into shards and exports
VERBOSE_ENV = "TAPFORGE_VERBOSE"  # "1" (``tapforge --verbose``): library warnings and notices reach the user
CACHE_ENV = "TAPFORGE_CACHE"  # where caches (asset archives, convex decompositions) and crash logs go


def verbose() -> bool:
    """Whether library deprecation warnings and notices should be shown (``tapforge --verbose``)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def cache_dir() -> Path:
    """tapforge's cache folder: ``$TAPFORGE_CACHE``, else ``~/.cache/tapforge``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tapforge")
