"""Mesh helpers for `tapforge.synth.scene` objects, in numpy: volume and centre of mass.

`tapforge.synth.scene.Object.mesh` scales a unit mesh to the object's size and re-centres it on the solid's centre of
mass, so the physics body frame, the Blender object frame and the ground-truth object frame are one frame.
"""

from __future__ import annotations

import numpy as np


def volume_and_centroid(vertices: np.ndarray, faces: np.ndarray) -> tuple[float, np.ndarray]:
    """Signed volume and centre of mass of a closed, outward-oriented triangle mesh."""
    tri = vertices[faces]
    signed = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0
    volume = float(signed.sum())
    centroid = (signed[:, None] * tri.sum(1) / 4.0).sum(0) / volume if abs(volume) > 1e-12 else tri.mean((0, 1))
    return volume, centroid
