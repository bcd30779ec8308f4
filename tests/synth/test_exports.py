"""`synth export`: each format read back the way its own trainer's loader reads it, checked against the shard.

Each ``read_*`` below follows that project's dataset class (file names, keys, transposes, inversions), so these
tests are the formats' specification: a transposed matrix, an inverted flag or a z-depth/distance mix-up fails.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import render_command

SETS = [
    "render.resolution=64",
    "render.samples=2",
    "scene.num_frames=5",
    "tracks.num_tracks=96",
    "outputs.passes=[depth,segmentation]",
    "scene.camera=linear_movement_linear_lookat",
    "scene.num_static_objects=[2,3]",
    "scene.num_dynamic_objects=[1,2]",
]


def _render(out: Path, sets: list[str], *extra: str) -> Path:
    result = subprocess.run(render_command(out, 1, sets, *extra), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A panning clip with a moving object (depth and segmentation passes), the same without the depth pass, and
    one movi_deform clip."""
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    root = tmp_path_factory.mktemp("exports")
    no_depth = [s for s in SETS if not s.startswith("outputs.passes")] + ["outputs.passes=[]"]
    deform = SETS + ["scene.deforming_share=1.0", "scene.num_cloths=1"]
    return {
        "pan": _render(root / "pan", SETS),
        "no_depth": _render(root / "no_depth", no_depth),
        "deform": _render(root / "deform", deform, "--config", "movi_deform"),
    }


def _clip(dataset: Path):
    from tapforge.synth.shards import iter_dataset_clips

    (clip,) = list(iter_dataset_clips(dataset))
    return clip


def _export(dataset: Path, name: str, out: Path) -> dict:
    from tapforge.synth.exports import export_dataset

    return export_dataset(dataset, name, out)


def _project(K: np.ndarray, points: np.ndarray) -> np.ndarray:
    uvw = points @ K.T
    return uvw[..., :2] / uvw[..., 2:]


def _check_depth_at_tracks(depth: np.ndarray, tracks_tn: np.ndarray, visible_tn: np.ndarray, expected_tn):
    """Depth maps [T,H,W] read at the pixel under each visible point match the point's depth ``expected_tn``: the
    maps are sampled at pixel centres, so most agree to a fraction of a percent (edges less)."""
    t, n = np.nonzero(visible_tn)
    x = np.floor(tracks_tn[t, n, 0]).astype(int)
    y = np.floor(tracks_tn[t, n, 1]).astype(int)
    inside = (x >= 0) & (x < depth.shape[2]) & (y >= 0) & (y < depth.shape[1])
    t, n, x, y = t[inside], n[inside], x[inside], y[inside]
    relative = np.abs(depth[t, y, x] - expected_tn[t, n]) / expected_tn[t, n]
    assert len(relative) > 20
    assert np.median(relative) < 0.01 and np.mean(relative < 0.03) > 0.9


def _check_extrinsics(w2c: np.ndarray, world_tn: np.ndarray, camera_tn: np.ndarray):
    mapped = np.einsum("tij,tnj->tni", w2c[:, :3, :3], world_tn) + w2c[:, None, :3, 3]
    np.testing.assert_allclose(mapped, camera_tn, atol=1e-3)


# --- CoTracker: cotracker/datasets/kubric_movif_dataset.py (KubricMovifDataset.getitem_helper) ---


def read_cotracker(root: Path, seq: str) -> dict:
    folder = root / seq
    rgbs = np.stack([np.array(Image.open(folder / "frames" / f)) for f in sorted(os.listdir(folder / "frames"))])
    annot = np.load(folder / f"{seq}.npy", allow_pickle=True).item()
    traj_2d = np.transpose(annot["coords"], (1, 0, 2))  # [T,N,2]
    visibility = np.transpose(np.logical_not(annot["visibility"]), (1, 0))  # the loader's inversion
    depths = None
    if (folder / "depths").is_dir():
        depths = np.stack([np.load(folder / "depths" / f) for f in sorted(os.listdir(folder / "depths"))])
    return {"rgbs": rgbs, "traj_2d": traj_2d, "visibility": visibility, "annot": annot, "depths": depths}


def _kubric_camera(camera: dict, width: int, height: int):
    """Kubric's camera record -> (K, OpenCV world-to-camera [T,4,4]): fx from millimetres, the (w, x, y, z)
    quaternions as Blender camera-to-world rotations, flipped to OpenCV's axes."""
    fx = camera["focal_length"] / camera["sensor_width"] * width
    K = np.array([[fx, 0, width / 2], [0, fx, height / 2], [0, 0, 1]])
    w, x, y, z = np.moveaxis(np.asarray(camera["quaternions"], np.float64), -1, 0)
    rotation = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )
    c2w = np.tile(np.eye(4), (len(w), 1, 1))
    c2w[:, :3, :3] = rotation @ np.diag([1.0, -1.0, -1.0])  # Blender camera (-Z forward, +Y up) -> OpenCV
    c2w[:, :3, 3] = camera["positions"]
    return K, np.linalg.inv(c2w)


@pytest.mark.parametrize("which", ["pan", "deform"])
def test_cotracker_round_trip(datasets, tmp_path, which):
    clip = _clip(datasets[which])
    summary = _export(datasets[which], "cotracker", tmp_path)
    assert summary["written"] == 1 and not summary["notes"]
    data = read_cotracker(tmp_path, clip.key)
    np.testing.assert_array_equal(data["rgbs"], clip.video)
    np.testing.assert_array_equal(data["traj_2d"], clip.tracks.transpose(1, 0, 2))
    np.testing.assert_array_equal(data["visibility"], ~clip.occluded.T)
    height, width = clip.video.shape[1:3]
    K, w2c = _kubric_camera(data["annot"]["camera"], width, height)
    camera_points = clip.tracks_3d.transpose(1, 0, 2).astype(np.float64)
    np.testing.assert_allclose(data["annot"]["coords_depth"].T, camera_points[..., 2], rtol=1e-6)
    visible = data["visibility"]
    assert np.abs(_project(K, camera_points) - data["traj_2d"])[visible].max() < 0.01
    # the camera moves: every frame's pose maps the world points (from the first frame's camera) onto the camera
    assert np.ptp(np.asarray(data["annot"]["camera"]["positions"]), axis=0).max() > 0.05
    world = np.einsum("tij,tnj->tni", np.linalg.inv(w2c)[:, :3, :3], camera_points) + np.linalg.inv(w2c)[:, None, :3, 3]
    static = clip.object_ids == 0
    np.testing.assert_allclose(world[:, static], np.broadcast_to(world[:1, static], world[:, static].shape), atol=2e-3)
    _check_depth_at_tracks(data["depths"], data["traj_2d"], visible, np.linalg.norm(camera_points, axis=-1))
    moved = np.linalg.norm(world[-1] - world[0], axis=-1)
    assert moved[~static].max() > 0.01, "the test clip needs an object that moves"


def test_cotracker_without_depth_pass_is_noted(datasets, tmp_path):
    summary = _export(datasets["no_depth"], "cotracker", tmp_path)
    assert summary["notes"] == ["1 clips have no depth pass: exported without depth maps (the rest is complete)"]
    clip = _clip(datasets["no_depth"])
    data = read_cotracker(tmp_path, clip.key)
    assert data["depths"] is None and "coords_depth" in data["annot"]


# --- PointOdyssey / PIPs++: PointOdysseyDataset.__init__ and getitem_helper ---


def read_pointodyssey(root: Path, seq: str) -> dict:
    folder = root / seq
    info = np.load(folder / "info.npz", allow_pickle=True)
    num_frames = len(os.listdir(folder / "rgbs"))
    full_idx = np.arange(num_frames)
    anno = np.load(folder / "anno.npz", allow_pickle=True)
    depths = []
    for idx in full_idx:  # cv2.imread(path, IMREAD_ANYDEPTH) of a uint16 PNG, then / 65535 * 1000
        depths.append(
            np.array(Image.open(folder / "depths" / f"depth_{idx:05d}.png")).astype(np.float32) / 65535.0 * 1000.0
        )
    return {
        "info_trajs_3d": info["trajs_3d"],
        "rgbs": np.stack([np.array(Image.open(folder / "rgbs" / f"rgb_{i:05d}.jpg"))[:, :, :3] for i in full_idx]),
        "masks": np.stack([np.array(Image.open(folder / "masks" / f"mask_{i:05d}.png")) for i in full_idx]),
        "depths": np.stack(depths),
        "trajs_2d": anno["trajs_2d"][full_idx].astype(np.float32),
        "visibs": anno["visibs"][full_idx].astype(np.float32),
        "valids": anno["valids"][full_idx].astype(np.float32),
        "trajs_world": anno["trajs_3d"][full_idx].astype(np.float32),
        "pix_T_cams": anno["intrinsics"][full_idx].astype(np.float32),
        "cams_T_world": anno["extrinsics"][full_idx].astype(np.float32),
    }


@pytest.mark.parametrize("which", ["pan", "deform"])
def test_pointodyssey_round_trip(datasets, tmp_path, which):
    clip = _clip(datasets[which])
    _export(datasets[which], "pointodyssey", tmp_path)
    data = read_pointodyssey(tmp_path, clip.key)
    assert tuple(data["info_trajs_3d"]) == (clip.num_frames, clip.num_tracks, 3)
    assert data["rgbs"].shape == clip.video.shape
    assert np.abs(data["rgbs"].astype(int) - clip.video).mean() < 8  # JPEG
    np.testing.assert_array_equal(data["masks"], clip.segmentation)
    np.testing.assert_array_equal(data["trajs_2d"], clip.tracks.transpose(1, 0, 2))
    np.testing.assert_array_equal(data["visibs"] > 0, ~clip.occluded.T)
    camera_points = clip.tracks_3d.transpose(1, 0, 2).astype(np.float64)
    # trajs_cam = apply_4x4(cams_T_world, trajs_world); trajs_pix = apply_pix_T_cam(pix_T_cams, trajs_cam)
    trajs_cam = (
        np.einsum("tij,tnj->tni", data["cams_T_world"][:, :3, :3], data["trajs_world"])
        + data["cams_T_world"][:, None, :3, 3]
    )
    np.testing.assert_allclose(trajs_cam, camera_points, atol=2e-3)
    _check_extrinsics(data["cams_T_world"].astype(np.float64), data["trajs_world"].astype(np.float64), camera_points)
    trajs_pix = np.stack([_project(K, p) for K, p in zip(data["pix_T_cams"].astype(np.float64), trajs_cam)])
    visible = data["visibs"] > 0
    assert (data["valids"] > 0)[visible].all()
    assert np.abs(trajs_pix - data["trajs_2d"])[visible].max() < 0.01
    # z-depth (camera z) in the PNG's scale: 1/65.535 m per step
    _check_depth_at_tracks(data["depths"], data["trajs_2d"], visible, np.maximum(camera_points[..., 2], 1e-6))
    if which == "pan":
        static = clip.object_ids == 0
        world = data["trajs_world"]
        np.testing.assert_allclose(
            world[:, static], np.broadcast_to(world[:1, static], world[:, static].shape), atol=2e-3
        )
        assert np.abs(np.diff(data["cams_T_world"], axis=0)).max() > 1e-3, "the test clip's camera must move"


def test_pointodyssey_needs_the_depth_pass(datasets, tmp_path):
    from tapforge.base.errors import TapforgeError

    with pytest.raises(TapforgeError, match="no depth pass.*outputs.passes=\\[depth,segmentation\\]"):
        _export(datasets["no_depth"], "pointodyssey", tmp_path)


# --- TAPVid-3D: tapnet/tapvid3d/evaluation/evaluate_model.py (evaluate_data_source) ---


def read_tapvid3d(path: Path) -> dict:
    with open(path, "rb") as in_f:
        in_npz = np.load(in_f, allow_pickle=True)
        data = {key: in_npz[key] for key in ("images_jpeg_bytes", "queries_xyt", "tracks_XYZ", "visibility")}
        data["intrinsics_params"] = in_npz["fx_fy_cx_cy"]
        data["extrinsics_w2c"] = in_npz["extrinsics_w2c"]
    data["video"] = np.stack([np.array(Image.open(io.BytesIO(b)).convert("RGB")) for b in data["images_jpeg_bytes"]])
    data["query_points"] = data["queries_xyt"][..., ::-1]  # (t, y, x), as the metrics take them
    return data


@pytest.mark.parametrize("which", ["pan", "deform"])
def test_tapvid3d_round_trip(datasets, tmp_path, which):
    clip = _clip(datasets[which])
    _export(datasets[which], "tapvid3d", tmp_path)
    data = read_tapvid3d(tmp_path / f"{clip.key}.npz")
    keep = (~clip.occluded).any(axis=1)
    assert data["video"].shape == clip.video.shape
    np.testing.assert_array_equal(data["visibility"], ~clip.occluded[keep].T)
    np.testing.assert_array_equal(data["tracks_XYZ"], clip.tracks_3d[keep].transpose(1, 0, 2))
    fx, fy, cx, cy = data["intrinsics_params"].astype(np.float64)
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    projected = _project(K, data["tracks_XYZ"].astype(np.float64))
    tracks = clip.tracks[keep].transpose(1, 0, 2)
    assert np.abs(projected - tracks)[data["visibility"]].max() < 0.01
    t, y, x = data["query_points"].T
    t = t.astype(int)
    assert data["visibility"][t, np.arange(len(t))].all()
    np.testing.assert_allclose(np.stack([x, y], -1), tracks[t, np.arange(len(t))], atol=1e-5)
    # a static point's world position, from the first frame, lands on its camera point in every frame
    w2c = data["extrinsics_w2c"].astype(np.float64)
    static = clip.object_ids[keep] == 0
    camera_points = data["tracks_XYZ"].astype(np.float64)[:, static]
    world = camera_points[0] @ np.linalg.inv(w2c[0])[:3, :3].T + np.linalg.inv(w2c[0])[:3, 3]
    _check_extrinsics(w2c, np.broadcast_to(world, camera_points.shape), camera_points)
    assert np.abs(np.diff(w2c, axis=0)).max() > 1e-3, "the test clip's camera must move"


# --- MVTracker: mvtracker/datasets/kubric_multiview_dataset.py (KubricMultiViewDataset: __init__'s scene list,
# getitem_raw_datapoint, depth_from_euclidean_to_z) ---


def read_mvtracker(root: Path) -> list[dict]:
    """Every scene of an MV-Kubric folder, read as the loader reads it (scene folders sorted by int(name), views
    by int(suffix), frame files by name; K and the Blender poses turned into OpenCV pixels and world-to-camera)."""
    names = sorted((d for d in os.listdir(root) if (root / d).is_dir() and d[0] not in "._"), key=int)
    scenes = []
    for name in names:
        scene = root / name
        tracks_3d = np.load(scene / "tracks_3d.npz")["tracks_3d"]
        ids = np.load(scene / "tracks_segmentation_ids.npz")["tracks_segmentation_ids"]
        objects = json.loads((scene / "tracked_objects.json").read_text())
        cameras = np.load(scene / "cameras.npz")
        n_frames, n_tracks = tracks_3d.shape[:2]
        n_views = cameras["camera_positions"].shape[0]
        assert tracks_3d.shape == (n_frames, n_tracks, 3) and ids.shape == (n_tracks,)
        assert cameras["lookat_positions"].shape == (n_views, 3)
        folders = sorted((d for d in os.listdir(scene) if d.startswith("view_")), key=lambda d: int(d.split("_")[-1]))
        assert len(folders) == n_views
        views = []
        for folder in folders:
            path = scene / folder
            files = sorted(os.listdir(path))
            rgba = np.stack([np.array(Image.open(path / f)) for f in files if f.startswith("rgba_")])
            depth = np.stack([np.array(Image.open(path / f))[..., None] for f in files if f.startswith("depth_")])
            assert len(rgba) == n_frames and len(depth) == n_frames
            tracks_2d = np.load(path / "tracks_2d.npz")
            metadata = json.loads((path / "metadata.json").read_text())
            json.loads((path / "object_id_to_segmentation_id.json").read_text())
            camera = metadata["camera"]
            K = np.asarray(camera["K"], np.float64)
            w, x, y, z = np.moveaxis(np.asarray(camera["quaternions"], np.float64), -1, 0)  # kornia's (w, x, y, z)
            rotation = np.stack(
                [
                    np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
                    np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
                    np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
                ],
                -2,
            )
            extrinsics_inv = np.zeros((n_frames, 4, 4))
            extrinsics_inv[:, :3, :3], extrinsics_inv[:, :3, 3] = rotation, camera["positions"]
            extrinsics_inv[:, 3, 3] = 1
            extrinsics = np.linalg.inv(extrinsics_inv)[:, :3, :]
            width, height = metadata["metadata"]["resolution"]
            views.append(
                {
                    "rgbs": rgba[..., :3],
                    "depth_z": _mvtracker_depth_to_z(depth, camera["sensor_width"], camera["focal_length"]),
                    "tracks_2d": tracks_2d["tracks_2d"],
                    "visibility": ~tracks_2d["occlusion"],
                    "intrinsics": np.diag([width, height, 1]) @ K @ np.diag([1, -1, -1]),
                    "extrinsics": np.diag([1, -1, -1]) @ extrinsics,
                }
            )
        scenes.append({"name": name, "tracks_3d": tracks_3d, "ids": ids, "objects": objects, "views": views})
    return scenes


def _mvtracker_depth_to_z(depth: np.ndarray, sensor_width: float, focal_length: float) -> np.ndarray:
    """The loader's depth_from_euclidean_to_z: pixel centres on the sensor in millimetres, the centre at W/2."""
    _, h, w, _ = depth.shape
    sensor_height = sensor_width / w * h
    x = (np.arange(-w / 2, w / 2, dtype=np.float32) + 0.5) / w * sensor_width
    y = (np.arange(-h / 2, h / 2, dtype=np.float32) + 0.5) / h * sensor_height
    x, y = np.meshgrid(x, y, indexing="xy")
    return depth / np.sqrt(1 + (x**2 + y**2) / focal_length**2)[..., None]


@pytest.fixture(scope="module")
def stereo(tmp_path_factory):
    """Two panning MOVi scenes, each seen by a stereo pair on its moving camera path (depth pass on)."""
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    sets = [s for s in SETS if not s.startswith("render.resolution")] + ["render.resolution=[48,40]"]
    sets += ["render.views.rig=stereo", "render.views.baseline=0.6", "render.views.convergence=8"]
    return _render_scenes(tmp_path_factory.mktemp("exports") / "stereo", 2, sets)


def _render_scenes(out: Path, num_scenes: int, sets: list[str]) -> Path:
    result = subprocess.run(render_command(out, num_scenes, sets), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("which", ["stereo", "pan"])
def test_mvtracker_round_trip(stereo, datasets, tmp_path, which):
    from tapforge.synth.exports.common import tracks_world
    from tapforge.synth.shards import iter_dataset_clips

    dataset = stereo if which == "stereo" else datasets["pan"]
    clips = list(iter_dataset_clips(dataset))
    summary = _export(dataset, "mvtracker", tmp_path)
    num_views = 2 if which == "stereo" else 1
    assert summary["written"] == len(clips) // num_views and not summary["notes"]
    scenes = read_mvtracker(tmp_path)
    assert [s["name"] for s in scenes] == [str(c.meta["scene_index"]) for c in clips[::num_views]]
    for k, scene in enumerate(scenes):
        views = clips[k * num_views : (k + 1) * num_views]
        first = views[0]
        world = first.tracks_world if which == "stereo" else tracks_world(first).transpose(1, 0, 2)
        # float64 as the generator wrote them: the loader's projection check (torch) does not mix dtypes
        assert scene["tracks_3d"].dtype == np.float64 and scene["views"][0]["tracks_2d"].dtype == np.float64
        np.testing.assert_allclose(scene["tracks_3d"], world.transpose(1, 0, 2), atol=1e-5)
        np.testing.assert_array_equal(scene["ids"], first.object_ids)
        assert set(scene["objects"]["ids"]) >= set(first.object_ids.tolist())
        for clip, view in zip(views, scene["views"]):
            np.testing.assert_array_equal(view["rgbs"], clip.video)
            np.testing.assert_array_equal(view["tracks_2d"], clip.tracks.transpose(1, 0, 2))
            np.testing.assert_array_equal(view["visibility"], ~clip.occluded.T)
            np.testing.assert_allclose(view["intrinsics"], np.asarray(clip.camera["K"]), atol=1e-9)
            np.testing.assert_allclose(
                view["extrinsics"], np.asarray(clip.camera["world_to_cam_opencv"])[:, :3, :], atol=1e-9
            )
            # the loader's sanity check, on every point and frame: intrinsics @ extrinsics @ world = tracks_2d
            homogeneous = np.concatenate([scene["tracks_3d"], np.ones_like(scene["tracks_3d"][..., :1])], -1)
            camera_points = np.einsum("tij,tnj->tni", view["extrinsics"], homogeneous)
            front = camera_points[..., 2] > 0.1
            assert np.abs(_project(view["intrinsics"], camera_points) - view["tracks_2d"])[front].max() < 1e-3
            _check_depth_at_tracks(
                view["depth_z"][..., 0], view["tracks_2d"], view["visibility"], camera_points[..., 2]
            )
        if which == "stereo":
            positions = [np.asarray(c.camera["cam_to_world_blender"])[:, :3, 3] for c in views]
            np.testing.assert_allclose(np.linalg.norm(positions[1] - positions[0], axis=-1), 0.6, atol=1e-6)
            assert np.ptp(positions[0], axis=0).max() > 0.05, "the test scene's cameras must move"


def test_mvtracker_needs_the_depth_pass(datasets, tmp_path):
    from tapforge.base.errors import TapforgeError

    with pytest.raises(TapforgeError, match="no depth pass.*outputs.passes"):
        _export(datasets["no_depth"], "mvtracker", tmp_path)


def test_export_is_resumable_and_writes_a_readme(datasets, tmp_path):
    clip = _clip(datasets["pan"])
    first = _export(datasets["pan"], "tapvid3d", tmp_path)
    mtime = (tmp_path / f"{clip.key}.npz").stat().st_mtime_ns
    stale = tmp_path / "scene-0000001" / f".anno.npz.{'a1b2c3d4'}.tmp"  # as a killed atomic write leaves it
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    again = _export(datasets["pan"], "tapvid3d", tmp_path)
    assert (first["written"], again["written"], again["kept"]) == (1, 0, 1)
    assert (tmp_path / f"{clip.key}.npz").stat().st_mtime_ns == mtime
    assert not stale.exists()
    readme = (tmp_path / "README.md").read_text()
    assert "tracks_XYZ" in readme and "Dropped (the format cannot hold it): depth" in readme


def test_export_command_line(datasets, tmp_path):
    from tapforge.cli import main

    assert main(["synth", "export", str(datasets["pan"]), "--to", "cotracker", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "README.md").is_file()


@pytest.mark.parametrize("where", ["same", "inside", "above"])
def test_an_export_overlapping_its_dataset_is_refused_before_anything_is_written(tmp_path, where):
    from tapforge.base.errors import TapforgeError
    from tapforge.synth.exports import export_dataset

    dataset = tmp_path / "data"
    dataset.mkdir()
    (dataset / "manifest.json").write_text("{}")
    out = {"same": dataset, "inside": dataset / "export", "above": tmp_path}[where]
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(TapforgeError, match="overlaps the dataset .*export into a folder of its own"):
        export_dataset(dataset, "cotracker", out)
    assert sorted(tmp_path.rglob("*")) == before
