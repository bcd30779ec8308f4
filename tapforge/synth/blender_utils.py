"""Small helpers around Blender's Python module that the renderer and the mesh readers share.

Imports nothing of tapforge's scene (and not bpy itself), so any Blender-side module may use it without an import
circle.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stdout():
    """Silence Blender's prints (its renderer's and importers', C and Python) so stdout keeps only the progress
    bars and the command's own output."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
