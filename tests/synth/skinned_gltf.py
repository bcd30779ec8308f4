"""Write a small skinned, animated glTF for the tests: a column of 2 bones that sways and bends.

    python tests/synth/skinned_gltf.py OUT.glb

Runs in its own process: it resets Blender's session to build the file.
"""

import sys

# isort: off
import bpy  # first: bmesh, Blender's mesh module, is importable once bpy is
import bmesh

# isort: on
import numpy as np


def main(out: str) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = 24
    bm = bmesh.new()
    bmesh.ops.create_cone(bm, cap_ends=True, segments=16, radius1=0.3, radius2=0.3, depth=2.0)
    vertical = [e for e in bm.edges if abs(e.verts[0].co.z - e.verts[1].co.z) > 1e-6]
    bmesh.ops.subdivide_edges(bm, edges=vertical, cuts=8)
    bmesh.ops.translate(bm, verts=bm.verts, vec=(0, 0, 1.0))
    bmesh.ops.triangulate(bm, faces=bm.faces[:])
    mesh = bpy.data.meshes.new("column")
    bm.to_mesh(mesh)
    bm.free()
    column = bpy.data.objects.new("column", mesh)
    scene.collection.objects.link(column)
    rig = bpy.data.objects.new("rig", bpy.data.armatures.new("rig"))
    scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    lower, upper = rig.data.edit_bones.new("lower"), rig.data.edit_bones.new("upper")
    lower.head, lower.tail, upper.head, upper.tail = (0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 2)
    upper.parent = lower
    bpy.ops.object.mode_set(mode="OBJECT")
    groups = column.vertex_groups.new(name="lower"), column.vertex_groups.new(name="upper")
    for vertex in mesh.vertices:
        weight = float(np.clip(vertex.co.z - 0.5, 0, 1))
        groups[0].add([vertex.index], 1 - weight, "REPLACE")
        groups[1].add([vertex.index], weight, "REPLACE")
    column.modifiers.new("rig", "ARMATURE").object = rig
    column.parent = rig
    for name, angles in (("lower", (0.0, 0.3, -0.3, 0.0)), ("upper", (0.0, 0.9, -0.9, 0.0))):
        bone = rig.pose.bones[name]
        bone.rotation_mode = "XYZ"
        for frame, angle in zip((0, 12, 24, 36), angles):
            bone.rotation_euler = (angle, 0.0, 0.0)
            bone.keyframe_insert("rotation_euler", frame=frame)
    scene.frame_start, scene.frame_end = 0, 36
    bpy.ops.export_scene.gltf(filepath=out, export_format="GLB", export_animations=True)


if __name__ == "__main__":
    main(sys.argv[-1])
