"""The base layer every package may import: errors, atomic writes, video files and track drawing.

Dependency-free beyond numpy and Pillow (no torch, no bpy, no lightning); synth, tapir, train and the
``tapforge`` command line all sit on top of it and it imports none of them.
"""

__version__ = "0.1.0"  # the project's version (pyproject.toml says the same), written into shards and exports
VERBOSE_ENV = "TAPFORGE_VERBOSE"  # "1" (``tapforge --verbose``): library warnings and notices reach the user


def verbose() -> bool:
    """Whether library deprecation warnings and notices should be shown (``tapforge --verbose``)."""
    import os

    return os.environ.get(VERBOSE_ENV) == "1"
