"""A rendered clip's frames and exact passes, read one frame at a time (no Blender needed).

The renderer writes each frame's rgb PNG and aux multilayer EXR into a folder (`RenderedFrames` owns it and
deletes it when dropped); ground truth, encoding and the checks read them frame by frame, so memory does not grow
with the clip's length. `ArrayFrames` serves passes already in memory the same way (tests, benchmarks), and
`stack` gathers every frame into [T,...] arrays for the checks that compare whole clips.

Pass names (per frame): ``rgb`` uint8 [H,W,3]; ``depth_z`` [H,W] planar camera depth; ``position``, ``normal``
[H,W,3] world; ``vector`` [H,W,4]; ``object_index`` uint16 [H,W]; ``object_coordinates`` [H,W,3]; ``surface``
[H,W,3] (triangle, u, v) on deforming meshes. All but ``rgb`` are exact 1-sample values at pixel centres.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from tapforge.synth.exr import read_multilayer_exr

AOV_OBJECT_COORDINATES = "object_coordinates"
# where on a deforming mesh a pixel is: (triangle index, u, v), barycentric (1 - u - v, u, v), from attributes
AOV_SURFACE = "surface"
AUX_NAMES = ("depth_z", "position", "normal", "vector", "object_index", "object_coordinates", "surface")


def aux_passes(channels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One aux EXR's channels (``{"aux.Pass.Channel": [H,W]}``) -> tapforge's per-frame passes."""

    def stacked(name: str, suffixes: str) -> np.ndarray:
        return np.stack([channels[f"aux.{name}.{s}"] for s in suffixes], -1)

    return {
        "depth_z": channels["aux.Depth.Z"],
        "position": stacked("Position", "XYZ"),
        "normal": stacked("Normal", "XYZ"),
        "vector": stacked("Vector", "XYZW"),
        "object_index": np.round(channels["aux.Object Index.X"]).astype(np.uint16),
        "object_coordinates": stacked(AOV_OBJECT_COORDINATES, "RGB"),
        "surface": stacked(AOV_SURFACE, "RGB"),
    }


class PassFrames:
    """Frames of a clip: ``num_frames``, `rgb` (t) and `aux` (t)."""

    num_frames: int

    def rgb(self, t: int) -> np.ndarray:
        raise NotImplementedError

    def aux(self, t: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @property
    def video(self) -> LazyVideo:
        """The rgb frames as a read-on-demand [T,H,W,3] uint8 array-like."""
        return LazyVideo(self)


class RenderedFrames(PassFrames):
    """The files a render wrote: ``rgb_NNNN.png`` and ``aux_NNNN.exr`` in a temporary folder owned by this object
    (removed by `close`, or when it is garbage-collected)."""

    def __init__(self, num_frames: int, scratch: str | None = None):
        self.num_frames = num_frames
        self._folder = tempfile.TemporaryDirectory(prefix="tapforge-frames-", dir=scratch)
        self.folder = Path(self._folder.name)

    def rgb(self, t: int) -> np.ndarray:
        with Image.open(self.folder / f"rgb_{t:04d}.png") as image:
            return np.asarray(image.convert("RGB"))

    def aux(self, t: int) -> dict[str, np.ndarray]:
        return aux_passes(read_multilayer_exr(self.folder / f"aux_{t:04d}.exr"))

    def close(self) -> None:
        self._folder.cleanup()


class ArrayFrames(PassFrames):
    """Stacked passes in memory (``{"rgb": [T,H,W,3], "depth_z": [T,H,W], ...}``) served frame by frame."""

    def __init__(self, passes: dict[str, np.ndarray]):
        self.passes = passes
        self.num_frames = len(passes["object_index"])

    def rgb(self, t: int) -> np.ndarray:
        return self.passes["rgb"][t]

    def aux(self, t: int) -> dict[str, np.ndarray]:
        return {k: v[t] for k, v in self.passes.items() if k != "rgb"}


def stack(frames: PassFrames, names: Sequence[str] = ("rgb", *AUX_NAMES)) -> dict[str, np.ndarray]:
    """Every frame's passes ``names`` as [T,...] arrays (the whole clip in memory: for checks on short clips)."""
    if isinstance(frames, ArrayFrames):
        return {k: frames.passes[k] for k in names}
    out: dict[str, list] = {k: [] for k in names}
    for t in range(frames.num_frames):
        aux = frames.aux(t) if set(names) - {"rgb"} else {}
        for name in names:
            out[name].append(frames.rgb(t) if name == "rgb" else aux[name])
    return {k: np.stack(v) for k, v in out.items()}


class LazyVideo:
    """A clip's rgb frames as a uint8 [T,H,W,3] array-like that decodes a frame when it is asked for: iterate,
    index a frame, or ``np.asarray`` for the whole clip."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, frames: PassFrames):
        self.frames = frames
        first = frames.rgb(0)
        self.shape = (frames.num_frames, *first.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t):
        if isinstance(t, (int, np.integer)):
            return self.frames.rgb(int(t) % len(self))
        return np.asarray(self)[t]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.frames.rgb(t) for t in range(len(self)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        video = np.stack(list(self))
        return video if dtype is None else video.astype(dtype)
