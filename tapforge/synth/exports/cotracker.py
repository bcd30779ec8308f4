"""The CoTracker Kubric layout (``--to cotracker``), as CoTracker's Kubric MOVi-F dataset class reads it.

``OUT/<seq>/frames/NNN.png`` (sorted by name: the frame order; four digits in clips of over 1000 frames) and
``OUT/<seq>/<seq>.npy``, a pickled dict (``np.load(..., allow_pickle=True).item()``) with, in the released data's
conventions:

- ``coords`` float32 [N,T,2]: (x, y) pixels, (0, 0) the top-left corner of the top-left pixel.
- ``visibility`` bool [N,T]: True where the point is OCCLUDED. The name is the released data's and the loader
  inverts it (``np.logical_not``); it holds tapforge's ``occluded`` unchanged.
- ``coords_depth`` float32 [N,T]: the point's depth along the optical axis (camera z, metres), not its distance.
- ``camera``: Kubric's camera record: ``focal_length`` and ``sensor_width`` in millimetres (fx in pixels is
  ``focal_length / sensor_width * width``; the principal point is the image centre), ``field_of_view``
  (horizontal, radians), ``positions`` float32 [T,3] and ``quaternions`` float32 [T,4] in (w, x, y, z) order: the
  camera-to-world pose of a Blender camera (looks down -Z, +Y up) in a Z-up world, metres.

``OUT/<seq>/depths/NNN.npy`` float32 [H,W]: Kubric's depth, the Euclidean distance from the camera centre in metres
(0 where no surface); only when the dataset was rendered with the depth pass.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tapforge.synth.exports.common import intrinsics, no_surface_zero, save_image, save_npy
from tapforge.synth.schema import Clip

DROPS = "segmentation, object ids, query points and the scene description (meta.json)"
DEPTH = "optional"


def quaternion_wxyz(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices [...,3,3] -> unit quaternions [...,4] in (w, x, y, z) order with w >= 0."""
    r = np.asarray(rotation, np.float64)
    trace = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    candidates = np.stack(
        [
            np.stack(
                [1 + trace, r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1
            ),
            np.stack(
                [
                    r[..., 2, 1] - r[..., 1, 2],
                    1 + 2 * r[..., 0, 0] - trace,
                    r[..., 0, 1] + r[..., 1, 0],
                    r[..., 0, 2] + r[..., 2, 0],
                ],
                -1,
            ),
            np.stack(
                [
                    r[..., 0, 2] - r[..., 2, 0],
                    r[..., 0, 1] + r[..., 1, 0],
                    1 + 2 * r[..., 1, 1] - trace,
                    r[..., 1, 2] + r[..., 2, 1],
                ],
                -1,
            ),
            np.stack(
                [
                    r[..., 1, 0] - r[..., 0, 1],
                    r[..., 0, 2] + r[..., 2, 0],
                    r[..., 1, 2] + r[..., 2, 1],
                    1 + 2 * r[..., 2, 2] - trace,
                ],
                -1,
            ),
        ],
        -2,
    )  # each row is 4 * q * (its largest component), picked by the largest diagonal term for stability
    pick = np.argmax(np.stack([trace, r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]], -1), -1)
    q = np.take_along_axis(candidates, pick[..., None, None], -2)[..., 0, :]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def camera_record(clip: Clip) -> dict:
    """The clip's camera as Kubric's ``camera`` dict (millimetres, Blender camera-to-world poses, (w, x, y, z))."""
    K = intrinsics(clip)
    width = clip.video.shape[2]
    sensor_width = float(clip.camera.get("sensor_width_mm", 32.0))
    cam_to_world = np.asarray(clip.camera["cam_to_world_blender"], np.float64)
    return {
        "focal_length": float(K[0, 0] * sensor_width / width),  # from K, so it holds whatever the sensor fit
        "sensor_width": sensor_width,
        "field_of_view": float(2 * math.atan(width / (2 * K[0, 0]))),
        "positions": cam_to_world[:, :3, 3].astype(np.float32),
        "quaternions": quaternion_wxyz(cam_to_world[:, :3, :3]).astype(np.float32),
    }


def done(out: Path, key: str) -> bool:
    """Whether clip ``key`` was exported completely (its annotation file is written last)."""
    return (out / key / f"{key}.npy").is_file()


def write(clip: Clip, out: Path) -> None:
    """Write one clip's folder; the annotation file last, so a killed export leaves the clip incomplete."""
    folder = out / clip.key
    digits = max(3, len(str(clip.num_frames - 1)))  # one width per clip: the loader orders the frames by name
    for t, frame in enumerate(clip.video):
        save_image(folder / "frames" / f"{t:0{digits}d}.png", frame, compress_level=1)
    if clip.depth is not None:
        for t, distance in enumerate(clip.depth):
            save_npy(folder / "depths" / f"{t:0{digits}d}.npy", no_surface_zero(distance))
    annotations = {
        "coords": clip.tracks.astype(np.float32),
        "visibility": clip.occluded.astype(bool),  # occlusion flags under the released data's name
        "coords_depth": clip.tracks_3d[..., 2].astype(np.float32),
        "camera": camera_record(clip),
    }
    save_npy(folder / f"{clip.key}.npy", np.array(annotations, dtype=object), allow_pickle=True)
