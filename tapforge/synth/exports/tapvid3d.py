"""The TAPVid-3D layout (``--to tapvid3d``), as tapnet's TAPVid-3D evaluation code reads it: ``OUT/<seq>.npz``.

- ``images_jpeg_bytes`` object [T]: each frame as JPEG bytes.
- ``queries_xyt`` float32 [N,3]: (x, y, t) of a frame where the point is visible (the code reverses it to (t, y, x)).
- ``tracks_XYZ`` float32 [T,N,3]: the point in the OpenCV camera frame of each frame (x right, y down, z forward),
  metres.
- ``visibility`` bool [T,N]: True where the point is visible (tapforge's ``~occluded``).
- ``fx_fy_cx_cy`` float32 [4]: intrinsics in pixels, (0, 0) the top-left corner of the top-left pixel.
- ``extrinsics_w2c`` float32 [T,4,4]: camera-from-world (OpenCV camera; Blender's Z-up world, metres).

The folder's README names the tracks and visibility ``tracks_xyz`` and ``visible`` in places; these are the names
its evaluation code loads. Tracks never visible in the clip have no query frame and are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tapforge.synth.exports.common import intrinsics, save_npz, world_to_cam
from tapforge.synth.schema import Clip, encode_frame

DROPS = "depth, segmentation, object ids, tracks never visible, and the scene description"
DEPTH = "none"


def done(out: Path, key: str) -> bool:
    """Whether clip ``key`` was exported (one file, written atomically)."""
    return (out / f"{key}.npz").is_file()


def queries_xyt(clip: Clip, keep: np.ndarray) -> np.ndarray:
    """(x, y, t) per kept track: the shard's query frame where it has one, else the first visible frame."""
    if clip.query is not None:
        t = clip.query[keep, 0].astype(int)
    else:
        t = np.argmax(~clip.occluded[keep], axis=1)
    xy = clip.tracks[keep, t]
    return np.concatenate([xy, t[:, None]], axis=1).astype(np.float32)


def write(clip: Clip, out: Path) -> None:
    """Write one clip's ``.npz``."""
    keep = np.flatnonzero((~clip.occluded).any(axis=1))
    K = intrinsics(clip)
    frames = np.empty(clip.num_frames, dtype=object)
    frames[:] = [encode_frame(frame, "jpg", 95) for frame in clip.video]
    save_npz(
        out / f"{clip.key}.npz",
        images_jpeg_bytes=frames,
        queries_xyt=queries_xyt(clip, keep),
        tracks_XYZ=clip.tracks_3d[keep].transpose(1, 0, 2).astype(np.float32),
        visibility=~clip.occluded[keep].T,
        fx_fy_cx_cy=np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], np.float32),
        extrinsics_w2c=world_to_cam(clip).astype(np.float32),
    )
