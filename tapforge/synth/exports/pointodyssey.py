"""The PointOdyssey layout (``--to pointodyssey``), as PointOdyssey's and PIPs++'s dataset classes read it.

``OUT/<seq>/rgbs/rgb_%05d.jpg``, ``depths/depth_%05d.png``, ``masks/mask_%05d.png``, ``info.npz`` and
``anno.npz``; every array is time-major:

- ``trajs_2d`` float32 [T,N,2]: (x, y) pixels, (0, 0) the top-left corner of the top-left pixel.
- ``trajs_3d`` float32 [T,N,3]: the points in world coordinates (Blender's world: Z up, metres).
- ``visibs`` bool [T,N]: True where the point is visible (tapforge's ``~occluded``).
- ``valids`` bool [T,N]: True where the point lies in front of the camera (its 2D position is meaningful).
- ``intrinsics`` float32 [T,3,3]: ``K`` (OpenCV, pixels) per frame.
- ``extrinsics`` float32 [T,4,4]: camera-from-world, OpenCV camera (x right, y down, z forward): the loaders'
  ``cams_T_world``, so ``extrinsics @ trajs_3d`` is the point in the camera and ``intrinsics`` projects it.
- ``info.npz`` ``trajs_3d``: the shape of ``anno.npz``'s ``trajs_3d`` (the loaders read the track count there).

Depth PNGs are uint16 with PointOdyssey's scale: metres = value / 65535 * 1000; depth along the optical axis
(camera z), 0 where no surface. Masks are uint16 PNGs of instance ids (0 the static background, as ``object_ids``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tapforge.synth.exports.common import intrinsics, save_image, save_npz, tracks_world, world_to_cam, z_depth
from tapforge.synth.schema import Clip

DROPS = "surface normals (not rendered: a loader that opens normals/ needs them), object ids, query points, scene description"
DEPTH = "required"
DEPTH_SCALE = 65535 / 1000  # uint16 value per metre


def done(out: Path, key: str) -> bool:
    """Whether clip ``key`` was exported completely (``anno.npz`` is written last)."""
    return (out / key / "anno.npz").is_file()


def write(clip: Clip, out: Path) -> None:
    """Write one clip's folder; ``anno.npz`` last, so a killed export leaves the clip incomplete."""
    folder = out / clip.key
    K = intrinsics(clip)
    for t, frame in enumerate(clip.video):
        save_image(folder / "rgbs" / f"rgb_{t:05d}.jpg", frame, quality=95)
    depth = z_depth(clip.depth, K)
    for t, plane in enumerate(np.clip(np.round(depth * DEPTH_SCALE), 0, 65535).astype(np.uint16)):
        save_image(folder / "depths" / f"depth_{t:05d}.png", plane)
    if clip.segmentation is not None:
        for t, ids in enumerate(clip.segmentation):
            save_image(folder / "masks" / f"mask_{t:05d}.png", ids.astype(np.uint16))
    trajs_3d = tracks_world(clip).astype(np.float32)
    num_frames = clip.num_frames
    save_npz(folder / "info.npz", trajs_3d=np.array(trajs_3d.shape))
    save_npz(
        folder / "anno.npz",
        trajs_2d=clip.tracks.transpose(1, 0, 2).astype(np.float32),
        trajs_3d=trajs_3d,
        visibs=~clip.occluded.T,
        valids=clip.tracks_3d[..., 2].T > 0,
        intrinsics=np.repeat(K[None], num_frames, 0).astype(np.float32),
        extrinsics=world_to_cam(clip).astype(np.float32),
    )
