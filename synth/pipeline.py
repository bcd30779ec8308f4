"""One scene end to end: recipe -> meshes -> physics -> Blender build + render -> ground truth -> `Clip`."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from synth.config import config_hash
from synth.recipe import intrinsics, look_at_matrices, sample_scene
from synth.schema import Clip
from synth.tracks import BLENDER_TO_OPENCV, SKY_DEPTH, compute_tracks

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
HDRI_SUFFIXES = (".hdr", ".exr")


def scene_seed(base_seed: int, scene_index: int) -> int:
    """Per-scene seed: a stable hash of (config seed, global scene index)."""
    digest = hashlib.sha256(f"tapforge-scene:{base_seed}:{scene_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def scene_key(scene_index: int) -> str:
    return f"scene-{scene_index:07d}"


def _files(folder: str | None, suffixes: tuple[str, ...]) -> list[str]:
    if not folder:
        return []
    return sorted(str(p) for p in Path(folder).expanduser().iterdir() if p.suffix.lower() in suffixes)


class SceneRenderer:
    """Renders scenes of one config in one Blender session (Blender starts once, not per scene).

    `threads` (Cycles threads) overrides ``render.threads`` without changing the config hash: the thread
    count does not change the pixels, so it is not part of the dataset's identity.
    """

    def __init__(self, config: dict, threads: int | None = None):
        from synth.blender_scene import BlenderRenderer

        self.config = config
        self.hash = config_hash(config)
        assets = config["assets"]
        self.textures = _files(assets["textures_dir"], IMAGE_SUFFIXES)
        self.hdris = _files(assets["hdri_dir"], HDRI_SUFFIXES)
        self.asset_ids: list[str] = []
        if assets["directory"]:
            from synth.assets import open_asset_directory

            self.asset_ids = open_asset_directory(assets["directory"])
        render_cfg = dict(config["render"], threads=threads) if threads else config["render"]
        self.blender = BlenderRenderer(render_cfg, tuple(config["render"]["resolution"]))

    def render(self, scene_index: int) -> tuple[Clip, dict[str, float]]:
        """Render global scene `scene_index`; return the clip and its timing breakdown (seconds)."""
        from synth.meshes import object_mesh
        from synth.physics import simulate

        cfg = self.config
        seed = scene_seed(cfg["seed"], scene_index)
        timing: dict[str, float] = {}
        start = time.perf_counter()
        spec = sample_scene(cfg, seed, self.textures, self.hdris, self.asset_ids)
        meshes = [object_mesh(obj) for obj in spec.objects]
        timing["scene_sampling"] = time.perf_counter() - start
        start = time.perf_counter()
        trajectories = simulate(spec, meshes)
        timing["physics"] = time.perf_counter() - start
        start = time.perf_counter()
        self.blender.build(spec, meshes, trajectories)
        timing["scene_build"] = time.perf_counter() - start
        passes = self.blender.render(spec.num_frames)
        timing.update(self.blender.timing)
        self.last_passes, self.last_trajectories = passes, trajectories  # for checks against the renderer
        start = time.perf_counter()
        cam_to_world = look_at_matrices(spec.camera_positions, spec.camera_lookats)
        K = intrinsics(spec)
        instance_ids = np.array([o.instance_id for o in spec.objects], np.int64)
        gt = compute_tracks(passes, trajectories.matrices(), instance_ids, cam_to_world, K,
                            cfg["tracks"]["num_tracks"], cfg["tracks"]["depth_tolerance"],
                            np.random.default_rng(seed))
        timing["ground_truth"] = time.perf_counter() - start
        extra = {}
        if "depth" in cfg["outputs"]["passes"]:
            distance = np.linalg.norm(passes["position"] - cam_to_world[:, None, None, :3, 3], axis=-1)
            extra["depth"] = np.where(passes["depth_z"] < SKY_DEPTH, distance, np.inf).astype(np.float32)
        if "segmentation" in cfg["outputs"]["passes"]:
            extra["segmentation"] = passes["object_index"].astype(np.uint16)
        world_to_cam_cv = np.linalg.inv(cam_to_world)
        world_to_cam_cv[:, :3, :] = BLENDER_TO_OPENCV @ world_to_cam_cv[:, :3, :]
        camera = {
            "K": K.tolist(), "width": spec.resolution[0], "height": spec.resolution[1],
            "focal_length_mm": spec.focal_length, "sensor_width_mm": spec.sensor_width,
            "cam_to_world_blender": cam_to_world.tolist(),
            "world_to_cam_opencv": world_to_cam_cv.tolist(),
            "conventions": "K and world_to_cam_opencv: OpenCV (x right, y down, z forward), pixel (0,0) is the "
                           "top-left corner of the top-left pixel; cam_to_world_blender: Blender camera (looks "
                           "down -Z, +Y up); world is Z-up, metres",
        }
        meta = {
            "seed": seed, "scene_index": scene_index, "config_hash": self.hash, "fps": spec.frame_rate,
            "scene": spec.describe(),
            "object_poses": {"positions": trajectories.positions.round(6).tolist(),
                             "quaternions_xyzw": trajectories.quaternions.round(6).tolist()},
        }
        clip = Clip(key=scene_key(scene_index), video=passes["rgb"], tracks=gt.tracks, occluded=gt.occluded,
                    tracks_3d=gt.tracks_3d, object_ids=gt.object_ids, query=gt.query, camera=camera, meta=meta,
                    **extra)
        return clip, timing
