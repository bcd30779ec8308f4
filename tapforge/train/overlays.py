"""Track-overlay videos of validation clips, sent to every logger that can show them.

TensorBoard gets an animated GIF image summary, W&B a ``wandb.Video``; the GIF is also written
to ``<log_dir>/overlays/`` so that runs logged only to CSV have them too. Each overlay shows the
ground truth (left) next to the prediction (right): filled discs are visible points, hollow
crossed circles occluded ones.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
from PIL import Image

from tapforge.base.atomic import atomic_write_bytes
from tapforge.base.drawing import draw_tracks, enlarge


def overlay_frames(
    video: np.ndarray,
    gt_tracks: np.ndarray,
    gt_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    max_points: int = 40,
) -> np.ndarray:
    """Ground truth | prediction side by side: uint8 [T,h,2w,3] from video [T,H,W,3] in [-1,1].

    At most ``max_points`` tracks, spread over the query list, on frames enlarged (`tapforge.base.drawing.enlarge`)
    so that the markers stay readable.
    """
    frames, scale = enlarge(np.clip(np.round((np.asarray(video, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8))
    rows = np.unique(np.linspace(0, gt_tracks.shape[0] - 1, min(max_points, gt_tracks.shape[0])).round().astype(int))
    left = draw_tracks(frames, gt_tracks[rows] * scale, gt_occluded[rows])
    right = draw_tracks(frames, pred_tracks[rows] * scale, pred_occluded[rows])
    return np.concatenate([left, right], axis=2)


def gif_bytes(frames: np.ndarray, fps: float = 10.0) -> bytes:
    """Encode uint8 frames [T,H,W,3] as a looping animated GIF."""
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def _tensorboard_gif(writer, tag: str, frames: np.ndarray, data: bytes, step: int) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary

    height, width = frames.shape[1:3]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def log_overlay(trainer, tag: str, frames: np.ndarray, folder: str | None, fps: float = 10.0) -> str | None:
    """Send an overlay video to the trainer's loggers and write it into ``folder``; returns the file path.

    Called on one rank only, so it must not touch collective trainer properties such as
    ``trainer.log_dir`` (a broadcast under DDP): the caller resolves ``folder`` on every rank.
    """
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    step = trainer.global_step
    data = gif_bytes(frames, fps)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            _tensorboard_gif(logger.experiment, tag, frames, data, step)
        elif isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.log({tag: wandb.Video(np.transpose(frames, (0, 3, 1, 2)), fps=fps, format="gif")})
    if folder is None:
        return None
    path = os.path.join(folder, f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', tag)}_step{step:07d}.gif")
    return atomic_write_bytes(path, data)
