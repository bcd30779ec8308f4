"""Exact ground-truth point tracks (Kubric's point-tracking rules), vectorised numpy.

Query points are sampled object-balanced (equal shares for every visible object and the static
background) among the pixels where each object is visible; the renderer's position pass at the pixel
centre gives the surface point, which is pinned to its object's frame and then moved with the exact
per-frame object poses and projected with the exact camera. A point is occluded when it is behind the
camera, outside the frame, facing away from the camera, or when none of the 4 pixels around it shows
the same object at a depth within the tolerance (Kubric's depth + segment test).

Coordinates: tracks are (x, y) raster pixels, (0, 0) = top-left corner of the top-left pixel;
``tracks_3d`` are OpenCV camera coordinates (x right, y down, z forward), as in TAPVid-3D.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
SKY_DEPTH = 1e9  # Cycles' planar depth for rays that hit nothing is ~1e10


@dataclass
class TrackSet:
    tracks: np.ndarray  # float32 [N,T,2]
    occluded: np.ndarray  # bool [N,T]
    tracks_3d: np.ndarray  # float32 [N,T,3]
    object_ids: np.ndarray  # int32 [N]
    query: np.ndarray  # float32 [N,3] (t, y, x)


def world_to_camera(points: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    """World points [N,T,3] -> OpenCV camera coordinates [N,T,3] with per-frame cameras [T,4,4]."""
    world_to_cam = np.linalg.inv(cam_to_world)
    local = np.einsum("tij,ntj->nti", world_to_cam[:, :3, :3], points) + world_to_cam[None, :, :3, 3]
    return local @ BLENDER_TO_OPENCV


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """OpenCV camera points [...,3] -> raster pixel (x, y) [...,2]; points behind the camera give garbage."""
    z = np.where(np.abs(points_cam[..., 2:]) < 1e-9, 1e-9, points_cam[..., 2:])
    return points_cam[..., :2] / z * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]


def _balanced_sample(object_index: np.ndarray, valid: np.ndarray, num_tracks: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pick (flat pixel index into [T,H,W], object id) pairs, equal shares per visible object."""
    ids = object_index[valid]
    flat = np.flatnonzero(valid)
    present = np.unique(ids)
    shares = np.full(len(present), num_tracks // len(present))
    shares[: num_tracks % len(present)] += 1
    order = np.argsort(ids, kind="stable")
    ids_sorted, flat_sorted = ids[order], flat[order]
    starts = np.searchsorted(ids_sorted, present)
    ends = np.searchsorted(ids_sorted, present, side="right")
    picks = []
    for start, end, share in zip(starts, ends, shares):
        count = end - start
        chosen = rng.choice(count, size=share, replace=share > count)
        picks.append(flat_sorted[start + chosen])
    picked = np.concatenate(picks)
    return picked, object_index.reshape(-1)[picked]


def _gather(image: np.ndarray, t: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """image [T,H,W,...] at integer (t, y, x) clipped into the frame."""
    h, w = image.shape[1:3]
    return image[t, np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)]


def compute_tracks(passes: dict[str, np.ndarray], object_to_world: np.ndarray, instance_ids: np.ndarray,
                   cam_to_world: np.ndarray, K: np.ndarray, num_tracks: int, depth_tolerance: float,
                   rng: np.random.Generator) -> TrackSet:
    """Ground-truth tracks for one rendered scene.

    passes: ``position`` [T,H,W,3] world, ``normal`` [T,H,W,3] world, ``object_index`` [T,H,W] int,
    ``depth_z`` [T,H,W] planar camera depth (exact 1-sample passes sampled at pixel centres).
    object_to_world: [O,T,4,4] poses of the objects whose ids are ``instance_ids`` [O]; id 0 is static.
    """
    num_frames, height, width = passes["object_index"].shape
    object_index, depth_z = passes["object_index"], passes["depth_z"]
    valid = depth_z < SKY_DEPTH  # a surface was hit (the sky is not trackable)
    valid &= np.isin(object_index, np.concatenate([[0], instance_ids]))
    flat, ids = _balanced_sample(object_index, valid, num_tracks, rng)
    t0, rest = np.divmod(flat, height * width)
    y0, x0 = np.divmod(rest, width)
    world0 = passes["position"].reshape(-1, 3)[flat].astype(np.float64)
    normal0 = passes["normal"].reshape(-1, 3)[flat].astype(np.float64)

    # per-track pose at every frame: the object's pose, or identity for the static background
    lookup = np.zeros(int(max(instance_ids.max(initial=0), ids.max(initial=0))) + 1, int)
    lookup[instance_ids] = np.arange(len(instance_ids)) + 1
    slot = lookup[ids]
    poses = np.concatenate([np.tile(np.eye(4), (1, num_frames, 1, 1)), object_to_world], 0)[slot]  # [N,T,4,4]
    pose_at_query = poses[np.arange(len(flat)), t0]
    inv_query = np.linalg.inv(pose_at_query)
    local = np.einsum("nij,nj->ni", inv_query[:, :3, :3], world0) + inv_query[:, :3, 3]
    local_normal = np.einsum("nji,nj->ni", pose_at_query[:, :3, :3], normal0)
    world = np.einsum("ntij,nj->nti", poses[..., :3, :3], local) + poses[..., :3, 3]
    normal = np.einsum("ntij,nj->nti", poses[..., :3, :3], local_normal)

    points_cam = world_to_camera(world, cam_to_world)
    xy = project(points_cam, K)
    z = points_cam[..., 2]
    behind = z <= 1e-6
    outside = (xy[..., 0] < 0) | (xy[..., 0] >= width) | (xy[..., 1] < 0) | (xy[..., 1] >= height)
    facing_away = np.einsum("nti,nti->nt", normal, world - cam_to_world[None, :, :3, 3]) > 0
    hidden = ~_visible_in_4_neighbours(xy, z, ids, object_index, depth_z, depth_tolerance)
    occluded = behind | outside | facing_away | hidden
    # the query frame is visible by construction (the pixel showed this point)
    occluded[np.arange(len(flat)), t0] = False
    query = np.stack([t0, y0 + 0.5, x0 + 0.5], -1)
    return TrackSet(xy.astype(np.float32), occluded, points_cam.astype(np.float32), ids.astype(np.int32),
                    query.astype(np.float32))


def _visible_in_4_neighbours(xy: np.ndarray, z: np.ndarray, ids: np.ndarray, object_index: np.ndarray,
                             depth_z: np.ndarray, tolerance: float) -> np.ndarray:
    """True where one of the 4 pixel centres around the point shows its object at its depth (within tol)."""
    num_tracks, num_frames = z.shape
    px = xy[..., 0] - 0.5  # pixel-centre coordinates
    py = xy[..., 1] - 0.5
    fx, fy = np.floor(px).astype(int), np.floor(py).astype(int)
    t = np.broadcast_to(np.arange(num_frames), (num_tracks, num_frames))
    visible = np.zeros(z.shape, bool)
    for dy in (0, 1):
        for dx in (0, 1):
            seg = _gather(object_index, t, fy + dy, fx + dx)
            depth = _gather(depth_z, t, fy + dy, fx + dx)
            visible |= (seg == ids[:, None]) & (np.abs(z - depth) <= tolerance * depth)
    return visible
