"""Unlabeled real videos on disk: which files a source list names, how many frames each holds, and decoding a few.

``data.real_videos`` (and ``tapforge pack-videos``) name folders, globs, video files, frame folders and shard files or
URLs:

- a video file (mp4, m4v, mov, avi, mkv, webm: decoded by the ffmpeg that imageio-ffmpeg ships) or an animated GIF
  is one video;
- a folder of frame images (png, jpg ...) is one video, its frames in natural order;
- a folder is searched recursively: every video file in it, and every sub-folder holding images, is a video;
  every ``*.tar`` in it is a shard;
- a shard (``.tar``, a brace pattern or a URL, as for ``data.train_shards``) holds clips written by
  ``tapforge pack-videos``: samples with the synthetic schema's frame entries (``video.000.jpg`` ...) and a
  ``meta.json``, no ground truth.

Decoding costs what a reader needs, not the video's length: `iter_clips` (packing) decodes a source once, in order,
for all the clips cut from it; `read_frames` (a random clip while training) seeks to the clip when `frame_grid`
finds the frames on a regular time grid in a container whose seeks land exactly (`SEEK_SUFFIXES`), and otherwise
decodes from frame 0, selecting frames by number (exact whatever the timestamps).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import subprocess
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from tapforge.base.errors import TapforgeError
from tapforge.base.video import (
    FFMPEG_SUFFIXES,
    IMAGE_SUFFIXES,
    check_image_folder,
    decode_image,
    image_names,
    natural_key,
    read_video,
)
from tapforge.train.shards import expand_shards, is_remote

VIDEO_SUFFIXES = FFMPEG_SUFFIXES + (".gif",)
SEEK_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm")
"""Containers whose seeks were checked to give exactly the frames that decoding from frame 0 gives
(tests/train/test_video_sources.py). AVI is not among them: ffmpeg's AVI seek lands one frame early at some frames."""


class UnreadableVideo(Exception):
    """A source that cannot be decoded; the message says why."""


class ShortVideo(Exception):
    """A source with fewer frames than a clip needs."""


def _search_folder(folder: str) -> tuple[list[str], list[str]]:
    """(videos, shards) below ``folder``: video files, folders of images, ``.tar`` shards."""
    videos, shards = [], []
    for root, dirs, files in os.walk(folder):
        dirs.sort(key=natural_key)
        if any(f.lower().endswith(IMAGE_SUFFIXES) for f in files):
            videos.append(root)
        for name in sorted(files, key=natural_key):
            path = os.path.join(root, name)
            if name.lower().endswith(VIDEO_SUFFIXES):
                videos.append(path)
            elif name.endswith(".tar"):
                shards.append(path)
    return videos, shards


def expand_video_sources(
    spec: str | Sequence[str] | None, key: str = "data.real_videos"
) -> tuple[list[str], list[str]]:
    """(video sources, shard URLs) named by ``spec`` (see the module docstring); one error line when it names none."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec or [])
    videos, shards = [], []
    for item in map(str, items):
        item = os.path.expanduser(item)
        if item.endswith(".tar") or "{" in item or is_remote(item):
            shards += expand_shards(item, key)
            continue
        paths = sorted(glob.glob(item), key=natural_key) if set("*?[") & set(item) else [item]
        if not paths or not all(os.path.exists(p) for p in paths):
            raise TapforgeError(
                f"{key}: {item!r} matches no file or folder; fix: give video files, folders of videos "
                "or of frames, globs or shards that exist"
            )
        for path in paths:
            if os.path.isdir(path):
                found_videos, found_shards = _search_folder(path)
                videos += found_videos
                shards += found_shards
            elif path.lower().endswith(VIDEO_SUFFIXES):
                videos.append(path)
            elif path.endswith(".tar"):
                shards.append(path)
            else:
                raise TapforgeError(
                    f"{key}: {path!r} is not a video ({', '.join(VIDEO_SUFFIXES)}), a folder or a "
                    ".tar shard; fix: remove it from the list"
                )
    if not videos and not shards:
        raise TapforgeError(
            f"{key} names no videos ({spec!r}); fix: give folders holding video files "
            f"({', '.join(VIDEO_SUFFIXES)}) or frame images, or shards from tapforge pack-videos"
        )
    return videos, shards


def count_frames(path: str) -> int:
    """Frames of a video source (decodes a file once, without keeping frames; reads a frame folder's image headers,
    which must all give one size); raises UnreadableVideo."""
    if os.path.isdir(path):
        try:
            return len(check_image_folder(path))
        except TapforgeError as err:
            raise UnreadableVideo(_reason(err)) from None
    if path.lower().endswith(".gif"):
        return len(_read_all(path))
    import imageio_ffmpeg

    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(path)
    except (OSError, RuntimeError, ValueError, StopIteration) as err:
        raise UnreadableVideo(_last_line(err)) from None
    if frames <= 0:
        raise UnreadableVideo("no frames")
    return int(frames)


def _last_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__


def _reason(err: TapforgeError) -> str:
    """A TapforgeError's problem, without its fix (the caller says what to do with an unreadable source)."""
    return str(err).split("; fix:")[0]


def _read_all(path: str) -> np.ndarray:
    try:
        return read_video(path)[0]
    except TapforgeError as err:
        raise UnreadableVideo(_reason(err)) from None


def frame_grid(path: str, count: int) -> tuple[float, float] | None:
    """(time of frame 0, frame interval) in seconds, relative to the file's start as ffmpeg's input seek counts it,
    when the ``count`` frames of video file ``path`` lie on a regular grid (constant frame rate: every frame within
    a quarter interval of its grid time) in a container of `SEEK_SUFFIXES`; None otherwise (GIFs, frame folders,
    AVI, variable frame rate, a packet count other than ``count``), where clips are decoded from frame 0.

    Reads the packets' timestamps without decoding (one fast pass over the file).
    """
    if os.path.isdir(path) or not path.lower().endswith(SEEK_SUFFIXES) or count < 2:
        return None
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", path, "-map", "0:v:0", "-c", "copy"]
    try:
        lines = subprocess.run([*command, "-f", "framecrc", "-"], capture_output=True, text=True, check=True)
        lines = lines.stdout.splitlines()
        tick = next(line.split(":")[1].strip().split("/") for line in lines if line.startswith("#tb 0:"))
        pts = np.sort([int(line.split(",")[2]) for line in lines if not line.startswith("#")])
    except (OSError, subprocess.CalledProcessError, StopIteration, IndexError, ValueError):
        return None  # no timestamps to trust (e.g. NOPTS): the exact path
    times = pts * (int(tick[0]) / int(tick[1]))
    if len(times) != count or times[0] < 0:
        return None
    step = (times[-1] - times[0]) / (count - 1)
    regular = step > 0 and np.abs(times - (times[0] + step * np.arange(count))).max() < step / 4
    return (float(times[0]), float(step)) if regular else None


def _decode(path: str, first: int = 0, grid: tuple[float, float] | None = None) -> Iterator[np.ndarray]:
    """Frames ``first``, ``first + 1`` ... of a video file or GIF, uint8 [H,W,3] one at a time from one decoder
    start (frames before ``first`` are decoded, not returned); raises UnreadableVideo.

    With a `frame_grid` and ``first`` > 0, ffmpeg seeks to half an interval before frame ``first`` (it decodes from
    the keyframe before and drops the frames before that time); otherwise it decodes from frame 0 and selects
    frames by number.
    """
    if path.lower().endswith(".gif"):
        try:
            with Image.open(path) as image:
                for t, frame in enumerate(ImageSequence.Iterator(image)):
                    if t >= first:
                        yield np.asarray(frame.convert("RGB"))
        except (OSError, UnidentifiedImageError, EOFError) as err:
            raise UnreadableVideo(f"cannot decode GIF {path!r} ({err})") from None
        return
    import imageio_ffmpeg

    seek = grid is not None and first > 0
    reader = imageio_ffmpeg.read_frames(
        path,
        pix_fmt="rgb24",
        input_params=["-ss", f"{grid[0] + (first - 0.5) * grid[1]:.6f}"] if seek else [],
        output_params=["-vf", f"select=gte(n\\,{0 if seek else first})", "-fps_mode", "passthrough"],
    )
    try:
        width, height = next(reader)["size"]
        for raw in reader:
            yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as err:
        raise UnreadableVideo(_last_line(err)) from None
    finally:
        reader.close()


def read_frames(path: str, indices: np.ndarray, grid: tuple[float, float] | None = None) -> np.ndarray:
    """Frames ``indices`` (increasing) of a video source -> uint8 [len(indices),H,W,3]; raises UnreadableVideo or
    ShortVideo. A video file with a `frame_grid` ``grid`` is read from a seek to the first index, any other from
    frame 0; a folder's images and a GIF's frames after the last index are not decoded."""
    indices = np.asarray(indices)
    if os.path.isdir(path):
        names = image_names(path)
        frames = []
        for i in indices:
            try:
                frames.append(decode_image(os.path.join(path, names[i])))
            except ValueError as err:
                raise UnreadableVideo(f"frame {names[i]!r}: {err}") from None
            if frames[-1].shape != frames[0].shape:
                raise UnreadableVideo(f"frame {names[i]!r} differs in size from {names[indices[0]]!r}")
        return np.stack(frames)
    first, count = int(indices[0]), int(indices[-1] - indices[0] + 1)
    with contextlib.closing(_decode(path, first, grid)) as stream:
        frames = list(itertools.islice(stream, count))
    if len(frames) < count:
        raise ShortVideo(f"ended after {first + len(frames)} frames")
    return np.stack(frames)[indices - first]


def iter_clips(path: str, clips: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames of each of ``clips`` (increasing frame indices each) of a video source, uint8 [len,H,W,3], in
    turn; raises UnreadableVideo or ShortVideo when it gets there.

    A video file or GIF is decoded once, in order, from the first clip's first frame, when each clip starts after
    the one before it ended (a clip that starts earlier starts a new decoder); only the clip being cut is held in
    memory. A folder's clips decode only their own images. Close the iterator to stop the decoder early.
    """
    if os.path.isdir(path):
        for indices in clips:
            yield read_frames(path, indices)
        return
    stream, position = None, 0
    try:
        for indices in map(np.asarray, clips):
            if stream is None or indices[0] < position:
                if stream is not None:
                    stream.close()
                stream, position = _decode(path, int(indices[0])), int(indices[0])
            wanted, kept = set(indices.tolist()), {}
            while position <= indices[-1]:
                frame = next(stream, None)
                if frame is None:
                    raise ShortVideo(f"ended after {position} frames")
                if position in wanted:
                    kept[position] = frame
                position += 1
            yield np.stack([kept[i] for i in indices.tolist()])
    finally:
        if stream is not None:
            stream.close()
