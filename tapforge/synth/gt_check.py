"""How well ground-truth tracks agree with the renderer's own passes (used by tests and bench/gt.py).

The tracks come from poses and the camera (or, for deforming surfaces, the evaluated meshes); the passes come
from Cycles. At the pixel under each point, `render_pass_agreement` compares the two: segmentation and position
for visible points, what covers hidden ones, and the vector pass against the track motion. A multi-view scene is
checked view by view, each view's clip against its own passes (`view_agreement`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tapforge.synth.schema import Clip
from tapforge.synth.tracks import SKY_DEPTH, surface_spots


def _camera_points(passes: dict, clip: Clip) -> np.ndarray:
    """The position pass in OpenCV camera coordinates, [T,H,W,3]."""
    w2c = np.array(clip.camera["world_to_cam_opencv"])
    return np.einsum("tij,thwj->thwi", w2c[:, :3, :3], passes["position"]) + w2c[:, None, None, :3, 3]


def object_kind(obj) -> str:
    """How a `tapforge.synth.scene` object moves its surface: ``cloth``, ``soft_body``, ``animated`` (an `AnimatedMesh` or
    vertices given per frame), ``deformer`` (procedural `Deform`) or ``rigid``."""
    from tapforge.synth.scene import Cloth, SoftBody

    if isinstance(obj, Cloth):
        return "cloth"
    if isinstance(obj, SoftBody):
        return "soft_body"
    if obj.animated:
        return "animated"
    return "deformer" if obj.deform else "rigid"


def agreement_by_kind(clip: Clip, passes: dict, scene) -> dict[str, dict[str, float]]:
    """`render_pass_agreement` of the tracks on each kind of surface: the static background (floor and dome)
    and the objects by `object_kind` (kinds the clip has no tracks on are left out)."""
    kinds: dict[str, set[int]] = {"background": {0}}
    for obj in scene.objects:
        kinds.setdefault(object_kind(obj), set()).add(obj.instance_id)
    return {
        kind: render_pass_agreement(clip, passes, ids)
        for kind, ids in kinds.items()
        if np.isin(clip.object_ids, list(ids)).any()
    }


def surface_reconstruction_error(passes: dict, surfaces: dict) -> dict[int, float]:
    """For each deforming object (`tapforge.synth.tracks.Surface` by instance id): the 99th percentile, over its pixels in
    every frame, of the distance (metres) between the renderer's position pass and the spot its surface AOV names
    (triangle, barycentric weights) on the mesh the tracks use. Zero when the rendered surface is that mesh."""
    seg = passes["object_index"]
    positions = passes["position"].reshape(-1, 3).astype(np.float64)
    errors = {}
    for instance_id, surface in surfaces.items():
        flat = np.flatnonzero(seg.reshape(-1) == instance_id)
        frame = flat // (seg.shape[1] * seg.shape[2])
        face, weights = surface_spots(passes["surface"].reshape(-1, 3)[flat], len(surface.triangles))
        spots = np.einsum("nk,nkc->nc", weights, surface.vertices[frame[:, None], surface.triangles[face]])
        distance = np.linalg.norm(spots - positions[flat], axis=-1)
        errors[instance_id] = float(np.percentile(distance, 99)) if len(flat) else 0.0
    return errors


def render_pass_agreement(clip: Clip, passes: dict, object_ids=None) -> dict[str, float]:
    """Fractions measured at the pixel containing each track point (of the objects ``object_ids``, or all).

    - ``visible_segmentation_match``: visible points whose segmentation pass shows the tracked object;
    - ``visible_position_error_px``: median distance between the position pass and the tracked 3D point,
      in pixel footprints at the point's depth (visible points on their own object);
    - ``hidden_covered``: hidden in-frame points where another object or a nearer surface is shown;
    - ``hidden_plainly_visible``: hidden in-frame points where the pass shows this object at this very depth
      (within 1%), i.e. ground truth that wrongly hides a point;
    - ``flow_error_px``: median |vector-pass forward flow - track motion| at visible points.
    """
    if object_ids is not None:
        keep = np.isin(clip.object_ids, list(object_ids))
        clip = dataclasses.replace(
            clip,
            tracks=clip.tracks[keep],
            occluded=clip.occluded[keep],
            tracks_3d=clip.tracks_3d[keep],
            object_ids=clip.object_ids[keep],
        )
    height, width = clip.video.shape[1:3]
    xy, z = clip.tracks, clip.tracks_3d[..., 2]
    surface = _camera_points(passes, clip)
    seg = passes["object_index"]
    fx = np.array(clip.camera["K"])[0, 0]

    n, t = np.nonzero(~clip.occluded)
    x, y = np.floor(xy[n, t, 0]).astype(int), np.floor(xy[n, t, 1]).astype(int)
    same = seg[t, y, x] == clip.object_ids[n]
    error = np.linalg.norm(surface[t, y, x] - clip.tracks_3d[n, t], axis=-1) / (z[n, t] / fx)

    moving = same & (t < clip.num_frames - 1)
    nm, tm, ym, xm = n[moving], t[moving], y[moving], x[moving]
    both = ~clip.occluded[nm, tm + 1]
    motion = clip.tracks[nm, tm + 1] - clip.tracks[nm, tm]
    vector = passes["vector"][tm, ym, xm]
    flow = np.stack([-vector[:, 2], vector[:, 3]], -1)  # Blender 5: forward flow = (-Z, +W)
    flow_error = np.linalg.norm(flow - motion, axis=-1)[both]

    in_frame = (xy[..., 0] >= 0) & (xy[..., 0] < width) & (xy[..., 1] >= 0) & (xy[..., 1] < height) & (z > 0)
    hn, ht = np.nonzero(clip.occluded & in_frame)
    hx, hy = np.floor(xy[hn, ht, 0]).astype(int), np.floor(xy[hn, ht, 1]).astype(int)
    depth = surface[ht, hy, hx, 2]
    sky = passes["depth_z"][ht, hy, hx] >= SKY_DEPTH
    hidden_same = seg[ht, hy, hx] == clip.object_ids[hn]
    point_depth = z[hn, ht]
    covered = ~hidden_same | (~sky & (depth < point_depth * 0.99))
    plainly_visible = hidden_same & (np.abs(depth - point_depth) <= 0.01 * point_depth)
    return {
        "visible_points": float(len(n)),
        "visible_segmentation_match": _or_nan(np.mean, same),
        "visible_position_error_px": _or_nan(np.median, error[same]),
        "hidden_in_frame_points": float(len(hn)),
        "hidden_covered": _or_nan(np.mean, covered),
        "hidden_plainly_visible": _or_nan(np.mean, plainly_visible),
        "flow_error_px": _or_nan(np.median, flow_error),
        "median_motion_px": _or_nan(np.median, np.abs(motion[both])),
    }


def view_agreement(clips: list[Clip], rendered) -> list[dict[str, float]]:
    """`render_pass_agreement` of each view of a rendered scene (`tapforge.synth.pipeline.RenderedScene`): view
    v's clip (``make_clips``' order) against view v's passes."""
    return [render_pass_agreement(clip, rendered.view_passes(v)) for v, clip in enumerate(clips)]


def _or_nan(statistic, values: np.ndarray) -> float:
    """The statistic of the values, NaN (no warning) when there are none."""
    return float(statistic(values)) if values.size else float("nan")
