"""One scene end to end: scene script -> physics -> Blender build + render (`SceneRenderer.render`) -> ground truth
-> `Clip` (`make_clip`, pure numpy).

Multi-view: a scene seen by several cameras (the config's ``render.views`` rig, or the script's ``scene.views``)
is simulated and built once and rendered once per view; `make_clips` turns it into one clip per view (a view is a
clip: its own shard sample, key `view_key`), all from one set of surface points with world tracks shared by the
views (`tapforge.synth.tracks.compute_multiview_tracks`)."""

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
from tapforge.synth.config import HDRI_SUFFIXES, SynthConfig, ViewRig, folder_files
from tapforge.synth.mesh_files import BlenderMeshReader
from tapforge.synth.motion import motion_statistics
from tapforge.synth.pass_frames import PassFrames, stack
from tapforge.synth.physics import PyBullet
from tapforge.synth.poses import pose_matrices
from tapforge.synth.scene import AssetFiles, Camera, Scene, hemisphere_views, ring_views, stereo_views
from tapforge.synth.schema import Clip
from tapforge.synth.scripts import load_script
from tapforge.synth.tracks import SKY_DEPTH, Surface, View, compute_multiview_tracks, world_to_opencv


def scene_seed(base_seed: int, scene_index: int) -> int:
    """Per-scene seed: a stable hash of (config seed, global scene index)."""
    digest = hashlib.sha256(f"tapforge-scene:{base_seed}:{scene_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def scene_key(scene_index: int) -> str:
    return f"scene-{scene_index:07d}"


VIEW_SEPARATOR = "_view-"


def view_key(scene_index: int, view: int) -> str:
    """The sample key of view ``view`` of a multi-view scene: the scene's key and the view (no dot: webdataset
    takes a member's key up to its first dot)."""
    return f"{scene_key(scene_index)}{VIEW_SEPARATOR}{view:02d}"


def scene_of(key: str) -> str:
    """The scene key of a sample key (a view's key names its scene; a single-view clip's key is its scene's)."""
    return key.split(VIEW_SEPARATOR)[0]


def rig_views(rig: ViewRig, scene: Scene) -> list[Camera]:
    """The cameras of a ``render.views`` rig for ``scene`` (its script run): with the script camera's lens; the
    stereo pair on its path; the hemisphere's cameras drawn from the scene seed."""
    lens = (scene.camera.focal_length, scene.camera.sensor_width)
    if rig.rig == "ring":
        return ring_views(rig.count, rig.radius, rig.height, rig.center, *lens, np.radians(rig.azimuth))
    if rig.rig == "hemisphere":
        rng = seeds.rng(scene.seed, "views")
        return hemisphere_views(rig.count, rig.radius, rng, rig.center, rig.elevation, *lens)
    return stereo_views(scene.camera, scene.num_frames, rig.baseline, rig.convergence)


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
    """Run the config's scene script for ``seed``, then the clip's physics: the scene as it will be rendered, with its
    views (``render.views``' rig, or the script's ``scene.views``) checked (`Scene.check_views`).

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
        if config.render.views is not None:
            if scene.views:
                raise TapforgeError(
                    f"render.views (a {config.render.views.rig} rig) and the scene script's scene.views both set the "
                    "cameras; remove one of them"
                )
            scene.views = rig_views(config.render.views, scene)
        scene.simulate_if_needed()
    finally:
        scene.close()
    if scene.views:
        try:
            scene.check_views()
        except TapforgeError as err:
            where = f"scene {scene_index} (seed {seed})" if scene_index is not None else f"the scene of seed {seed}"
            raise TapforgeError(f"{where}: {err}") from None
    return scene


@dataclass
class RenderedScene:
    """One scene as the renderer made it: what `make_clips` builds the clips from (one per view), and what checks
    against the renderer read (its passes, the deforming objects' meshes, the exact object poses)."""

    scene_index: int  # the global scene index; the scene's seed is ``scene.seed``
    scene: Scene  # the scene as rendered, its physics run
    views: list[PassFrames]  # per camera (``scene.cameras``): the rgb frames and exact passes, frame by frame
    surfaces: dict[int, Surface]  # the deforming objects' evaluated meshes, by instance id
    poses: np.ndarray  # object-to-world [O,T,4,4] of ``scene.objects``
    timing: dict[str, float]  # seconds per stage: scene_script, scene_build, deformation, path_tracing, ... (all views)

    @property
    def frames(self) -> PassFrames:
        """The first (for a single camera: the only) view's frames."""
        return self.views[0]

    @functools.cached_property
    def passes(self) -> dict[str, np.ndarray]:
        """Every frame's passes of the first view as [T,...] arrays: the whole clip in memory, for checks on short
        clips (`view_passes` for the others)."""
        return stack(self.frames)

    def view_passes(self, view: int) -> dict[str, np.ndarray]:
        """View ``view``'s passes as [T,...] arrays (see `passes`)."""
        return self.passes if view == 0 else stack(self.views[view])

    def close(self) -> None:
        """Remove the views' frame files (once their clips are encoded)."""
        for frames in self.views:
            frames.close()


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
        render settings but for the views (e.g. to compare two presets side by side); ``scratch``: the folder under
        which each render's frame files go (default: the system's temporary folder)."""
        self.scratch = scratch
        from tapforge.synth.blender_scene import BlenderRenderer

        self.config = config
        self.assets = asset_files(config)
        settings = dataclasses.replace(config.render, threads=threads or config.render.threads)
        session = dataclasses.replace(settings, views=None)  # the views are cameras of a scene, not the session's
        if share is not None and dataclasses.replace(share.blender.settings, views=None) != session:
            raise TapforgeError("SceneRenderer(share=...) needs the same render settings as the shared renderer")
        self.blender = share.blender if share is not None else BlenderRenderer(settings)

    def render(self, scene_index: int) -> RenderedScene:
        """Build and render global scene `scene_index` once, then each of its views (the clips are `make_clips` of
        the result)."""
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
        views = []
        for view in range(len(scene.cameras)):  # the same built scene from each camera
            views.append(self.blender.render(scene.num_frames, self.scratch, view))
            for stage, seconds in self.blender.timing.items():
                timing[stage] = timing.get(stage, 0.0) + seconds
        return RenderedScene(scene_index, scene, views, surfaces, pose_matrices(*scene.object_poses()), timing)


def make_clip(rendered: RenderedScene, config: SynthConfig) -> Clip:
    """The shard clip of a rendered single-view scene (`make_clips` for every view of a multi-view one)."""
    clips = make_clips(rendered, config)
    if len(clips) != 1:
        raise TapforgeError(f"make_clip: the scene has {len(clips)} views; use make_clips for one clip per view")
    return clips[0]


def make_clips(rendered: RenderedScene, config: SynthConfig) -> list[Clip]:
    """The shard clips of a rendered scene, one per view: ground-truth tracks, the optional passes, camera and meta.

    Pure numpy (no Blender): the same result and config give the same clips. The passes are read one frame at a
    time and a clip's video reads its frames when they are encoded, so memory holds the tracks and the optional
    per-pixel outputs, not the clip's passes. One view: the clip is keyed by the scene (`scene_key`). Several: one
    clip per view keyed by `view_key`, the same track rows in every view, each with the world tracks
    (``tracks_world``) and ``meta["view"]`` (the scene's key, the view's index, the view count)."""
    scene = rendered.scene
    cameras = scene.cameras
    num_views, num_frames = len(cameras), scene.num_frames
    cam_to_world = [camera.matrices(num_frames) for camera in cameras]
    intrinsics = [camera.intrinsics(scene.resolution) for camera in cameras]
    extra = [{name: [None] * num_frames for name in config.outputs.passes} for _ in cameras]

    def keep_outputs(v: int, t: int, aux: dict[str, np.ndarray]) -> None:
        if "depth" in extra[v]:
            distance = np.linalg.norm(aux["position"] - cam_to_world[v][t, :3, 3], axis=-1)
            extra[v]["depth"][t] = np.where(aux["depth_z"] < SKY_DEPTH, distance, np.inf).astype(np.float32)
        if "segmentation" in extra[v]:
            extra[v]["segmentation"][t] = aux["object_index"].astype(np.uint16)

    gt = compute_multiview_tracks(
        [View(frames, c2w, K) for frames, c2w, K in zip(rendered.views, cam_to_world, intrinsics)],
        rendered.poses,
        np.array([o.instance_id for o in scene.objects], np.int64),
        config.tracks.num_tracks,
        config.tracks.depth_tolerance,
        seeds.rng(scene.seed, "tracks"),  # not the script's stream: the pixels must not replay its draws
        rendered.surfaces,
        visit=keep_outputs,
    )
    positions, quaternions = scene.object_poses()
    radii = np.array([np.linalg.norm(o.mesh()[0], axis=-1).max() for o in scene.objects])
    described = scene.describe()
    clips = []
    for v, tracks in enumerate(gt.views):
        camera = {
            "K": intrinsics[v].tolist(),
            "width": scene.resolution[0],
            "height": scene.resolution[1],
            "focal_length_mm": cameras[v].focal_length,
            "sensor_width_mm": cameras[v].sensor_width,
            "cam_to_world_blender": cam_to_world[v].tolist(),
            "world_to_cam_opencv": world_to_opencv(cam_to_world[v]).tolist(),
            "conventions": "K and world_to_cam_opencv: OpenCV (x right, y down, z forward), pixel (0,0) is the "
            "top-left corner of the top-left pixel; cam_to_world_blender: Blender camera (looks "
            "down -Z, +Y up); world is Z-up, metres",
        }
        motion = motion_statistics(
            tracks.tracks,
            tracks.occluded,
            tracks.tracks_3d,
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
            "scene": described,
            "motion": motion,
            "object_poses": {
                "positions": positions.round(6).tolist(),
                "quaternions_xyzw": quaternions.round(6).tolist(),
            },
        }
        key, world = scene_key(rendered.scene_index), None
        if num_views > 1:
            camera["look_at_world"] = cameras[v].path(num_frames)[1].tolist()
            meta["view"] = {"scene": key, "index": v, "count": num_views}
            key, world = view_key(rendered.scene_index, v), gt.world
        clips.append(
            Clip(
                key=key,
                video=rendered.views[v].video,
                tracks=tracks.tracks,
                occluded=tracks.occluded,
                tracks_3d=tracks.tracks_3d,
                object_ids=tracks.object_ids,
                query=tracks.query,
                camera=camera,
                meta=meta,
                tracks_world=world,
                **{name: np.stack(planes) for name, planes in extra[v].items()},
            )
        )
    return clips
