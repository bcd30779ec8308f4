"""What a render needs of the machine, estimated before anything renders: a worker's memory and its scratch disk.

A render worker holds a Blender session (with the scene's textures), one frame's exact passes at a time, the
clip's tracks while its ground truth is made, and the encoded clip (plus the optional per-pixel outputs) until the
sample is handed over; the frames' files (rgb PNG and the aux multilayer EXR) wait on the scratch disk until the
clip is encoded. So a clip's memory grows with its length only through the tracks and what the shard stores.
`check_render_size` refuses, with the estimate, a render that cannot fit even with one worker;
`fit_workers_in_memory` lowers an automatic worker count to what fits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from tapforge.base.errors import TapforgeError
from tapforge.synth.config import SynthConfig

# upper estimates (measured with bpy 5.0.1 on CPU; bench/long_clip.py prints a worker's peak by clip length): a
# Blender session with the scene's textures (their side grows with the resolution up to 1024 px: ~1 GB)
SESSION_BYTES = 1 << 30
FRAME_BYTES_PER_PIXEL = 600  # one frame's passes read back, plus the ground truth's per-frame work
TRACK_BYTES = 120  # per track and frame: float64 points and normals, pixels, flags while the ground truth is made
# per pixel and frame held until the sample is written: the encoded frame (at most raw RGB) twice (the sample and
# its copy sent to the main process), and the optional per-pixel outputs twice (per frame, then stacked)
STORED_BYTES_PER_PIXEL = {"video": 2 * 3, "depth": 2 * 4, "segmentation": 2 * 2}
# per pixel and frame on the scratch disk: the aux EXR (18 float32 channels, at most uncompressed), the rgb PNG and
# the ground truth's copy of the object ids and depth
DISK_BYTES_PER_PIXEL = 18 * 4 + 3 + 6
MAX_SCENES = 10_000_000  # per dataset: 1000 times MOVi's largest; beyond it is a typo, not a plan


def human(num_bytes: float) -> str:
    """Bytes in decimal units: ``1.2 GB``."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    power = 0
    while num_bytes >= 1000 and power < len(units) - 1:
        num_bytes, power = num_bytes / 1000, power + 1
    return f"{num_bytes:.0f} B" if power == 0 else f"{num_bytes:.1f} {units[power]}"


def view_count(config: SynthConfig) -> int:
    """Cameras per scene as the config says (its ``render.views`` rig; 1 without one: a script's own
    ``scene.views`` are known only once it runs)."""
    rig = config.render.views
    return 1 if rig is None else (2 if rig.rig == "stereo" else rig.count)


def scene_memory(config: SynthConfig) -> int:
    """Estimated peak bytes of one render worker rendering one scene of ``config`` (every view's tracks and
    stored frames; the passes one frame at a time)."""
    width, height = config.render.resolution
    frames = config.scene.num_frames * view_count(config)
    stored = sum(STORED_BYTES_PER_PIXEL[k] for k in ("video", *config.outputs.passes))
    per_frame = width * height * stored + config.tracks.num_tracks * TRACK_BYTES
    return SESSION_BYTES + width * height * FRAME_BYTES_PER_PIXEL + frames * per_frame


def scene_disk(config: SynthConfig) -> int:
    """Estimated peak bytes of one render worker's frame files (every view's) on the scratch disk."""
    width, height = config.render.resolution
    return width * height * config.scene.num_frames * view_count(config) * DISK_BYTES_PER_PIXEL


def machine_memory() -> int | None:
    """Bytes of memory on this machine, capped by a cgroup memory limit (Kubernetes, Docker, SLURM); None if
    unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    for limit_file in ("memory.max", "memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            total = min(total, int((Path("/sys/fs/cgroup") / limit_file).read_text()))
    return total


def scratch_free(folder: str) -> int | None:
    """Free bytes on the disk of ``folder`` (the render's scratch folder), None if unknown."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def check_render_size(config: SynthConfig, num_scenes: int, scratch: str) -> None:
    """Refuse up front, with the estimate, a scene count that is a typo and a scene whose tracks and outputs cannot
    fit in this machine's memory, or whose frame files cannot fit on the scratch disk, even with one worker."""
    width, height = config.render.resolution
    frames = config.scene.num_frames
    if num_scenes > MAX_SCENES:
        per_scene = width * height * 3 * frames
        raise TapforgeError(
            f"--num-scenes {num_scenes}: over {MAX_SCENES} scenes in one dataset (it would be up to "
            f"{human(per_scene * num_scenes)} of frames at {human(per_scene)} per scene); give fewer scenes, or "
            "render several datasets"
        )
    need, have = scene_memory(config), machine_memory()
    if have is not None and need > have:
        raise TapforgeError(
            f"a scene of {width}x{height} pixels x {frames} frames with {config.tracks.num_tracks} tracks needs "
            f"about {human(need)} of memory to render (its tracks and encoded frames), this machine has "
            f"{human(have)}; fix: lower render.resolution, scene.num_frames or tracks.num_tracks"
        )
    need, have = scene_disk(config), scratch_free(scratch)
    if have is not None and need > have:
        raise TapforgeError(
            f"a scene of {width}x{height} pixels x {frames} frames needs about {human(need)} of scratch disk for its "
            f"frame files, {scratch} has {human(have)} free; fix: set TMPDIR to a folder on a larger disk, or lower "
            "render.resolution or scene.num_frames"
        )


def fit_workers_in_memory(config: SynthConfig, workers: int, automatic: bool, scratch: str | None = None) -> int:
    """The worker count whose scenes fit in this machine's memory (and their frame files on the scratch disk):
    ``workers`` when they fit, fewer when the count is automatic, else one error line naming the count that fits."""
    limits = [(scene_memory(config), machine_memory(), "memory")]
    if scratch is not None:
        limits.append((scene_disk(config), scratch_free(scratch), f"scratch disk ({scratch})"))
    fits = workers
    for need, have, what in limits:
        if have is None or workers * need <= have:
            continue
        fits = min(fits, max(1, have // need))
        if not automatic:
            raise TapforgeError(
                f"--workers {workers}: each worker needs about {human(need)} of {what} for its scene "
                f"({config.render.resolution[0]}x{config.render.resolution[1]} x {config.scene.num_frames} frames), "
                f"{human(workers * need)} in all, this machine has {human(have)}; fix: --workers "
                f"{max(1, have // need)} or fewer (or auto)"
            )
    return fits
