"""Track points through a video with a TAPIR model.

``Tracker`` holds a model on a device; ``Tracker.track(frames, queries)`` resizes the frames to the
model resolution, scales the queries there and the tracks back, and turns the logits into
visibility with the official postprocess::

    visible = (1 - sigmoid(occlusion)) * (1 - sigmoid(expected_dist)) > 0.5

Queries are (t, y, x) and tracks (x, y), in raster pixels of the input frames ((0, 0) is the
top-left corner of the top-left pixel).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tapforge.base.errors import TapforgeError
from tapforge.tapir.model import postprocess


@dataclass
class TrackResult:
    """Tracks in input-frame pixels: tracks [N,T,2] (x,y) float32, occluded [N,T] bool,
    visibility [N,T] float32 probability, queries [N,3] (t,y,x) as given."""

    tracks: np.ndarray
    occluded: np.ndarray
    visibility: np.ndarray
    queries: np.ndarray


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> cuda when available, else cpu; a cuda request without a GPU is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TapforgeError("device cuda was asked for but torch sees no GPU; fix: pass --device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise TapforgeError(
            f"there is no {device}: torch sees {torch.cuda.device_count()} GPU(s); fix: pick cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
        )
    return device


def grid_queries(k: int, height: int, width: int, frame: int = 0) -> np.ndarray:
    """A k x k grid of (t, y, x) queries at the cell centres of one frame, row by row."""
    if k < 1:
        raise TapforgeError(f"grid size {k} is not positive; fix: pass --grid K with K >= 1")
    ys = (np.arange(k) + 0.5) * height / k
    xs = (np.arange(k) + 0.5) * width / k
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([np.full(k * k, float(frame)), yy.ravel(), xx.ravel()], axis=-1).astype(np.float32)


def check_queries(queries: np.ndarray, num_frames: int, height: int, width: int) -> np.ndarray:
    """Validate (t, y, x) queries against the video; TapforgeError names every bad one (first 8)."""
    queries = np.asarray(queries, dtype=np.float64)
    if queries.ndim != 2 or queries.shape[1] != 3 or queries.shape[0] == 0:
        raise TapforgeError(
            f"queries must be a non-empty [N,3] array of (t, y, x), got shape {queries.shape}; fix: pass N rows of t, y, x"
        )
    t, y, x = queries.T
    bad = (
        ~np.isfinite(queries).all(axis=1)
        | (t < 0)
        | (t > num_frames - 1)
        | (y < 0)
        | (y > height)
        | (x < 0)
        | (x > width)
    )
    if bad.any():
        idx = np.flatnonzero(bad)
        shown = ", ".join(f"#{i} (t={t[i]:g}, y={y[i]:g}, x={x[i]:g})" for i in idx[:8])
        more = f" and {len(idx) - 8} more" if len(idx) > 8 else ""
        raise TapforgeError(
            f"{len(idx)} query point(s) lie outside the video ({num_frames} frames, {height}x{width} HxW): {shown}{more}; "
            f"fix: use 0 <= t <= {num_frames - 1}, 0 <= y <= {height}, 0 <= x <= {width} (pixels, t,y,x order)"
        )
    return queries


class Tracker:
    """A TAPIR model on a device, ready to track points in videos of any size and length.

    Args:
      model: a ``tapir.TAPIR`` (put in eval mode and moved to ``device``).
      device: "cpu", "cuda", "cuda:1" or None/"auto".
      bf16: run under bfloat16 autocast (CUDA with bf16 support, or CPU).
      resolution: (height, width) the frames are resized to; default the model's initial_resolution.
      query_chunk_size: queries per cost-volume chunk inside the model (bounds memory).
      query_batch_size: queries per forward pass (bounds output memory; shows progress).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device | None = None,
        bf16: bool = False,
        resolution: tuple[int, int] | None = None,
        query_chunk_size: int = 64,
        query_batch_size: int = 256,
    ):
        self.device = resolve_device(device)
        if bf16 and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TapforgeError("this GPU does not support bfloat16; fix: drop --bf16")
        self.model = model.to(self.device).eval()
        config = getattr(model, "config", {}) or {}
        self.resolution = tuple(int(v) for v in (resolution or config.get("initial_resolution", (256, 256))))
        if len(self.resolution) != 2 or any(v <= 0 or v % 8 for v in self.resolution):
            raise TapforgeError(f"resolution {self.resolution} must be two positive multiples of 8; fix: e.g. 256 256")
        self.bf16 = bf16
        self.query_chunk_size = int(query_chunk_size)
        self.query_batch_size = int(query_batch_size)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        overrides: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> "Tracker":
        """Load a checkpoint (see ``tapforge.tapir.checkpoint.load_model``) and wrap it."""
        from tapforge.tapir.checkpoint import load_model

        return cls(load_model(path, device="cpu", **(overrides or {})), device=device, **kwargs)

    def _video_tensor(self, frames: np.ndarray) -> torch.Tensor:
        """[1,T,h,w,3] float32 in [-1,1] at the model resolution, resized in chunks of frames."""
        height, width = self.resolution
        chunks = []
        for start in range(0, frames.shape[0], 32):
            chunk = torch.from_numpy(np.ascontiguousarray(frames[start : start + 32])).to(self.device)
            chunk = chunk.float() / 127.5 - 1.0 if frames.dtype == np.uint8 else chunk.float()
            if chunk.shape[1:3] != (height, width):
                downscale = chunk.shape[1] > height or chunk.shape[2] > width
                chunk = F.interpolate(
                    chunk.permute(0, 3, 1, 2),
                    size=(height, width),
                    mode="bilinear",
                    align_corners=False,
                    antialias=downscale,
                ).permute(0, 2, 3, 1)
            chunks.append(chunk)
        return torch.cat(chunks)[None].contiguous()

    @torch.inference_mode()
    def track(self, frames: np.ndarray, queries: np.ndarray, progress: bool = False) -> TrackResult:
        """Track (t, y, x) queries through frames [T,H,W,3] (uint8, or float in [-1,1])."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
            raise TapforgeError(f"frames must be [T,H,W,3] with T > 0, got {frames.shape}; fix: pass RGB video frames")
        if frames.dtype != np.uint8 and not (np.nanmin(frames) >= -1.0 - 1e-3 and np.nanmax(frames) <= 1.0 + 1e-3):
            raise TapforgeError(
                "float frames must lie in [-1, 1]; fix: pass uint8 frames or scale them as x / 127.5 - 1"
            )
        num_frames, height, width = frames.shape[:3]
        queries = check_queries(queries, num_frames, height, width)
        res_h, res_w = self.resolution
        to_model = np.array([1.0, res_h / height, res_w / width])
        video = self._video_tensor(frames)
        model_queries = torch.from_numpy(queries * to_model).float().to(self.device)[None]

        tracks, occlusion, expected_dist = [], [], []
        batches = range(0, len(queries), self.query_batch_size)
        for start in tqdm(
            batches, desc="tracking", unit="batch", disable=not progress or len(batches) < 2, leave=False
        ):
            batch = model_queries[:, start : start + self.query_batch_size]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.model(video, batch, is_training=False, query_chunk_size=self.query_chunk_size)
            tracks.append(out["tracks"][0].float())
            occlusion.append(out["occlusion"][0].float())
            if "expected_dist" in out:  # TAP-Net has no uncertainty head
                expected_dist.append(out["expected_dist"][0].float())
        visibility, occluded = postprocess(torch.cat(occlusion), torch.cat(expected_dist) if expected_dist else None)
        scale = torch.tensor([width / res_w, height / res_h], device=self.device)
        return TrackResult(
            tracks=(torch.cat(tracks) * scale).cpu().numpy().astype(np.float32),
            occluded=occluded.cpu().numpy(),
            visibility=visibility.cpu().numpy().astype(np.float32),
            queries=queries.astype(np.float32),
        )


def track(
    frames: np.ndarray,
    queries: np.ndarray,
    checkpoint: str | os.PathLike | None = None,
    model: torch.nn.Module | None = None,
    **tracker_kwargs: Any,
) -> TrackResult:
    """One-call tracking: ``track(frames, queries, checkpoint="tapir.pt")`` (or ``model=...``).

    ``tracker_kwargs`` go to :class:`Tracker` (device, bf16, resolution, query_chunk_size, ...).
    """
    if (checkpoint is None) == (model is None):
        raise TapforgeError("pass exactly one of checkpoint= or model=; fix: give the checkpoint path or a TAPIR model")
    tracker = (
        Tracker.from_checkpoint(checkpoint, **tracker_kwargs) if model is None else Tracker(model, **tracker_kwargs)
    )
    return tracker.track(frames, queries)
