"""The native modules' own output kept off stdout: Blender's renderer and importers, and PyBullet's banner.

Imports nothing of tapforge's scene (and neither bpy nor pybullet at import), so any module may use it without an
import circle.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

_C_LIBRARY = ctypes.CDLL(None)


@contextlib.contextmanager
def quiet_stdout(also_stderr: bool = False):
    """Silence the prints of native code (Blender's renderer and importers, C and Python) so stdout keeps only the
    progress bars and the command's own output; ``also_stderr`` silences the error stream too."""
    streams = (sys.stdout, sys.stderr) if also_stderr else (sys.stdout,)
    for stream in streams:
        stream.flush()
    saved = [(fd, os.dup(fd)) for fd in (1, 2)[: len(streams)]]  # the process's own: where C code writes
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd, _ in saved:
            os.dup2(devnull, fd)
        yield
    finally:
        for stream in streams:
            stream.flush()
        _C_LIBRARY.fflush(None)  # C's buffered output (fully buffered into a pipe or file) goes to /dev/null too
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def import_pybullet():
    """The pybullet module, imported without its build banner (printed from C to stderr on first import, it would
    land in the middle of the render progress bar)."""
    with quiet_stdout(also_stderr=True):
        import pybullet

    return pybullet
