"""Motion statistics of a clip, from its ground truth: how alive it is and how often points come back.

`motion_statistics` goes into every clip's ``meta.json`` (key ``motion``) and into ``bench/long_clip.py``:

- ``moving_frame_share``: share of frame steps (t-1 -> t) in which at least one object moves (a point of its
  bounding radius moves more than ``MOVING_MM`` millimetres: translation plus rotation times radius, or a vertex of
  a deforming surface);
- ``reappearing_share``: share of tracks that are visible, then hidden for at least one frame, then visible again;
- ``longest_gap`` / ``median_longest_gap``: frames between two sightings of a track, the longest over all tracks
  and the median over the reappearing ones (0 when none reappears);
- ``reentering_share``: share of tracks that are in the frame, leave it (outside the image or behind the camera)
  and come back in.
"""

from __future__ import annotations

import numpy as np

MOVING_MM = 1.0


def gaps(present: np.ndarray) -> np.ndarray:
    """Per track [N,T] bool -> the longest run of absent frames between two present ones [N] (0: none)."""
    num_frames = present.shape[1]
    index = np.where(present, np.arange(num_frames), -1)
    last_seen = np.maximum.accumulate(index, axis=1)
    before = np.concatenate([np.full((len(present), 1), -1), last_seen[:, :-1]], 1)
    gap = np.where(present & (before >= 0), np.arange(num_frames) - before - 1, 0)
    return gap.max(axis=1, initial=0)


def moving_frames(poses: np.ndarray, radii: np.ndarray, vertices: list[np.ndarray] = ()) -> np.ndarray:
    """[T-1] bool: in step t-1 -> t some object moves more than ``MOVING_MM`` (poses [O,T,4,4] object-to-world,
    radii [O] metres; ``vertices``: [T,V,3] world vertices of deforming surfaces)."""
    num_frames = poses.shape[1] if len(poses) else (len(vertices[0]) if len(vertices) else 1)
    moving = np.zeros(max(num_frames - 1, 0), bool)
    if len(poses):
        shift = np.linalg.norm(np.diff(poses[:, :, :3, 3], axis=1), axis=-1)  # [O,T-1]
        # rotation between frames: |R_t - R_{t-1}| (Frobenius) bounds how far a point at unit radius moves
        turn = np.linalg.norm(np.diff(poses[:, :, :3, :3], axis=1), axis=(-2, -1)) / np.sqrt(2)
        moving |= ((shift + turn * radii[:, None]) * 1000 > MOVING_MM).any(0)
    for surface in vertices:
        moving |= (np.linalg.norm(np.diff(surface, axis=0), axis=-1).max(-1) * 1000) > MOVING_MM
    return moving


def motion_statistics(
    tracks: np.ndarray,
    occluded: np.ndarray,
    tracks_3d: np.ndarray,
    size: tuple[int, int],
    poses: np.ndarray,
    radii: np.ndarray,
    vertices: list[np.ndarray] = (),
) -> dict[str, float]:
    """The clip's motion statistics (module docstring): tracks [N,T,2] (x, y) pixels, occluded [N,T], tracks_3d
    [N,T,3] camera frame (z forward), size (width, height), object poses and radii as in `moving_frames`."""
    width, height = size
    inside = (tracks_3d[..., 2] > 0) & (tracks[..., 0] >= 0) & (tracks[..., 0] < width)
    inside &= (tracks[..., 1] >= 0) & (tracks[..., 1] < height)
    longest = gaps(~occluded)
    reappearing = longest > 0
    moving = moving_frames(poses, radii, vertices)
    return {
        "moving_frame_share": round(float(moving.mean()) if len(moving) else 0.0, 4),
        "reappearing_share": round(float(reappearing.mean()) if len(longest) else 0.0, 4),
        "longest_gap": int(longest.max(initial=0)),
        "median_longest_gap": float(np.median(longest[reappearing])) if reappearing.any() else 0.0,
        "reentering_share": round(float((gaps(inside) > 0).mean()) if len(inside) else 0.0, 4),
    }
