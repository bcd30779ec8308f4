"""Poses in numpy: quaternions, their interpolation between keys, object pose and camera matrices.

Interpolation is linear in the clip's length: `Keys` sorts keys once and `sample_frames` reads per-frame arrays by
index, so a physics step that asks a scripted object for its pose costs O(log T), not O(T). Camera matrices take a
roll about the camera's own viewing axis (`look_at_matrices`).

The maths that the scene API (`tapforge.synth.scene`) and the simulator (`tapforge.synth.physics`) share; it
imports nothing of tapforge. Quaternions are (x, y, z, w) throughout (PyBullet's and SciPy's order; Kubric and
Blender write (w, x, y, z)). World Z-up; cameras in Blender's convention (looking down -Z, +Y up).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def unit_quaternion(q: Any) -> np.ndarray:
    """One quaternion (x, y, z, w) [4], scaled to unit length."""
    q = np.asarray(q, float).reshape(4)
    return q / np.linalg.norm(q)


def quaternion_product(a: Any, b: Any) -> np.ndarray:
    """The Hamilton product a * b of quaternions (x, y, z, w), over leading axes: rotation b, then rotation a."""
    x1, y1, z1, w1 = np.moveaxis(np.asarray(a, float), -1, 0)
    x2, y2, z2, w2 = np.moveaxis(np.asarray(b, float), -1, 0)
    return np.stack(
        [
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        ],
        -1,
    )


def about_z(angle: Any) -> np.ndarray:
    """Quaternions (x, y, z, w) of turns by ``angle`` (radians, any shape) about the world z axis."""
    angle = np.asarray(angle, float)
    return np.stack([0 * angle, 0 * angle, np.sin(angle / 2), np.cos(angle / 2)], -1)


def rotation_vector(q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """The world-frame rotation vector (axis * angle) turning quaternion q0 into q1 (both x, y, z, w)."""
    d = quaternion_product(q1, q0 * [-1.0, -1.0, -1.0, 1.0])  # q1 * q0^-1
    if d[3] < 0:
        d = -d
    sine = np.linalg.norm(d[:3])
    return d[:3] * (2 * np.arctan2(sine, d[3]) / sine) if sine > 1e-12 else 2 * d[:3]


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between unit quaternions (x, y, z, w) at fractions ``t`` [N] -> [N,4]."""
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        out = q0 + t[:, None] * (q1 - q0)
    else:
        theta = np.arccos(dot)
        out = (np.sin((1 - t) * theta)[:, None] * q0 + np.sin(t * theta)[:, None] * q1) / np.sin(theta)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


class Keys:
    """Keys {frame: value} sorted once, to be interpolated many times (e.g. every physics step): `at` is linear
    (slerp for rotations) between keys and constant outside them. Building it costs O(K log K), each `at` O(log K)
    per frame."""

    def __init__(self, keys: dict[int, np.ndarray]):
        self.times = np.array(sorted(keys), float)
        self.values = np.stack([keys[k] for k in sorted(keys)])

    def at(self, frames: Any, rotation: bool = False) -> np.ndarray:
        """Values at (fractional) ``frames`` [N] -> [N, ...]."""
        times, values = self.times, self.values
        frames = np.clip(np.asarray(frames, float), times[0], times[-1])
        if len(times) == 1:
            return np.repeat(values[:1], len(frames), 0)
        upper = np.clip(np.searchsorted(times, frames, side="right"), 1, len(times) - 1)
        lower = upper - 1
        frac = (frames - times[lower]) / (times[upper] - times[lower])
        if not rotation:
            return values[lower] + frac[:, None] * (values[upper] - values[lower])
        out = np.empty((len(frames), 4))
        for k in np.unique(lower):
            rows = lower == k
            out[rows] = slerp(values[k], values[k + 1], frac[rows])
        return out


def interpolate_keys(keys: dict[int, np.ndarray], frames: np.ndarray, rotation: bool = False) -> np.ndarray:
    """Values at (fractional) ``frames`` from {frame: value} keys: linear (slerp for rotations) between keys,
    constant outside them (`Keys`, for one use)."""
    return Keys(keys).at(frames, rotation)


def sample_frames(values: np.ndarray, frames: Any) -> np.ndarray:
    """Values at (fractional) ``frames`` [N] from one value per frame ``values`` [T, D] -> [N, D]: linear between
    frames, the first and last value outside them, exact at whole frames (numpy.interp's arithmetic on each
    component, in O(log T) per frame rather than O(T))."""
    last = len(values) - 1
    frames = np.clip(np.asarray(frames, float), 0, last)
    lower = np.floor(frames).astype(int)
    frac = (frames - lower)[:, None]
    slope = values[np.minimum(lower + 1, last)] - values[lower]
    return np.where(frac == 0, values[lower], slope * frac + values[lower])


def quaternion_matrices(q: np.ndarray) -> np.ndarray:
    """Rotation matrices [...,3,3] from unit quaternions [...,4] in (x, y, z, w) order."""
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def pose_matrices(positions: np.ndarray, quaternions: np.ndarray) -> np.ndarray:
    """Object-to-world 4x4 matrices [...,4,4] from positions [...,3] and quaternions [...,4] (x, y, z, w)."""
    mats = np.zeros(positions.shape[:-1] + (4, 4))
    mats[..., :3, :3] = quaternion_matrices(quaternions)
    mats[..., :3, 3] = positions
    mats[..., 3, 3] = 1.0
    return mats


def look_at_matrices(positions: np.ndarray, lookats: np.ndarray, roll: Any = 0.0) -> np.ndarray:
    """Camera-to-world 4x4 matrices [T,4,4] in Blender's convention (camera looks down -Z, +Y up), world +Z up in
    the picture; ``roll`` (radians, one or one per frame [T]) then turns each camera about its own z axis: the
    matrix is the unrolled one times that rotation, so a positive roll turns the camera counter-clockwise as seen
    from behind it (its right side rises) and the picture's content clockwise."""
    forward = lookats - positions
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    degenerate = np.linalg.norm(right, axis=-1) < 1e-8
    right[degenerate] = [1.0, 0.0, 0.0]
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    true_up = np.cross(right, forward)
    roll = np.asarray(roll, float)
    if roll.any():
        cos, sin = np.cos(roll)[..., None], np.sin(roll)[..., None]
        right, true_up = cos * right + sin * true_up, cos * true_up - sin * right
    mats = np.tile(np.eye(4), (len(positions), 1, 1))
    mats[:, :3, 0], mats[:, :3, 1], mats[:, :3, 2], mats[:, :3, 3] = right, true_up, -forward, positions
    return mats
