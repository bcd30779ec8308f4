"""Meshes that numpy alone cannot make: files (OBJ, PLY, glTF/GLB, FBX), Kubric-manifest assets and Blender's
Suzanne, as triangles in numpy, centred, longest side 1.

OBJ is read directly; PLY, glTF/GLB and FBX go through Blender's own importers (the imported objects are removed
again), with every mesh of the file joined in its world placement. `load_animation` samples a file's own
animation (armature skinning, shape keys) at the clip's frames. `BlenderMeshReader` hands these to a
`tapforge.synth.scene.Scene` (``Scene(mesh_reader=...)``), which never imports Blender itself.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from tapforge.base.errors import TapforgeError
from tapforge.synth.assets import load_asset_mesh, read_obj
from tapforge.synth.native import quiet_stdout
from tapforge.synth.shapes import Mesh

MESH_SUFFIXES = (".obj", ".ply", ".gltf", ".glb")
ANIMATED_SUFFIXES = (".gltf", ".glb", ".fbx")
# datablocks an importer adds, removed again after reading
IMPORTED = ("objects", "meshes", "armatures", "actions", "materials", "images", "textures")


def _import(path: Path) -> list:
    """Import ``path`` with Blender's importer for its suffix; the new objects."""
    import bpy

    before = set(bpy.data.objects)
    suffix = path.suffix.lower()
    with quiet_stdout():
        if suffix == ".ply":
            bpy.ops.wm.ply_import(filepath=str(path))
        elif suffix == ".fbx":
            import addon_utils

            addon_utils.enable("io_scene_fbx")
            bpy.ops.import_scene.fbx(filepath=str(path))
        else:
            bpy.ops.import_scene.gltf(filepath=str(path))
    return [o for o in bpy.data.objects if o not in before]


@contextlib.contextmanager
def _imports_removed() -> Iterator[dict[str, set]]:
    """Remove afterwards every datablock an importer adds inside the block; yields what there was before."""
    import bpy

    before = {kind: set(getattr(bpy.data, kind)) for kind in IMPORTED}
    try:
        yield before
    finally:
        for kind in IMPORTED:
            collection = getattr(bpy.data, kind)
            for block in [b for b in collection if b not in before[kind]]:
                collection.remove(block)


def _joined_mesh(objects: list, depsgraph) -> tuple[np.ndarray, np.ndarray]:
    """World vertices and triangles of the evaluated meshes among ``objects``, joined in their order."""
    vertices, faces, offset = [], [], 0
    for obj in objects:
        if obj.type != "MESH":
            continue
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        mesh.calc_loop_triangles()
        co = np.empty(len(mesh.vertices) * 3)
        mesh.vertices.foreach_get("co", co)
        tris = np.empty(len(mesh.loop_triangles) * 3, np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
        matrix = np.array(evaluated.matrix_world)
        vertices.append(co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3])
        faces.append(tris.reshape(-1, 3) + offset)
        offset += len(mesh.vertices)
        evaluated.to_mesh_clear()
    if not vertices:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int32)
    return np.concatenate(vertices), np.concatenate(faces).astype(np.int32)


def _blender_import(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import bpy

    with _imports_removed():
        vertices, faces = _joined_mesh(_import(path), bpy.context.evaluated_depsgraph_get())
    if not len(vertices):
        raise TapforgeError(f"{path}: holds no mesh; give a file with triangle geometry")
    return vertices, faces


@lru_cache(maxsize=16)
def load_animation(
    path: str, animation: str | None, start: float, speed: float, num_frames: int, frame_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """The file's meshes, joined, at frames 0 .. num_frames - 1 of a clip at ``frame_rate``: world vertices
    [T,V,3] and triangles [F,3]. Frame k shows the file's animation (``animation``: an action name, else the one
    the importer assigns) at ``start + k * speed / frame_rate`` seconds."""
    import bpy

    file = Path(path).expanduser()
    if file.suffix.lower() not in ANIMATED_SUFFIXES or not file.is_file():
        raise TapforgeError(f"AnimatedMesh {path}: give an existing {', '.join(ANIMATED_SUFFIXES)} file")
    scene = bpy.context.scene
    saved = scene.render.fps, scene.render.fps_base, scene.frame_current
    scene.render.fps, scene.render.fps_base = frame_rate, 1.0  # importers turn seconds into frames at this rate
    try:
        with _imports_removed() as before:
            try:
                objects = _import(file)
            except RuntimeError as err:
                raise TapforgeError(
                    f"AnimatedMesh {path}: Blender cannot read it ({str(err).splitlines()[-1]}); check the file"
                ) from None
            if animation is not None:
                if animation not in bpy.data.actions or bpy.data.actions[animation] in before["actions"]:
                    names = sorted(a.name for a in bpy.data.actions if a not in before["actions"])
                    raise TapforgeError(f"AnimatedMesh {path}: no animation {animation!r}; the file has {names}")
                for obj in objects:
                    if obj.animation_data is not None and obj.animation_data.action is not None:
                        obj.animation_data.action = bpy.data.actions[animation]
            frames, faces = [], None
            for k in range(num_frames):
                frame = (start + k * speed / frame_rate) * frame_rate
                scene.frame_set(int(np.floor(frame)), subframe=float(frame - np.floor(frame)))
                vertices, tris = _joined_mesh(objects, bpy.context.evaluated_depsgraph_get())
                if faces is None:
                    faces = tris
                if not len(vertices) or (frames and vertices.shape != frames[0].shape):
                    raise TapforgeError(
                        f"AnimatedMesh {path}: holds no mesh, or its animation changes the number of "
                        "vertices; give a skinned or shape-key animation of fixed meshes"
                    )
                frames.append(vertices)
    finally:
        scene.render.fps, scene.render.fps_base = saved[0], saved[1]
        scene.frame_set(saved[2])
    return np.stack(frames), faces


@lru_cache(maxsize=64)
def load_unit_mesh(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The file's triangles, centred on their bounding box, longest side 1 (like the procedural shapes)."""
    file = Path(path).expanduser()
    if file.suffix.lower() not in MESH_SUFFIXES:
        raise TapforgeError(f"MeshFile {path}: unknown mesh format; use one of {', '.join(MESH_SUFFIXES)}")
    if not file.is_file():
        raise TapforgeError(
            f"MeshFile {path}: no such file; check the path (relative paths are from the folder the command runs in)"
        )
    if file.suffix.lower() == ".obj":
        vertices, faces = read_obj(file)
    else:
        try:
            vertices, faces = _blender_import(file)
        except RuntimeError as err:  # Blender's importers report unreadable files this way
            raise TapforgeError(
                f"MeshFile {path}: Blender cannot read it ({str(err).splitlines()[-1]}); check the file"
            ) from err
    lo, hi = vertices.min(0), vertices.max(0)
    if not (hi - lo).max() > 0:
        raise TapforgeError(f"MeshFile {path}: the mesh has no extent; give a file with real geometry")
    return (vertices - (lo + hi) / 2) / (hi - lo).max(), faces


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


class BlenderMeshReader:
    """The pipeline's `tapforge.synth.scene.MeshReader`: Suzanne from Blender, mesh files through Blender's
    importers (OBJ directly), assets from the folder of ``assets.directory``, a file's animation sampled by Blender."""

    def suzanne(self) -> Mesh:
        return suzanne()

    def mesh_file(self, path: str) -> Mesh:
        return load_unit_mesh(path)

    def asset(self, asset_id: str) -> Mesh:
        return load_asset_mesh(asset_id)

    def animation(
        self, path: str, animation: str | None, start: float, speed: float, num_frames: int, frame_rate: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return load_animation(path, animation, start, speed, num_frames, frame_rate)
