"""One scene end to end: scene script -> physics -> Blender build + render (`SceneRenderer.render`) -> ground truth
-> `Clip` (`make_clip`, pure numpy)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tapforge.base import seeds
from tapforge.base.errors import TapforgeError
from tapforge.base.video import IMAGE_SUFFIXES
from tapforge.synth.config import HDRI_SUFFIXES, SynthConfig, folder_files
from tapforge.synth.mesh_files import BlenderMeshReader
from tapforge.synth.motion import motion_statistics
from tapforge.synth.pass_frames import PassFrames, stack
from tapforge.synth.physics import PyBullet
from tapforge.synth.poses import pose_matrices
from tapforge.synth.scene import AssetFiles, Scene
from tapforge.synth.schema import Clip
from tapforge.synth.scripts import load_script
from tapforge.synth.tracks import SKY_DEPTH, Surface, compute_tracks, world_to_opencv


def scene_seed(base_seed: int, scene_index: int) -> int:
    """Per-scene seed: a stable hash of (config seed, global scene index)."""
    digest = hashlib.sha256(f"tapforge-scene:{base_seed}:{scene_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def scene_key(scene_index: int) -> str:
    return f"scene-{scene_index:07d}"


def asset_files(config: SynthConfig) -> AssetFiles:
    """The sorted files of the config's asset folders (textures, HDRIs, Kubric-manifest object ids)."""
    assets = config.assets
    files = AssetFiles(folder_files(assets.textures_dir, IMAGE_SUFFIXES), folder_files(assets.hdri_dir, HDRI_SUFFIXES))
    if assets.directory:
        from tapforge.synth.assets import open_asset_directory

        files.objects = open_asset_directory(assets.directory)
    return files


def _script_failure(script, err: Exception, scene_index: int | None, seed: int) -> TapforgeError:
    """One line for an exception raised inside a scene script's ``build``: the scene index and seed that reproduce
    it, the script's file:line where it arose (the innermost frame in the script's file, else the innermost one)
    and the exception."""
    frames = traceback.extract_tb(err.__traceback__)
    inside = [f for f in frames if Path(f.filename).resolve() == Path(script.path).resolve()]
    frame = (inside or frames)[-1]
    scene = f"scene {scene_index} (seed {seed})" if scene_index is not None else f"the scene of seed {seed}"
    if isinstance(err, TapforgeError):  # the scene API's own message names the argument and the fix
        return TapforgeError(f"{scene}: {err}")
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return TapforgeError(
        f"{scene}: the scene script's {script.build.__name__}() raised {type(err).__name__}"
        f"{': ' + message if message else ''} at {frame.filename}:{frame.lineno} ({(frame.line or '').strip()}); "
        "fix the script (rerun with the same seed to reproduce it)"
    )


def build_scene(
    config: SynthConfig, seed: int, assets: AssetFiles | None = None, scene_index: int | None = None
) -> Scene:
    """Run the config's scene script for ``seed``, then the clip's physics: the scene as it will be rendered.

    An exception inside the script is one `TapforgeError` naming ``scene_index``, the seed and the script's line."""
    sc = config.scene
    script = load_script(sc.script)
    assets = assets or asset_files(config)
    scene = Scene(
        config.render.resolution,
        sc.num_frames,
        sc.frame_rate,
        sc.physics_rate,
        seed,
        AssetFiles(list(assets.textures), list(assets.hdris), list(assets.objects)),
        simulator_factory=PyBullet,
        mesh_reader=BlenderMeshReader(),
    )
    try:
        try:
            script.build(scene, seeds.rng(seed, "script"), script.make_config(config.script_values))
        except Exception as err:
            raise _script_failure(script, err, scene_index, seed) from err
        scene.simulate_if_needed()
    finally:
        scene.close()
    return scene


@dataclass
class RenderedScene:
    """One scene as the renderer made it: what `make_clip` builds the clip from, and what checks against the
    renderer read (its passes, the deforming objects' meshes, the exact object poses)."""

    scene_index: int  # the global scene index; the scene's seed is ``scene.seed``
    scene: Scene  # the scene as rendered, its physics run
    frames: PassFrames  # the rgb frames and exact 1-sample passes, read frame by frame (`tapforge.synth.pass_frames`)
    surfaces: dict[int, Surface]  # the deforming objects' evaluated meshes, by instance id
    poses: np.ndarray  # object-to-world [O,T,4,4] of ``scene.objects``
    timing: dict[str, float]  # seconds per stage: scene_script, scene_build, deformation, path_tracing, ...

    @functools.cached_property
    def passes(self) -> dict[str, np.ndarray]:
        """Every frame's passes as [T,...] arrays: the whole clip in memory, for checks on short clips."""
        return stack(self.frames)


class SceneRenderer:
    """Renders scenes of one config in one Blender session (Blender starts once, not per scene).

    `threads` (Cycles threads) overrides ``render.threads``; the thread count changes no pixel, so it is not part
    of the dataset's identity (`tapforge.synth.config.config_hash` leaves it out).
    """

    def __init__(
        self,
        config: SynthConfig,
        threads: int | None = None,
        share: SceneRenderer | None = None,
        scratch: str | None = None,
    ):
        """``share``: render in that renderer's Blender session (one per process), which must have the same
        render settings (e.g. to compare two presets side by side); ``scratch``: the folder under which each
        render's frame files go (default: the system's temporary folder)."""
        self.scratch = scratch
        from tapforge.synth.blender_scene import BlenderRenderer

        self.config = config
        self.assets = asset_files(config)
        settings = dataclasses.replace(config.render, threads=threads or config.render.threads)
        if share is not None and share.blender.settings != settings:
            raise TapforgeError("SceneRenderer(share=...) needs the same render settings as the shared renderer")
        self.blender = share.blender if share is not None else BlenderRenderer(settings)

    def render(self, scene_index: int) -> RenderedScene:
        """Build and render global scene `scene_index` (the clip is `make_clip` of the result)."""
        timing: dict[str, float] = {}
        start = time.perf_counter()
        scene = build_scene(self.config, scene_seed(self.config.seed, scene_index), self.assets, scene_index)
        timing["scene_script"] = time.perf_counter() - start
        start = time.perf_counter()
        self.blender.build(scene)
        timing["scene_build"] = time.perf_counter() - start
        start = time.perf_counter()
        surfaces = self.blender.read_surfaces(scene.num_frames)  # runs the simulations, before the render
        if surfaces:
            timing["deformation"] = time.perf_counter() - start
        frames = self.blender.render(scene.num_frames, self.scratch)
        timing.update(self.blender.timing)
        return RenderedScene(scene_index, scene, frames, surfaces, pose_matrices(*scene.object_poses()), timing)


def make_clip(rendered: RenderedScene, config: SynthConfig) -> Clip:
    """The shard clip of a rendered scene: ground-truth tracks, the optional passes, camera and meta.

    Pure numpy (no Blender): the same result and config give the same clip. The passes are read one frame at a
    time and the clip's video reads its frames when they are encoded, so memory holds the tracks and the optional
    per-pixel outputs, not the clip's passes."""
    scene, frames = rendered.scene, rendered.frames
    cam_to_world = scene.camera.matrices(scene.num_frames)
    K = scene.camera.intrinsics(scene.resolution)
    extra = {name: [None] * frames.num_frames for name in config.outputs.passes}

    def keep_outputs(t: int, aux: dict[str, np.ndarray]) -> None:
        if "depth" in extra:
            distance = np.linalg.norm(aux["position"] - cam_to_world[t, :3, 3], axis=-1)
            extra["depth"][t] = np.where(aux["depth_z"] < SKY_DEPTH, distance, np.inf).astype(np.float32)
        if "segmentation" in extra:
            extra["segmentation"][t] = aux["object_index"].astype(np.uint16)

    gt = compute_tracks(
        frames,
        rendered.poses,
        np.array([o.instance_id for o in scene.objects], np.int64),
        cam_to_world,
        K,
        config.tracks.num_tracks,
        config.tracks.depth_tolerance,
        seeds.rng(scene.seed, "tracks"),  # not the script's stream: the pixels must not replay its draws
        rendered.surfaces,
        visit=keep_outputs,
    )
    camera = {
        "K": K.tolist(),
        "width": scene.resolution[0],
        "height": scene.resolution[1],
        "focal_length_mm": scene.camera.focal_length,
        "sensor_width_mm": scene.camera.sensor_width,
        "cam_to_world_blender": cam_to_world.tolist(),
        "world_to_cam_opencv": world_to_opencv(cam_to_world).tolist(),
        "conventions": "K and world_to_cam_opencv: OpenCV (x right, y down, z forward), pixel (0,0) is the "
        "top-left corner of the top-left pixel; cam_to_world_blender: Blender camera (looks "
        "down -Z, +Y up); world is Z-up, metres",
    }
    positions, quaternions = scene.object_poses()
    radii = np.array([np.linalg.norm(o.mesh()[0], axis=-1).max() for o in scene.objects])
    motion = motion_statistics(
        gt.tracks,
        gt.occluded,
        gt.tracks_3d,
        scene.resolution,
        rendered.poses,
        radii,
        [surface.vertices for surface in rendered.surfaces.values()],
    )
    meta = {
        "seed": scene.seed,
        "scene_index": rendered.scene_index,
        "config_hash": config.hash,
        "fps": scene.frame_rate,
        "script": {"name": config.scene.script, "sha256": config.scene.script_sha256},
        "scene": scene.describe(),
        "motion": motion,
        "object_poses": {
            "positions": positions.round(6).tolist(),
            "quaternions_xyzw": quaternions.round(6).tolist(),
        },
    }
    return Clip(
        key=scene_key(rendered.scene_index),
        video=frames.video,
        tracks=gt.tracks,
        occluded=gt.occluded,
        tracks_3d=gt.tracks_3d,
        object_ids=gt.object_ids,
        query=gt.query,
        camera=camera,
        meta=meta,
        **{name: np.stack(planes) for name, planes in extra.items()},
    )
