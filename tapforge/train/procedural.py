"""Procedural point-tracking clips with exact ground truth, for tests and benchmarks.

Textured rectangles slide over a textured background while the camera pans. Textures are
continuous functions (multi-octave value noise), so every frame is rendered exactly at any
sub-pixel offset and the tracks are exact: a point keeps its texture coordinate and moves with
its rectangle (or with the background under the camera pan). A point is occluded when a nearer
rectangle covers it or it leaves the frame. No Blender involved; writing shards uses the shard
schema of ``tapforge.synth.schema``.
"""

from __future__ import annotations

import os

import numpy as np
import webdataset as wds

from tapforge.base.atomic import atomic_write
from tapforge.synth.schema import Clip, encode_clip


class ValueNoise:
    """A smooth random RGB texture defined on the whole plane (bilinear value noise, 3 octaves)."""

    def __init__(self, rng: np.random.Generator, cell: float = 6.0, size: int = 64):
        self.cells = [cell, cell / 2.0, cell / 4.0]
        self.weights = [0.55, 0.3, 0.15]
        self.grids = [rng.random((size, size, 3)) for _ in self.cells]
        self.base = rng.random(3) * 0.6 + 0.2

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape + (3,))
        for cell, weight, grid in zip(self.cells, self.weights, self.grids):
            size = grid.shape[0]
            gx, gy = x / cell, y / cell
            x0, y0 = np.floor(gx), np.floor(gy)
            fx, fy = (gx - x0)[..., None], (gy - y0)[..., None]
            x0, y0 = x0.astype(np.int64) % size, y0.astype(np.int64) % size
            x1, y1 = (x0 + 1) % size, (y0 + 1) % size
            top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
            bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
            out += weight * (top * (1 - fy) + bottom * fy)
        return np.clip(0.5 * self.base + 0.8 * (out - 0.5) + 0.25, 0.0, 1.0)


def make_clip(
    rng: np.random.Generator,
    key: str,
    num_frames: int = 8,
    size: tuple[int, int] = (64, 64),
    num_objects: int = 3,
    points_per_object: int = 24,
    background_points: int = 48,
) -> Clip:
    """Render one clip: ``num_objects`` moving rectangles over a panning textured background."""
    height, width = size
    ts = np.arange(num_frames, dtype=np.float64)
    pan = rng.uniform(-1.0, 1.0, 2) * 0.02 * min(height, width)  # camera pan, pixels per frame
    background = ValueNoise(rng, cell=max(3.0, min(height, width) / 10))
    objects = []
    for _ in range(num_objects):
        half = rng.uniform(0.1, 0.22, 2) * np.array([width, height])
        start = rng.uniform(0.15, 0.85, 2) * np.array([width, height])
        velocity = rng.uniform(-1.0, 1.0, 2) * 0.04 * min(height, width)
        objects.append((half, start, velocity, ValueNoise(rng, cell=max(2.0, min(height, width) / 16))))

    # object k occupies [centre - half, centre + half) at frame t; later objects are nearer
    centres = np.stack([start[None] + ts[:, None] * velocity[None] for _, start, velocity, _ in objects])  # [K,T,2]
    halves = np.stack([half for half, _, _, _ in objects])  # [K,2]

    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    video = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frame = background(xs + pan[0] * t, ys + pan[1] * t)
        for k, (_, _, _, texture) in enumerate(objects):
            lx, ly = xs - centres[k, t, 0], ys - centres[k, t, 1]
            inside = (np.abs(lx) < halves[k, 0]) & (np.abs(ly) < halves[k, 1])
            frame[inside] = texture(lx[inside], ly[inside])
        video[t] = np.round(frame * 255).astype(np.uint8)

    tracks, object_ids, owner = [], [], []
    for k in range(num_objects):
        local = rng.uniform(-1, 1, (points_per_object, 2)) * halves[k] * 0.95
        tracks.append(centres[k][None] + local[:, None])
        object_ids += [k + 1] * points_per_object
        owner += [k] * points_per_object
    anchors = rng.uniform(0, 1, (background_points, 2)) * np.array([width, height])
    tracks.append(anchors[:, None] - ts[None, :, None] * pan[None, None])
    object_ids += [0] * background_points
    owner += [-1] * background_points
    tracks = np.concatenate(tracks).astype(np.float32)
    owner = np.array(owner)

    occluded = ~((tracks[..., 0] >= 0) & (tracks[..., 0] < width) & (tracks[..., 1] >= 0) & (tracks[..., 1] < height))
    for k in range(num_objects):
        covered = (np.abs(tracks[..., 0] - centres[k, :, 0][None]) < halves[k, 0]) & (
            np.abs(tracks[..., 1] - centres[k, :, 1][None]) < halves[k, 1]
        )
        occluded |= covered & (owner[:, None] < k)
    depth = np.where(owner[:, None] >= 0, 5.0 - 0.5 * owner[:, None], 10.0) * np.ones((1, num_frames))
    tracks_3d = np.concatenate([tracks * 0.01, depth[..., None]], axis=-1).astype(np.float32)
    return Clip(
        key=key,
        video=video,
        tracks=tracks,
        occluded=occluded,
        tracks_3d=tracks_3d,
        object_ids=np.array(object_ids, np.int32),
        meta={"generator": "tapforge.train.procedural", "pan": pan.tolist()},
    )


def write_shards(
    out_dir: str,
    num_clips: int,
    clips_per_shard: int = 4,
    seed: int = 0,
    codec: str = "png",
    **clip_kwargs,
) -> list[str]:
    """Write ``num_clips`` procedural clips as ``out_dir/shard-%06d.tar``; returns the shard paths."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for shard in range(-(-num_clips // clips_per_shard)):
        path = os.path.join(out_dir, f"shard-{shard:06d}.tar")
        indices = range(shard * clips_per_shard, min(num_clips, (shard + 1) * clips_per_shard))

        def write(tmp: str, indices: range = indices) -> None:
            with wds.TarWriter(tmp) as sink:
                for index in indices:
                    sink.write(encode_clip(make_clip(rng, f"clip{seed:03d}_{index:06d}", **clip_kwargs), codec=codec))

        paths.append(atomic_write(path, write))
    return paths
