"""The MV-Kubric layout (``--to mvtracker``), as MVTracker's Kubric multi-view dataset class reads it.

One folder per scene, named by its global scene index (the loader orders the scenes by ``int(name)``), holding all
the scene's views (a single-view dataset exports one view per scene)::

    OUT/<scene>/tracks_3d.npz                tracks_3d float64 [T,N,3]: the points in world coordinates (Z up, metres)
    OUT/<scene>/tracks_segmentation_ids.npz  tracks_segmentation_ids int32 [N]: tapforge's object ids (0 = static)
    OUT/<scene>/tracked_objects.json         {"names": [...], "ids": [...]}: the ids above and their objects
    OUT/<scene>/cameras.npz                  camera_positions, lookat_positions float64 [V,3] (at frame 0)
    OUT/<scene>/view_<v>/rgba_00000.png ...  RGBA frames (alpha 255)
    OUT/<scene>/view_<v>/depth_00000.tiff    float32 Euclidean distance to the camera centre, metres (0: no surface)
    OUT/<scene>/view_<v>/tracks_2d.npz       tracks_2d float64 [T,N,2] (x, y) pixels, occlusion bool [T,N]
    OUT/<scene>/view_<v>/metadata.json       Kubric's record: metadata.resolution [W,H], camera: K, focal_length,
                                             sensor_width, field_of_view, positions [T,3], quaternions [T,4]
    OUT/<scene>/view_<v>/object_id_to_segmentation_id.json

Conventions, as the loader reads them: everything is time-major; row n is the same surface point in every view
and in ``tracks_3d``. Pixel (0, 0) is the top-left corner of the top-left pixel. ``occlusion`` is True where the
point is hidden (the loader inverts it into its visibility). ``K`` is Kubric's normalised matrix
``[[fx/W, 0, -cx/W], [0, -fy/H, -cy/H], [0, 0, -1]]`` (the loader turns it into pixels with
``diag(W, H, 1) @ K @ diag(1, -1, -1)``); ``positions`` and ``quaternions`` (w, x, y, z) are the camera-to-world
pose of a Blender camera (looks down -Z, +Y up) at every frame (the loader inverts it and flips it to OpenCV axes);
``focal_length`` and ``sensor_width`` are millimetres, and the principal point is the image centre (the loader
converts the distance maps to z-depth with them). The 2D tracks and ``tracks_3d`` are float64, as the generator
wrote them: the loader checks the projection in float64. ``lookat_positions`` are the cameras' look-at points
(where the script aimed them). ``tracks_3d.npz`` is written last: a scene folder without it is unfinished (rerun the
export).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from tapforge.base.atomic import atomic_write_bytes
from tapforge.base.errors import TapforgeError
from tapforge.synth.exports.common import intrinsics, no_surface_zero, save_image, save_npz, tracks_world
from tapforge.synth.exports.cotracker import camera_record, quaternion_wxyz
from tapforge.synth.schema import Clip

DROPS = "segmentation maps (the loader reads none), query points and the scene description (meta.json)"
DEPTH = "required"


def scene_folder(clip: Clip) -> str:
    """The folder of the scene a view belongs to: its global scene index (the loader sorts by ``int(name)``)."""
    return str(int(clip.meta["scene_index"]))


def done(out: Path, name: str) -> bool:
    """Whether scene folder ``name`` was exported completely (its world tracks are written last)."""
    return (out / name / "tracks_3d.npz").is_file()


def kubric_intrinsics(clip: Clip) -> np.ndarray:
    """The clip's pixel ``K`` as Kubric's normalised, y-flipped matrix (what the loader's metadata holds)."""
    K = intrinsics(clip)
    height, width = clip.video.shape[1:3]
    return np.array(
        [[K[0, 0] / width, 0.0, -K[0, 2] / width], [0.0, -K[1, 1] / height, -K[1, 2] / height], [0.0, 0.0, -1.0]]
    )


def look_at(clip: Clip) -> np.ndarray:
    """The view's look-at point at frame 0: where the scene aimed its camera (``look_at_world``), else where its
    optical axis meets the floor (z = 0), else 10 m ahead."""
    if "look_at_world" in clip.camera:
        return np.asarray(clip.camera["look_at_world"][0], np.float64)
    cam_to_world = np.asarray(clip.camera["cam_to_world_blender"][0], np.float64)
    position, forward = cam_to_world[:3, 3], -cam_to_world[:3, 2]
    ahead = -position[2] / forward[2] if forward[2] < -1e-6 else 10.0
    return position + ahead * forward


def _save_json(path: Path, value) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode())


def _save_tiff(path: Path, depth: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(depth, np.float32)).save(buf, format="TIFF")  # mode F: float32
    atomic_write_bytes(path, buf.getvalue())


def _write_view(clip: Clip, folder: Path, names: dict[int, str]) -> None:
    height, width = clip.video.shape[1:3]
    for t, frame in enumerate(clip.video):
        rgba = np.concatenate([frame, np.full(frame.shape[:2] + (1,), 255, np.uint8)], -1)
        save_image(folder / f"rgba_{t:05d}.png", rgba, compress_level=1)
    for t, distance in enumerate(clip.depth):
        _save_tiff(folder / f"depth_{t:05d}.tiff", no_surface_zero(distance))
    save_npz(
        folder / "tracks_2d.npz",
        tracks_2d=clip.tracks.transpose(1, 0, 2).astype(np.float64),
        occlusion=clip.occluded.T.copy(),
    )
    camera = camera_record(clip)
    cam_to_world = np.asarray(clip.camera["cam_to_world_blender"], np.float64)
    record = {
        "flags": {"frame_rate": clip.meta.get("fps"), "resolution": [width, height], "seed": clip.meta.get("seed")},
        "metadata": {
            "resolution": [width, height],
            "num_frames": clip.num_frames,
            "frame_rate": clip.meta.get("fps"),
            "seed": clip.meta.get("seed"),
            "num_instances": len(names) - 1,
        },
        "camera": {
            "K": kubric_intrinsics(clip).tolist(),
            "focal_length": camera["focal_length"],
            "sensor_width": camera["sensor_width"],
            "field_of_view": camera["field_of_view"],
            "positions": cam_to_world[:, :3, 3].tolist(),
            "quaternions": quaternion_wxyz(cam_to_world[:, :3, :3]).tolist(),
        },
        "instances": [],
    }
    _save_json(folder / "metadata.json", record)
    _save_json(folder / "object_id_to_segmentation_id.json", {name: i for i, name in names.items()})


def write_scene(clips: list[Clip], out: Path) -> None:
    """Write one scene's folder from its views' clips (in view order); the world tracks last."""
    first = clips[0]
    sizes = {clip.video.shape[1:3] for clip in clips}
    if len(sizes) > 1:
        raise TapforgeError(
            f"scene {first.meta.get('view', {}).get('scene', first.key)}: its views have different resolutions "
            f"({sorted(sizes)}), which the MVTracker loader stacks into one array; render them at one resolution"
        )
    folder = out / scene_folder(first)
    ids = sorted({int(i) for i in first.object_ids} | {0})
    names = {i: "background" if i == 0 else f"object_{i}" for i in ids}
    for v, clip in enumerate(clips):
        _write_view(clip, folder / f"view_{v}", names)
    # time-major world tracks: shared by the views, or (a single view) from its camera-frame tracks
    world = first.tracks_world.transpose(1, 0, 2) if first.tracks_world is not None else tracks_world(first)
    _save_json(folder / "tracked_objects.json", {"names": list(names.values()), "ids": list(names)})
    save_npz(folder / "tracks_segmentation_ids.npz", tracks_segmentation_ids=first.object_ids.astype(np.int32))
    positions = np.stack([np.asarray(c.camera["cam_to_world_blender"][0], np.float64)[:3, 3] for c in clips])
    save_npz(folder / "cameras.npz", camera_positions=positions, lookat_positions=np.stack([look_at(c) for c in clips]))
    save_npz(folder / "tracks_3d.npz", tracks_3d=np.asarray(world, np.float64))
