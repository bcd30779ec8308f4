"""Mesh helpers for `tapforge.synth.scene` objects: volume and centre of mass, and Blender's Suzanne.

`tapforge.synth.scene.Object.mesh` scales a unit mesh to the object's size and re-centres it on the solid's centre of
mass, so the physics body frame, the Blender object frame and the ground-truth object frame are one frame.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tapforge.synth.shapes import Mesh


def volume_and_centroid(vertices: np.ndarray, faces: np.ndarray) -> tuple[float, np.ndarray]:
    """Signed volume and centre of mass of a closed, outward-oriented triangle mesh."""
    tri = vertices[faces]
    signed = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0
    volume = float(signed.sum())
    centroid = (signed[:, None] * tri.sum(1) / 4.0).sum(0) / volume if abs(volume) > 1e-12 else tri.mean((0, 1))
    return volume, centroid


@lru_cache(maxsize=1)
def suzanne() -> Mesh:
    """Blender's monkey, subdivided once and smoothed, longest side 1."""
    # isort: off
    import bpy  # noqa: F401  (first: bmesh, Blender's mesh module, is importable once bpy is)
    import bmesh  # Suzanne is Blender's own mesh

    # isort: on

    bm = bmesh.new()
    bmesh.ops.create_monkey(bm)
    # one smoothed subdivision: Blender's monkey is low-poly, and smooth shading alone would not hide that
    bmesh.ops.subdivide_edges(bm, edges=bm.edges[:], cuts=1, use_grid_fill=True, smooth=1.0)
    bmesh.ops.triangulate(bm, faces=bm.faces[:])
    vertices = np.array([v.co[:] for v in bm.verts], float)
    faces = np.array([[v.index for v in f.verts] for f in bm.faces], np.int32)
    bm.free()
    lo, hi = vertices.min(0), vertices.max(0)
    return (vertices - (lo + hi) / 2) / (hi - lo).max(), faces
