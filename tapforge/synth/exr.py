"""Reading Blender's multilayer EXR files.

Blender 5 writes multilayer EXRs as multi-part files (one part per pass): the legacy
``OpenEXR.InputFile`` API silently reads only part 0, so every part is read here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_multilayer_exr(path: str | Path) -> dict[str, np.ndarray]:
    """All channels of every part: ``{"layer.Pass.Channel": float32 [H,W]}`` (row 0 = top of the image)."""
    import OpenEXR

    channels: dict[str, np.ndarray] = {}
    with OpenEXR.File(str(path), separate_channels=True) as exr:
        for part in exr.parts:
            for name, channel in part.channels.items():
                channels[name] = np.asarray(channel.pixels, dtype=np.float32)
    return channels
