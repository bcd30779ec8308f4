"""Test videos whose frames all differ, with keyframes every few frames, and the exact reference to compare with:
every frame decoded from frame 0; ``counted_decoders`` records each ffmpeg decoder a test starts."""

from __future__ import annotations

import os

import imageio_ffmpeg
import numpy as np

FPS = 30.0


def write_test_video(path, frames=40, gop=8, size=32, params=()) -> str:
    """A panning texture (every frame differs from its neighbours) with a keyframe every ``gop`` frames, so that
    clips start between keyframes; ``params`` go to the encoder (e.g. a filter that makes the frame rate variable)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    base = np.random.default_rng(0).integers(0, 256, (size * 2, size + frames, 3), np.uint8)
    video = np.stack([base[t % size : t % size + size, t : t + size] for t in range(frames)])
    webm = str(path).endswith(".webm")
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (size, size),
        fps=FPS,
        codec="libvpx-vp9" if webm else "libx264",
        pix_fmt_out="yuv420p",
        quality=None,
        macro_block_size=1,
        output_params=["-g", str(gop), *(["-deadline", "realtime", "-cpu-used", "8"] if webm else []), *params],
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for frame in video:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return str(path)


def decoded_from_frame_0(path) -> np.ndarray:
    """Every frame of a video file, decoded from the start, one output frame per decoded frame."""
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", output_params=["-fps_mode", "passthrough"])
    width, height = next(reader)["size"]
    return np.stack([np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader])


def counted_decoders(monkeypatch) -> list[tuple[str, list[str]]]:
    """(path, input options) of every ffmpeg decoder started from now on (a seek shows as ``-ss``)."""
    starts, opener = [], imageio_ffmpeg.read_frames

    def counted(path, *args, input_params=None, **kwargs):
        starts.append((path, list(input_params or [])))
        return opener(path, *args, input_params=input_params, **kwargs)

    monkeypatch.setattr(imageio_ffmpeg, "read_frames", counted)
    return starts
