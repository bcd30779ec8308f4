"""Exact ground-truth point tracks (Kubric's point-tracking rules), vectorised numpy, reading the renderer's passes
one frame at a time (three passes over the frames: what each shows, the query pixels, the visibility test), so
memory holds the tracks and one frame whatever the clip's length.

Views (`compute_multiview_tracks`): one scene rendered by several cameras gets one set of surface points, drawn
over what all the views show (object-balanced over every view's pixels), then per view its own 2D tracks,
occlusion (by that view's depth and segmentation passes) and camera-frame 3D tracks, plus world tracks shared by
all views, the same rows in every view. A single camera (`compute_tracks`) is the one-view case of the same code.

Query points are sampled object-balanced (equal shares for every visible object and the static
background) among the pixels where each object is visible; the renderer's position pass at the pixel
centre gives the surface point, which is pinned to its object's frame and then moved with the exact
per-frame object poses and projected with the exact camera. A point is occluded when it is behind the
camera, outside the frame, facing away from the camera (by more than `GRAZING`), or when none of the 4 pixels
around it shows the same object at a depth within the tolerance. This is our variant of Kubric's test (Kubric
hides a point when the farthest of the 4 neighbours fails the 1% depth test or any shows another segment): one
agreeing neighbour keeps it visible, so a point next to an occluding edge is not hidden by the pixel beside it
(measured against the renderer's passes by bench/gt.py).

Deforming objects (`Surface`): the surface AOV at the query pixel says which triangle the renderer hit and
where on it (barycentric coordinates); the point is that spot of the deformed triangle in every frame. Its
facing-away test uses the deformed triangle's own normal: the renderer draws a triangle that faces the camera
whatever normal it shades with, so at silhouettes visibility follows the geometry (no such test on two-sided
sheets, seen from both sides).

Coordinates: tracks are (x, y) raster pixels, (0, 0) = top-left corner of the top-left pixel;
``tracks_3d`` are OpenCV camera coordinates (x right, y down, z forward), as in TAPVid-3D.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tapforge.synth.pass_frames import ArrayFrames, PassFrames

BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
SKY_DEPTH = 1e9  # Cycles' planar depth for rays that hit nothing is ~1e10
# cosine between the view ray and the normal under which a point counts as facing away: within ~3 degrees of the
# silhouette the pixel there shows the same surface at the same depth, so the depth test decides
GRAZING = 0.05


@dataclass
class TrackSet:
    tracks: np.ndarray  # float32 [N,T,2]
    occluded: np.ndarray  # bool [N,T]
    tracks_3d: np.ndarray  # float32 [N,T,3]
    object_ids: np.ndarray  # int32 [N]
    query: np.ndarray  # float32 [N,3] (t, y, x)


@dataclass
class Surface:
    """A deforming object's evaluated mesh over the clip, in world coordinates (read from Blender)."""

    vertices: np.ndarray  # float [T,V,3]
    triangles: np.ndarray  # int [F,3]
    two_sided: bool = False  # an open sheet, seen from both sides

    def follow(self, face: np.ndarray, barycentric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points and unit triangle normals [N,T,3] of the surface spots (triangle ``face`` [N], weights
        [N,3]). The normal follows the triangle's winding, which is how Blender orients its normals too; where a
        surface crumples, shading normals averaged over neighbours may point elsewhere, the winding does not."""
        corners = self.vertices[:, self.triangles[face]]  # [T,N,3,3]
        points = np.einsum("nk,tnkc->ntc", barycentric, corners)
        normals = np.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0]).transpose(1, 0, 2)
        return points, normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)


def surface_spots(face_u_v: np.ndarray, num_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """(triangle [N], barycentric weights [N,3]) of surface AOV values [N,3] = (face, u, v) at the points' pixels."""
    face_u_v = np.asarray(face_u_v, np.float64).reshape(-1, 3)
    face = np.round(face_u_v[:, 0]).astype(np.int64)
    u, v = face_u_v[:, 1], face_u_v[:, 2]
    weights = np.stack([1.0 - u - v, u, v], -1)
    if ((face < 0) | (face >= num_faces)).any() or (weights < -1e-3).any():
        raise RuntimeError("the surface AOV does not hold a triangle of the deforming object under its own pixels")
    weights = np.clip(weights, 0.0, None)
    return face, weights / weights.sum(-1, keepdims=True)


def world_to_opencv(cam_to_world: np.ndarray) -> np.ndarray:
    """World-to-camera transforms [...,4,4] in OpenCV axes (x right, y down, z forward) from Blender
    camera-to-world matrices [...,4,4] (the camera looks down -Z with +Y up)."""
    world_to_cam = np.linalg.inv(cam_to_world)
    world_to_cam[..., :3, :] = BLENDER_TO_OPENCV @ world_to_cam[..., :3, :]
    return world_to_cam


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """OpenCV camera points [...,3] -> raster pixel (x, y) [...,2]; points behind the camera give garbage."""
    z = np.where(np.abs(points_cam[..., 2:]) < 1e-9, 1e-9, points_cam[..., 2:])
    return points_cam[..., :2] / z * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]


@dataclass
class View:
    """One camera's render of the scene: its passes and its exact camera."""

    frames: PassFrames  # the view's passes, read frame by frame (`tapforge.synth.pass_frames`)
    cam_to_world: np.ndarray  # [T,4,4] Blender camera-to-world matrices
    K: np.ndarray  # [3,3] pixel intrinsics (OpenCV)


@dataclass
class MultiViewTrackSet:
    """The tracks of one set of surface points seen by several views: row n is the same point in every view."""

    views: list[TrackSet]  # per view: its 2D tracks, occlusion, camera-frame 3D tracks and queries
    world: np.ndarray  # float32 [N,T,3] world points (Z up, metres), shared by all views
    drawn_in: np.ndarray  # int32 [N] the view whose pixel gave each point (its query pixel)


@dataclass
class _Queries:
    """The sampled query pixels and what the passes say there."""

    view: np.ndarray  # [N] the view whose pixel was drawn
    frame: np.ndarray  # [N] query frame t0
    pixel: np.ndarray  # [N] flat pixel index y * width + x in that frame
    ids: np.ndarray  # [N] object id at the pixel
    world: np.ndarray  # [N,3] surface point (position pass)
    normal: np.ndarray  # [N,3] world normal
    surface: np.ndarray  # [N,3] (face, u, v) of the surface AOV (deforming objects)


def _frame_draws(counts: list[np.ndarray], num_tracks: int, rng: np.random.Generator):
    """Object-balanced draws over the clip: every object seen (and the background) gets the same expected share,
    drawn uniformly among its pixels over all frames (weight 1 / its pixel count). From the per-frame pixel counts
    by id: (query frame [N], the draw's remainder inside that frame [N], weight by id)."""
    per_frame = np.zeros((len(counts), max(len(c) for c in counts)))
    for t, c in enumerate(counts):
        per_frame[t, : len(c)] = c
    weight = 1.0 / np.maximum(per_frame.sum(0), 1)  # float64: the cdf must resolve single pixels
    mass = per_frame @ weight
    cdf = np.cumsum(mass)
    if cdf[-1] <= 0:
        raise RuntimeError("no frame of the clip shows a surface (only sky): there is nothing to track")
    draws = rng.uniform(0, cdf[-1], num_tracks)
    frame = np.searchsorted(cdf, draws, side="right").clip(0, len(counts) - 1)
    return frame, draws - (cdf[frame] - mass[frame]), weight


def _pick_pixels(aux: dict[str, np.ndarray], remainder: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Flat pixel indices of one frame's draws: the remainders walk its valid pixels weighted by object."""
    flat = np.flatnonzero(aux["depth_z"] < SKY_DEPTH)
    cdf = np.cumsum(weight[aux["object_index"].reshape(-1)[flat]])
    return flat[np.searchsorted(cdf, remainder, side="right").clip(0, len(flat) - 1)]


def _sample_queries(
    views: list[PassFrames], num_tracks: int, rng: np.random.Generator, scratch: Path, visit
) -> _Queries:
    """Pass 1 counts what every frame of every view shows (and keeps its ids and depth in ``scratch`` for the
    visibility test); pass 2 reads the query frames again for the passes at the drawn pixels. The draw runs over
    the views' frames one after the other (view 0's frames, then view 1's ...), so one view draws as a clip."""
    counts = []
    for v, frames in enumerate(views):
        for t in range(frames.num_frames):
            aux = frames.aux(t)
            if visit is not None:
                visit(v, t, aux)
            object_index, depth_z = aux["object_index"], aux["depth_z"]
            counts.append(np.bincount(object_index[depth_z < SKY_DEPTH].ravel()))
            np.save(scratch / f"ids_{v}_{t}.npy", object_index)
            np.save(scratch / f"depth_{v}_{t}.npy", depth_z)
    drawn, remainder, weight = _frame_draws(counts, num_tracks, rng)
    view, frame = np.divmod(drawn, views[0].num_frames)
    n = len(frame)
    q = _Queries(
        view,
        frame,
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.zeros((n, 3)),
        np.zeros((n, 3)),
        np.zeros((n, 3)),
    )
    for k in np.unique(drawn):
        rows = np.flatnonzero(drawn == k)
        aux = views[int(view[rows[0]])].aux(int(frame[rows[0]]))
        pixel = _pick_pixels(aux, remainder[rows], weight)
        q.pixel[rows], q.ids[rows] = pixel, aux["object_index"].reshape(-1)[pixel]
        q.world[rows] = aux["position"].reshape(-1, 3)[pixel]
        q.normal[rows] = aux["normal"].reshape(-1, 3)[pixel]
        if "surface" in aux:
            q.surface[rows] = aux["surface"].reshape(-1, 3)[pixel]
    return q


def _rigid_motion(
    object_to_x: np.ndarray, slot: np.ndarray, points: np.ndarray, normals: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Object-frame points and normals [N,3] -> frame x (a camera's, or the world) [N,T,3] at every frame, one GEMM
    per object; without ``normals`` only the points."""
    num_frames = object_to_x.shape[1]
    rotations = object_to_x[:, :, :3, :3].transpose(0, 3, 1, 2).reshape(len(object_to_x), 3, num_frames * 3)
    points_x = np.empty((len(points), num_frames, 3))
    normals_x = None if normals is None else np.empty_like(points_x)
    for k in np.unique(slot):
        rows = np.flatnonzero(slot == k)
        points_x[rows] = (points[rows] @ rotations[k]).reshape(-1, num_frames, 3) + object_to_x[k, :, :3, 3]
        if normals_x is not None:
            normals_x[rows] = (normals[rows] @ rotations[k]).reshape(-1, num_frames, 3)
    return points_x, normals_x


@dataclass
class _Deformed:
    """Tracks on one deforming object: its rows and their spots on the evaluated mesh over the clip (world)."""

    rows: np.ndarray  # [n]
    points: np.ndarray  # [n,T,3]
    normals: np.ndarray  # [n,T,3] unit triangle normals
    two_sided: bool


def compute_tracks(
    frames: PassFrames | dict[str, np.ndarray],
    object_to_world: np.ndarray,
    instance_ids: np.ndarray,
    cam_to_world: np.ndarray,
    K: np.ndarray,
    num_tracks: int,
    depth_tolerance: float,
    rng: np.random.Generator,
    surfaces: dict[int, Surface] | None = None,
    visit: Callable[[int, dict[str, np.ndarray]], None] | None = None,
) -> TrackSet:
    """Ground-truth tracks for one rendered scene, reading its passes one frame at a time (memory: the tracks and
    one frame, whatever the clip's length): the one-view case of `compute_multiview_tracks`.

    frames: the clip's passes (`tapforge.synth.pass_frames`; or a dict of stacked arrays): ``position`` world,
    ``normal`` world, ``object_index`` int, ``depth_z`` planar camera depth (pixels of other ids than 0 and
    ``instance_ids`` must not occur) (exact 1-sample passes sampled at pixel centres).
    object_to_world: [O,T,4,4] poses of the objects whose ids are ``instance_ids`` [O]; id 0 is static.
    surfaces: the deforming objects' meshes by instance id; then ``surface`` (face, u, v) is a pass too.
    visit: called with (t, passes of frame t) for every frame, in order, as the frames are first read.
    """
    if isinstance(frames, dict):
        frames = ArrayFrames(frames)
    each = None if visit is None else (lambda v, t, aux: visit(t, aux))
    views = [View(frames, cam_to_world, K)]
    return compute_multiview_tracks(
        views, object_to_world, instance_ids, num_tracks, depth_tolerance, rng, surfaces, each
    ).views[0]


def compute_multiview_tracks(
    views: list[View],
    object_to_world: np.ndarray,
    instance_ids: np.ndarray,
    num_tracks: int,
    depth_tolerance: float,
    rng: np.random.Generator,
    surfaces: dict[int, Surface] | None = None,
    visit: Callable[[int, int, dict[str, np.ndarray]], None] | None = None,
) -> MultiViewTrackSet:
    """Ground-truth tracks of one scene seen by ``views`` (same frames and resolution): one set of surface points,
    drawn object-balanced over the pixels of every view's frames, then per view its 2D tracks, occlusion by its
    own passes and camera-frame 3D tracks, and the world tracks shared by all views.

    A point's query is its drawn pixel in the view it was drawn from (visible there by construction); in another
    view, the frame nearest to that one where the view sees it, at its track there (NaN where the view never sees
    it). ``visit`` is called with (view, t, passes of frame t) for every frame of every view, as first read; the
    other arguments are `compute_tracks`'s.
    """
    num_frames = views[0].frames.num_frames
    if any(view.frames.num_frames != num_frames for view in views):
        raise ValueError("the views of one scene must have the same frames")
    with tempfile.TemporaryDirectory(prefix="tapforge-gt-") as tmp:
        scratch = Path(tmp)
        q = _sample_queries([view.frames for view in views], num_tracks, rng, scratch, visit)
        size = np.load(scratch / "ids_0_0.npy").shape
        ids, t0 = q.ids, q.frame

        # object-to-world transforms per (object, frame); slot 0 is the static background (identity pose)
        poses = np.concatenate([np.tile(np.eye(4), (1, num_frames, 1, 1)), object_to_world], 0)
        lookup = np.zeros(int(max(ids.max(initial=0), instance_ids.max(initial=0))) + 1, int)
        lookup[instance_ids] = np.arange(len(instance_ids)) + 1
        slot = lookup[ids]
        pose_at_query = poses[slot, t0]
        inv_query = np.linalg.inv(pose_at_query)
        local = (inv_query[:, :3, :3] * q.world[:, None, :]).sum(-1) + inv_query[:, :3, 3]
        local_normal = (pose_at_query[:, :3, :3] * q.normal[:, :, None]).sum(1)  # R^T n
        deformed = []
        for instance_id, surface in (surfaces or {}).items():
            rows = np.flatnonzero(ids == instance_id)
            if len(rows):
                face, weights = surface_spots(q.surface[rows], len(surface.triangles))
                deformed.append(_Deformed(rows, *surface.follow(face, weights), surface.two_sided))
        world, _ = _rigid_motion(poses, slot, local)
        for spots in deformed:
            world[spots.rows] = spots.points
        tracks = [
            _view_tracks(v, view, q, poses, slot, local, local_normal, deformed, scratch, size, depth_tolerance)
            for v, view in enumerate(views)
        ]
    return MultiViewTrackSet(tracks, world.astype(np.float32), q.view.astype(np.int32))


def _view_tracks(
    v: int,
    view: View,
    q: _Queries,
    poses: np.ndarray,
    slot: np.ndarray,
    local: np.ndarray,
    local_normal: np.ndarray,
    deformed: list[_Deformed],
    scratch: Path,
    size: tuple[int, int],
    depth_tolerance: float,
) -> TrackSet:
    """One view's tracks of the sampled points: projected with its camera, occluded by its own passes (pass 3)."""
    height, width = size
    ids, t0 = q.ids, q.frame
    world_to_cam = world_to_opencv(view.cam_to_world)
    object_to_cam = world_to_cam[None] @ poses  # [O+1,T,4,4]
    points_cam, normal_cam = _rigid_motion(object_to_cam, slot, local, local_normal)
    two_sided = np.zeros(len(ids), bool)
    for spots in deformed:
        rotation, shift = world_to_cam[:, :3, :3], world_to_cam[:, :3, 3]
        points_cam[spots.rows] = np.einsum("tij,ntj->nti", rotation, spots.points) + shift
        normal_cam[spots.rows] = np.einsum("tij,ntj->nti", rotation, spots.normals)
        two_sided[spots.rows] = spots.two_sided

    xy = project(points_cam, view.K)
    z = points_cam[..., 2]
    behind = z <= 1e-6
    outside = (xy[..., 0] < 0) | (xy[..., 0] >= width) | (xy[..., 1] < 0) | (xy[..., 1] >= height)
    # the camera centre is the origin; within GRAZING of the silhouette the depth test decides instead
    cosine = (normal_cam * points_cam).sum(-1) / np.maximum(np.linalg.norm(points_cam, axis=-1), 1e-12)
    facing_away = (cosine > GRAZING) & ~two_sided[:, None]
    hidden = np.empty(z.shape, bool)
    for t in range(z.shape[1]):  # pass 3: each frame's ids and depth against the points
        object_index, depth_z = np.load(scratch / f"ids_{v}_{t}.npy"), np.load(scratch / f"depth_{v}_{t}.npy")
        hidden[:, t] = ~_visible_in_4_neighbours(xy[:, t], z[:, t], ids, object_index, depth_z, depth_tolerance)
    occluded = behind | outside | facing_away | hidden
    drawn = np.flatnonzero(q.view == v)
    # the query frame is visible by construction (the pixel showed this point)
    occluded[drawn, t0[drawn]] = False
    query = _nearest_visible(xy, occluded, t0)
    y0, x0 = np.divmod(q.pixel[drawn], width)
    query[drawn] = np.stack([t0[drawn], y0 + 0.5, x0 + 0.5], -1)
    return TrackSet(
        xy.astype(np.float32), occluded, points_cam.astype(np.float32), ids.astype(np.int32), query.astype(np.float32)
    )


def _nearest_visible(xy: np.ndarray, occluded: np.ndarray, t0: np.ndarray) -> np.ndarray:
    """(t, y, x) [N,3] of each track at its visible frame nearest to ``t0`` (the earlier one on a tie); NaN for a
    track that is never visible."""
    num_frames = occluded.shape[1]
    distance = np.where(occluded, 2 * num_frames, np.abs(np.arange(num_frames) - t0[:, None]))
    t = distance.argmin(1)
    rows = np.arange(len(t))
    query = np.stack([t, xy[rows, t, 1], xy[rows, t, 0]], -1).astype(np.float64)
    query[occluded.all(1)] = np.nan
    return query


def _visible_in_4_neighbours(
    xy: np.ndarray, z: np.ndarray, ids: np.ndarray, object_index: np.ndarray, depth_z: np.ndarray, tolerance: float
) -> np.ndarray:
    """In one frame (points xy [N,2], depth z [N]; the frame's object_index and depth_z [H,W]): True where the
    rendered surface around the point is its object at its depth (within ``tolerance``): one of the 4 pixel
    centres around it shows it there, or all 4 show its object and their depth, interpolated to the point
    (bilinearly in 1 / depth, exact for a plane), is the point's. The second case keeps points on surfaces seen at
    a grazing angle, whose depth changes by more than the tolerance from pixel to pixel."""
    height, width = object_index.shape
    fx = np.floor(xy[..., 0] - 0.5).astype(np.int64)  # pixel-centre coordinates
    fy = np.floor(xy[..., 1] - 0.5).astype(np.int64)
    ax, ay = xy[..., 0] - 0.5 - fx, xy[..., 1] - 0.5 - fy  # position between the 4 centres, [0, 1)
    seg_flat, depth_flat = object_index.reshape(-1), depth_z.reshape(-1)
    visible = np.zeros(z.shape, bool)
    all_same = np.ones(z.shape, bool)
    inverse_depth = np.zeros(z.shape)
    for dy in (0, 1):
        for dx in (0, 1):
            index = np.clip(fy + dy, 0, height - 1) * width + np.clip(fx + dx, 0, width - 1)
            depth = depth_flat[index]
            same = seg_flat[index] == ids
            visible |= same & (np.abs(z - depth) <= tolerance * depth)
            all_same &= same
            inverse_depth += (ax if dx else 1 - ax) * (ay if dy else 1 - ay) / np.maximum(depth, 1e-9)
    interpolated = 1.0 / np.maximum(inverse_depth, 1e-12)
    return visible | (all_same & (np.abs(z - interpolated) <= tolerance * interpolated))
