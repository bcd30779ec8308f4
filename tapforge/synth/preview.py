"""`tapforge synth preview`: one scene's frames with its ground-truth tracks drawn on, as GIF or MP4.

A clip of up to `MAX_PREVIEW_FRAMES` frames previews whole. A longer clip (hundreds to 1024 frames) previews
downsampled in time: every k-th frame from frame 0 (k the smallest step that keeps at most `MAX_PREVIEW_FRAMES`),
each labelled with its frame number in the clip, played at the clip's frame rate (k times faster than real time).
Only the shown frames are decoded, and the frames are drawn a chunk at a time under a progress bar, so memory holds
the clip's tracks and the shown frames, not the whole enlarged video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tapforge.base.errors import TapforgeError
from tapforge.synth.schema import SchemaError, decode_clip, decode_frames
from tapforge.synth.shards import iter_checked_samples, read_manifest

MAX_PREVIEW_FRAMES = 240  # a longer clip previews every k-th frame, at most this many
TRAIL = 8  # past frames of each visible path drawn (draw_tracks' trail)
CHUNK = 16  # frames enlarged and drawn at a time


def _scene_sample(dataset: Path, index: int) -> dict:
    """The raw sample (entry name -> bytes) of the `index`-th scene of a dataset folder, its shard checked first."""
    manifest = read_manifest(dataset)
    total = sum(entry["num_samples"] for entry in manifest["shards"])
    if not 0 <= index < total:
        raise TapforgeError(f"--index {index} is out of range: {dataset} holds {total} complete scenes")
    for entry in manifest["shards"]:
        if index < entry["num_samples"]:
            samples = iter_checked_samples(dataset, entry, decode=lambda sample: sample)
            for k, sample in enumerate(samples):
                if k == index:
                    return sample
        index -= entry["num_samples"]
    raise TapforgeError(f"{dataset}: the manifest lists more scenes than the shards hold; run `tapforge synth verify`")


def load_scene(dataset: Path, index: int):
    """The `index`-th scene of a dataset folder, in shard order, as a `Clip` (its shard checked first)."""
    return decode_clip(_scene_sample(dataset, index))


def preview_indices(num_frames: int, max_frames: int = MAX_PREVIEW_FRAMES) -> np.ndarray:
    """The frames a preview shows: all of a clip of at most ``max_frames``, else every k-th from frame 0 with the
    smallest k that shows at most ``max_frames``."""
    step = max(1, -(-num_frames // max_frames))
    return np.arange(0, num_frames, step)


def _label(frame: np.ndarray, number: int, num_frames: int, step: int) -> np.ndarray:
    """``frame`` with "frame N of T (1 in k)" written in its top-left corner, white on a dark box."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image, "RGBA")
    font = ImageFont.load_default(size=max(10, frame.shape[0] // 30))
    text = f"frame {number} of {num_frames} (1 in {step})"
    left, top, right, bottom = draw.textbbox((4, 4), text, font=font)
    draw.rectangle((left - 3, top - 3, right + 3, bottom + 3), fill=(0, 0, 0, 160))
    draw.text((4, 4), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def draw_preview(
    frames: np.ndarray,
    tracks: np.ndarray,
    occluded: np.ndarray,
    indices: np.ndarray,
    num_frames: int,
    progress: bool = False,
) -> np.ndarray:
    """The preview's frames: ``frames`` [S,H,W,3] (frames ``indices`` of a clip of ``num_frames``) enlarged to a
    readable size (`enlarge`) with ``tracks`` [N,S,2] / ``occluded`` [N,S] drawn on (`draw_tracks`); labelled with
    their frame numbers when the preview skips frames. Drawn `CHUNK` frames at a time (each chunk with the `TRAIL`
    frames before it, so the result equals one `draw_tracks` call), with a progress bar over the frames."""
    from tqdm import tqdm

    from tapforge.base.drawing import draw_tracks, enlarge

    step = int(indices[1] - indices[0]) if len(indices) > 1 else 1
    out = None
    desc = f"preview: 1 frame in {step} of {num_frames}" if step > 1 else f"preview: {num_frames} frames"
    with tqdm(total=len(frames), unit="frame", desc=desc, disable=not progress) as bar:
        for start in range(0, len(frames), CHUNK):
            first, stop = max(0, start - TRAIL), min(len(frames), start + CHUNK)
            enlarged, scale = enlarge(frames[first:stop])
            drawn = draw_tracks(enlarged, tracks[:, first:stop] * scale, occluded[:, first:stop], trail=TRAIL)
            if out is None:
                out = np.empty((len(frames),) + drawn.shape[1:], np.uint8)
            out[start:stop] = drawn[start - first :]
            if step > 1:
                for i in range(start, stop):
                    out[i] = _label(out[i], int(indices[i]), num_frames, step)
            bar.update(stop - start)
    return out


def write_preview(dataset: Path, out: Path, index: int = 0, max_tracks: int = 64, progress: bool = True) -> Path:
    """Draw scene `index`'s tracks (hidden points marked differently) on its frames, enlarged to a readable size,
    and write a GIF or MP4; a clip longer than `MAX_PREVIEW_FRAMES` frames previews every k-th frame, numbered."""
    from tapforge.base.video import write_video

    sample = _scene_sample(dataset, index)
    try:
        clip = decode_clip(sample, with_video=False)
        indices = preview_indices(clip.num_frames)
        frames = decode_frames(sample, indices)
    except SchemaError as err:
        raise TapforgeError(
            f"{dataset}: scene {index} is unreadable ({err}); run `tapforge synth verify {dataset}`"
        ) from None
    keep = np.random.default_rng(0).permutation(clip.num_tracks)[:max_tracks]
    drawn = draw_preview(
        frames, clip.tracks[keep][:, indices], clip.occluded[keep][:, indices], indices, clip.num_frames, progress
    )
    write_video(out, drawn, fps=float(clip.meta.get("fps", 12)))
    return out
