"""What the exporters share: the shard camera as matrices, depth conversions and atomic writes (numpy + PIL only).

Conventions of the shards (`tapforge.synth.schema`): pixel (0, 0) is the top-left corner of the top-left pixel, so
the centre of pixel (row i, column j) is (j + 0.5, i + 0.5); ``K`` and ``world_to_cam_opencv`` are OpenCV (x right,
y down, z forward); the world is Blender's (Z up, metres); ``depth`` is the Euclidean distance to the camera centre
(inf where no surface).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tapforge.base.atomic import atomic_write, atomic_write_bytes
from tapforge.synth.schema import Clip


def intrinsics(clip: Clip) -> np.ndarray:
    """The clip's pixel intrinsics ``K`` [3,3] (float64)."""
    return np.asarray(clip.camera["K"], np.float64)


def world_to_cam(clip: Clip) -> np.ndarray:
    """Per-frame OpenCV camera-from-world matrices [T,4,4] (float64)."""
    return np.asarray(clip.camera["world_to_cam_opencv"], np.float64)


def tracks_world(clip: Clip) -> np.ndarray:
    """The 3D tracks in world coordinates, time-major [T,N,3] (float64)."""
    cam_to_world = np.linalg.inv(world_to_cam(clip))
    points = clip.tracks_3d.astype(np.float64).transpose(1, 0, 2)  # [T,N,3]
    return np.einsum("tij,tnj->tni", cam_to_world[:, :3, :3], points) + cam_to_world[:, None, :3, 3]


def z_depth(distance: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Euclidean distance maps [T,H,W] -> depth along the optical axis (OpenCV z) [T,H,W] float32, read at pixel
    centres; pixels without a surface (inf) become 0."""
    height, width = distance.shape[-2:]
    u = (np.arange(width) + 0.5 - K[0, 2]) / K[0, 0]
    v = (np.arange(height) + 0.5 - K[1, 2]) / K[1, 1]
    ray_length = np.sqrt(u[None, :] ** 2 + v[:, None] ** 2 + 1.0)
    return no_surface_zero(distance / ray_length)


def no_surface_zero(depth: np.ndarray) -> np.ndarray:
    """``depth`` as float32 with the pixels without a surface (inf, NaN) set to 0."""
    return np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)


def save_image(path: Path, image: np.ndarray, **options) -> None:
    """Write ``image`` (uint8 [H,W,3] or uint16 [H,W]) atomically; the format follows the suffix."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG" if path.suffix == ".jpg" else "PNG", **options)
    atomic_write_bytes(path, buf.getvalue())


def save_npy(path: Path, value, allow_pickle: bool = False) -> None:
    """``np.save`` of ``value`` to ``path``, atomically (``allow_pickle`` for a dict, as some loaders expect)."""
    buf = io.BytesIO()
    np.save(buf, value, allow_pickle=allow_pickle)
    atomic_write_bytes(path, buf.getvalue())


def save_npz(path: Path, **arrays) -> None:
    """``np.savez`` of ``arrays`` to ``path``, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)
