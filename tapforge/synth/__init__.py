"""synth: MOVi-style scenes on Blender 5 (bpy) + PyBullet with exact point tracks, written to WebDataset shards.

Importing this package never imports bpy; only building a scene does (so ``train`` stays light).
"""
