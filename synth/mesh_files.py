"""Meshes from files (OBJ, PLY, glTF/GLB): triangles in numpy, centred, longest side 1.

OBJ is read directly; PLY and glTF/GLB go through Blender's own importers (into a scratch collection that is
removed again), with every mesh of the file joined in its world placement.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from tapforge.errors import TapforgeError

MESH_SUFFIXES = (".obj", ".ply", ".gltf", ".glb")


def _blender_import(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import bpy

    before = set(bpy.data.objects)
    if path.suffix.lower() == ".ply":
        bpy.ops.wm.ply_import(filepath=str(path))
    else:
        bpy.ops.import_scene.gltf(filepath=str(path))
    new = [o for o in bpy.data.objects if o not in before]
    depsgraph = bpy.context.evaluated_depsgraph_get()
    vertices, faces, offset = [], [], 0
    for obj in new:
        if obj.type != "MESH":
            continue
        mesh = obj.evaluated_get(depsgraph).to_mesh()
        mesh.calc_loop_triangles()
        co = np.empty(len(mesh.vertices) * 3)
        mesh.vertices.foreach_get("co", co)
        tris = np.empty(len(mesh.loop_triangles) * 3, np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
        matrix = np.array(obj.matrix_world)
        vertices.append(co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3])
        faces.append(tris.reshape(-1, 3) + offset)
        offset += len(mesh.vertices)
    for obj in new:
        bpy.data.objects.remove(obj)
    if not vertices:
        raise TapforgeError(f"{path}: holds no mesh; give a file with triangle geometry")
    return np.concatenate(vertices), np.concatenate(faces).astype(np.int32)


@lru_cache(maxsize=64)
def load_unit_mesh(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The file's triangles, centred on their bounding box, longest side 1 (like the procedural shapes)."""
    file = Path(path).expanduser()
    if file.suffix.lower() not in MESH_SUFFIXES:
        raise TapforgeError(f"MeshFile {path}: unknown mesh format; use one of {', '.join(MESH_SUFFIXES)}")
    if not file.is_file():
        raise TapforgeError(f"MeshFile {path}: no such file; check the path (relative paths are from the "
                            "folder the command runs in)")
    if file.suffix.lower() == ".obj":
        from synth.assets import read_obj

        vertices, faces = read_obj(file)
    else:
        try:
            vertices, faces = _blender_import(file)
        except RuntimeError as err:  # Blender's importers report unreadable files this way
            raise TapforgeError(f"MeshFile {path}: Blender cannot read it ({str(err).splitlines()[-1]}); "
                                "check the file") from err
    lo, hi = vertices.min(0), vertices.max(0)
    if not (hi - lo).max() > 0:
        raise TapforgeError(f"MeshFile {path}: the mesh has no extent; give a file with real geometry")
    return (vertices - (lo + hi) / 2) / (hi - lo).max(), faces
