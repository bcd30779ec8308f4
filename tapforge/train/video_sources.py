"""Unlabeled real videos on disk: which files a source list names, how many frames each holds, and decoding a few.

``data.real_videos`` (and ``tapforge pack-videos``) name folders, globs, video files, frame folders and shard files or
URLs:

- a video file (mp4, m4v, mov, avi, mkv, webm: decoded by the ffmpeg that imageio-ffmpeg ships, seeking to the
  clip) or an animated GIF is one video;
- a folder of frame images (png, jpg ...) is one video, its frames in natural order;
- a folder is searched recursively: every video file in it, and every sub-folder holding images, is a video;
  every ``*.tar`` in it is a shard;
- a shard (``.tar``, a brace pattern or a URL, as for ``data.train_shards``) holds clips written by
  ``tapforge pack-videos``: samples with the synthetic schema's frame entries (``video.000.jpg`` ...) and a
  ``meta.json``, no ground truth.
"""

from __future__ import annotations

import glob
import os
from typing import Sequence

import numpy as np

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


def read_frames(path: str, indices: np.ndarray) -> np.ndarray:
    """Frames ``indices`` (increasing) of a video source -> uint8 [len(indices),H,W,3]; raises UnreadableVideo."""
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
    if path.lower().endswith(".gif"):
        return _read_all(path)[indices]
    import imageio_ffmpeg

    first, count = int(indices[0]), int(indices[-1] - indices[0] + 1)
    try:  # decode from frame ``first`` only (select by frame number: exact, whatever the timestamps)
        reader = imageio_ffmpeg.read_frames(
            path, pix_fmt="rgb24", output_params=["-vf", f"select=gte(n\\,{first})", "-fps_mode", "passthrough"]
        )
        meta = next(reader)
        width, height = meta["size"]
        frames = []
        for raw in reader:
            frames.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3))
            if len(frames) == count:
                break
        reader.close()
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as err:
        raise UnreadableVideo(_last_line(err)) from None
    if len(frames) < count:
        raise ShortVideo(f"ended after {first + len(frames)} frames")
    return np.stack(frames)[indices - first]
