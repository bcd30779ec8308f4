"""Per-clip sampling on the CPU (numpy only): random sub-clips and tapnet-style query points.

Queries follow Kubric's point-tracking recipe: the budget of ``num_queries`` is shared out
evenly across objects (background = object 0 counts as one object), an object that has fewer
usable tracks than its share gives the rest to the others, every query lies on a frame where its
track is visible, and the query frames are spread over the whole clip. A ``background_share``
gives the static background (floor, dome: most of every frame) that share of the budget instead
of one object's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def subclip_indices(
    total_frames: int, num_frames: int, strides: Sequence[int], rng: np.random.Generator
) -> np.ndarray | None:
    """Frame indices of a random sub-clip of ``num_frames`` frames with a random stride.

    The stride is drawn from those of ``strides`` that fit into ``total_frames``; returns None
    when even the smallest stride does not fit (the clip is too short).
    """
    fitting = [s for s in strides if (num_frames - 1) * s + 1 <= total_frames]
    if not fitting:
        return None
    stride = int(rng.choice(fitting))
    span = (num_frames - 1) * stride + 1
    start = int(rng.integers(0, total_frames - span + 1))
    return start + stride * np.arange(num_frames)


def balanced_counts(available: np.ndarray, total: int) -> np.ndarray:
    """Share ``total`` samples out over groups holding ``available`` items each.

    Groups are visited from the smallest up; each takes ``round(remaining / groups_left)`` but
    never more than it has, so what small groups cannot take goes to the larger ones (Kubric's
    ``get_num_to_sample`` with every track usable). The result sums to ``min(total,
    available.sum())``.
    """
    available = np.asarray(available, dtype=np.int64)
    counts = np.zeros_like(available)
    remaining = int(total)
    order = np.argsort(available, kind="stable")
    for position, group in enumerate(order):
        want = int(round(remaining / (len(order) - position)))
        counts[group] = min(want, int(available[group]))
        remaining -= int(counts[group])
    return counts


def spread_query_frames(visible: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One visible frame per row of ``visible`` [Q,T], the rows' frames spread over ``[0, T)``.

    Each row gets a target time from a stratified draw (one per stratum of ``T / Q`` frames,
    strata shuffled) and takes its visible frame nearest to that target. Rows must have a
    visible frame.
    """
    num_rows, num_frames = visible.shape
    targets = (rng.permutation(num_rows) + rng.random(num_rows)) * (num_frames / max(num_rows, 1))
    distance = np.abs(np.arange(num_frames)[None, :] + 0.5 - targets[:, None])
    distance = distance + rng.random(distance.shape) * 1e-3  # random tie-break
    distance[~visible] = np.inf
    return np.argmin(distance, axis=1)


def object_counts(
    available: np.ndarray, is_background: np.ndarray, total: int, background_share: float | None
) -> np.ndarray:
    """Queries per object: ``balanced_counts``, or the background first takes ``background_share``
    of ``total`` (as far as it has tracks), the objects share the rest and what they cannot take
    goes back to the background."""
    if background_share is None or not is_background.any() or is_background.all():
        return balanced_counts(available, total)
    counts = np.zeros_like(np.asarray(available, dtype=np.int64))
    background = int(np.flatnonzero(is_background)[0])
    counts[background] = min(int(round(background_share * total)), int(available[background]))
    counts[~is_background] = balanced_counts(available[~is_background], total - counts[background])
    counts[background] = min(total - counts[~is_background].sum(), int(available[background]))
    return counts


def balanced_choice(
    candidates: np.ndarray,
    object_ids: np.ndarray,
    total: int,
    rng: np.random.Generator,
    background_share: float | None = None,
) -> np.ndarray:
    """Up to ``total`` distinct rows of ``candidates``, shared out over their objects (``object_ids`` of every row)
    by `object_counts`."""
    objects, inverse = np.unique(object_ids[candidates], return_inverse=True)
    counts = object_counts(np.bincount(inverse, minlength=len(objects)), objects == 0, total, background_share)
    return np.concatenate(
        [rng.choice(candidates[inverse == k], size=int(n), replace=False) for k, n in enumerate(counts) if n]
    )


def sample_queries(
    occluded: np.ndarray,
    object_ids: np.ndarray,
    num_queries: int,
    rng: np.random.Generator,
    background_share: float | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Choose ``num_queries`` (track, query frame) pairs from a clip's ground truth.

    Args:
      occluded: bool [N,T], True where a track is hidden or outside the frame.
      object_ids: int [N], the object each track lies on (0 = background).
      num_queries: how many queries to return.
      background_share: share of the queries on the background (object 0); None = Kubric's even
        share per object.
    Returns (track_index [Q] int64, query_frame [Q] int64), or None if no track is visible in
    any frame. Tracks are distinct while there are enough usable tracks; otherwise usable tracks
    are repeated (as Kubric pads with repeated rows).
    """
    usable = np.flatnonzero(~occluded.all(axis=1))
    if usable.size == 0:
        return None
    tracks = balanced_choice(usable, object_ids, num_queries, rng, background_share)
    if tracks.size < num_queries:
        tracks = np.concatenate([tracks, rng.choice(usable, size=num_queries - tracks.size, replace=True)])
    tracks = rng.permutation(tracks)
    frames = spread_query_frames(~occluded[tracks], rng)
    return tracks.astype(np.int64), frames.astype(np.int64)


def outside_frame(tracks, height: int, width: int):
    """bool [...]: True where an (x, y) position of ``tracks`` [..., 2] lies outside ``[0, width) x [0, height)``.

    Takes numpy arrays and torch tensors alike (the augmentation uses it on the device)."""
    x, y = tracks[..., 0], tracks[..., 1]
    return ~((x >= 0) & (x < width) & (y >= 0) & (y < height))
