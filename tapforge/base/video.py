"""Read and write videos as uint8 [T,H,W,3] arrays (numpy + PIL + imageio-ffmpeg, no torch).

``read_video`` takes common video files (mp4, avi, mov, mkv, webm ... decoded by the ffmpeg that
imageio-ffmpeg ships), animated GIFs and folders of images; ``write_video`` writes GIF or an
ffmpeg container chosen by the suffix, atomically.
"""

from __future__ import annotations

import io
import os
import re
from typing import Iterable

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from tapforge.base.atomic import atomic_write
from tapforge.base.errors import TapforgeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
FFMPEG_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
WRITE_SUFFIXES = (".gif",) + FFMPEG_SUFFIXES
FOLDER_FPS = 30.0
"""Frame rate reported for a folder of images, which stores none."""


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a video file, animated GIF or folder of images -> (frames uint8 [T,H,W,3], fps).

    A folder's images (png/jpg/jpeg/bmp/tif/webp) are taken in natural sort order (frame2 before
    frame10) and reported at ``FOLDER_FPS``. Raises TapforgeError for a missing, unreadable or
    empty video.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TapforgeError(f"video {path!r} does not exist; fix: check the path")
    if os.path.isdir(path):
        frames, fps = _read_image_folder(path), FOLDER_FPS
    elif path.lower().endswith(".gif"):
        frames, fps = _read_gif(path)
    elif path.lower().endswith(IMAGE_SUFFIXES):
        raise TapforgeError(
            f"{path!r} is a single image, not a video; fix: pass a video file or a folder of frame images"
        )
    else:
        frames, fps = _read_with_ffmpeg(path)
    if frames.shape[0] == 0:
        raise TapforgeError(f"video {path!r} has no frames; fix: pass a video with at least one frame")
    return frames, fps


def natural_key(name: str) -> list:
    """Sort key that orders names the way people count (frame2 before frame10)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def decode_image(source: bytes | str | os.PathLike) -> np.ndarray:
    """An encoded image (bytes, or a file path) -> uint8 [H,W,3] RGB; the one frame decoder of the project.

    Every mode becomes 8-bit RGB: 16-bit grayscale (``I;16``, and ``I`` from a PNG, as older Pillow reads it) is
    scaled by 255/65535; 16-bit RGB(A) and LA PNGs come from Pillow already scaled to 8 bits; palette, 1-bit,
    grayscale, CMYK and YCbCr are converted by Pillow; an alpha channel is dropped (the stored colour is kept, as
    ffmpeg's rgb24 does). Float pixels (``F``) and 32-bit integers (``I`` from other formats) have no standard
    8-bit scale and are refused. Raises ValueError saying why for data that is not a decodable image or has such a
    mode (callers name the entry or file).
    """
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as image:
            return _to_rgb8(image)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:  # damaged or unknown
        raise ValueError(str(err) or type(err).__name__) from None


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """A Pillow image of any mode -> uint8 [H,W,3] RGB (see `decode_image`)."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode.startswith("I;16") or (mode == "I" and image.format == "PNG"):  # 16-bit grayscale
        gray = np.round(np.asarray(image).astype(np.float32) * (255.0 / 65535.0))
        return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    if mode in ("F", "I") or mode.startswith("I;"):
        kind = "float" if mode == "F" else "32-bit integer"
        raise ValueError(f"{kind} pixels (mode {mode}) have no standard 8-bit scale; save the frame as 8-bit RGB")
    try:
        return np.asarray(image.convert("RGB"))
    except ValueError as err:  # a mode Pillow cannot convert (e.g. premultiplied La)
        raise ValueError(f"mode {mode} cannot be converted to RGB ({err}); save the frame as 8-bit RGB") from None


RESIZE_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}


def resize_frames(frames: np.ndarray, size: tuple[int, int], resampling: str = "bilinear") -> np.ndarray:
    """Resize uint8 frames [T,H,W,3] to ``size`` (height, width).

    The project's resize policy: training and tracking see antialiased bilinear frames (a triangle filter widened
    by the shrink factor: PIL's bilinear here, torch's ``interpolate(antialias=True)`` in ``tapir.Tracker`` and the
    same weights in the training augmentation's crop-and-resize). TAP-Vid evaluation resizes with ``"lanczos"``,
    as the official evaluation does, so that scores compare with published ones.
    """
    height, width = size
    kind = RESIZE_FILTERS[resampling]
    return np.stack([np.asarray(Image.fromarray(frame).resize((width, height), kind)) for frame in frames])


def image_names(folder: str) -> list[str]:
    """The names of the images (``IMAGE_SUFFIXES``) directly in ``folder``, in natural order."""
    return sorted((n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES)), key=natural_key)


def check_image_folder(path: str) -> list[str]:
    """The frame images of folder ``path`` (`image_names`), after reading every header: one TapforgeError line naming
    the first image that cannot be opened or whose size differs from the first frame's (nothing is decoded)."""
    names = image_names(path)
    if not names:
        raise TapforgeError(
            f"folder {path!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); fix: pass a folder of frame images"
        )
    first = None
    for name in names:
        try:
            with Image.open(os.path.join(path, name)) as image:
                size = image.size
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
            raise TapforgeError(
                f"cannot decode frame {name!r} in {path!r} ({err}); fix: replace or remove it"
            ) from None
        first = first or (name, size)
        if size != first[1]:
            raise TapforgeError(
                f"frame {name!r} in {path!r} is {size[0]}x{size[1]} but {first[0]!r} is {first[1][0]}x{first[1][1]}; "
                "fix: resize all frames to one size"
            )
    return names


def _read_image_folder(path: str) -> np.ndarray:
    frames = []
    for name in check_image_folder(path):
        try:
            frames.append(decode_image(os.path.join(path, name)))
        except ValueError as err:
            raise TapforgeError(
                f"cannot decode frame {name!r} in {path!r} ({err}); fix: replace or remove it"
            ) from None
    return np.stack(frames)


def _read_gif(path: str) -> tuple[np.ndarray, float]:
    try:
        with Image.open(path) as image:
            frames, durations = [], []
            for frame in ImageSequence.Iterator(image):
                frames.append(np.asarray(frame.convert("RGB")))
                durations.append(frame.info.get("duration", 0) or 0)
    except (OSError, UnidentifiedImageError, EOFError) as err:
        raise TapforgeError(f"cannot decode GIF {path!r} ({err}); fix: re-export the GIF or pass an mp4") from None
    median_ms = float(np.median(durations)) if durations else 0.0
    return np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8), (
        1000.0 / median_ms if median_ms > 0 else 10.0
    )


def _read_with_ffmpeg(path: str) -> tuple[np.ndarray, float]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
    try:
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader]
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as err:
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise TapforgeError(
            f"cannot decode video {path!r} ({detail}); fix: check the file is a complete video, "
            "or re-encode it, e.g. ffmpeg -i INPUT -c:v libx264 -pix_fmt yuv420p OUTPUT.mp4"
        ) from None
    finally:
        reader.close()
    fps = float(meta.get("fps") or 0.0) or 30.0
    return (np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)), fps


def write_video(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: float = 24.0) -> str:
    """Write uint8 frames [T,H,W,3] as GIF or an ffmpeg video chosen by the suffix; returns the path.

    mp4/m4v/mov/mkv use H.264 (yuv420p when width and height are even, yuv444p otherwise so the
    size is kept exactly), webm VP9 and avi MPEG-4. The file appears only complete: it is written
    under a temporary name in the same folder and then renamed. Missing parent folders are created.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in WRITE_SUFFIXES:
        raise TapforgeError(
            f"cannot write video {path!r}: unknown suffix; fix: name it with one of {', '.join(WRITE_SUFFIXES)}"
        )
    frames = np.asarray(frames) if not isinstance(frames, np.ndarray) else frames
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be uint8 [T,H,W,3] with T > 0, got {frames.dtype} {frames.shape}")
    if not fps > 0:
        raise TapforgeError(f"frame rate {fps} is not positive; fix: pass fps > 0")

    def write(tmp: str) -> None:
        if suffix == ".gif":
            _write_gif(tmp, frames, fps)
        else:
            _write_with_ffmpeg(tmp, frames, fps, suffix)

    return atomic_write(path, write, suffix=f".tmp{suffix}")


def _write_gif(path: str, frames: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(frame) for frame in frames]
    duration = max(int(round(1000.0 / fps)), 20)  # browsers clamp shorter GIF delays
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)


def _write_with_ffmpeg(path: str, frames: np.ndarray, fps: float, suffix: str) -> None:
    import imageio_ffmpeg

    height, width = frames.shape[1:3]
    if suffix == ".webm":
        codec, pix_fmt, params = "libvpx-vp9", "yuv420p", ["-crf", "32", "-b:v", "0"]
    elif suffix == ".avi":
        codec, pix_fmt, params = "mpeg4", "yuv420p", ["-q:v", "3"]
    else:
        codec, params = "libx264", ["-crf", "18", "-preset", "veryfast"]
        pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
    if pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise TapforgeError(
            f"{suffix} with {codec} needs an even width and height, got {width}x{height}; "
            "fix: write .mp4 or .gif instead, or crop the frames to even sizes"
        )
    writer = imageio_ffmpeg.write_frames(
        path,
        (width, height),
        fps=fps,
        codec=codec,
        pix_fmt_out=pix_fmt,
        quality=None,
        macro_block_size=1,
        output_params=params,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
