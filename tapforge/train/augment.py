"""Sim2real augmentation, batched on the device with plain torch ops (no torchvision): `Sim2RealAugment`.

Applied after the batch reaches the accelerator. Geometry first (``warp``: a crop window per frame that drifts and
zooms smoothly over the clip, flips, resampled to the training resolution with antialiased bilinear weights that
keep tracks exact; then, off by default, TAPNext++'s camera roll and homography sequence), then occluder patches
(``occluders``), then photometric changes (``photometric``: colour, blur, sensor noise; ``jpeg``: JPEG-style
compression). Every augmentation has its own probability (drawn per clip) and range (``augment_config``).

Ground truth stays exact: tracks go through the same per-frame map as the pixels (the crop's affine map, then the
roll's wrap and rotation and the homography; raster convention, (0,0) = top-left corner of the top-left pixel),
points that leave the frame at any of these stages or fall under an occluder patch become occluded, and every
query is moved to a frame where its
point is still visible, or the point is replaced by another visible point of the same clip (``queries``).
"""

from __future__ import annotations

import torch

from tapforge.train.augment_config import AugmentConfig, HomographyConfig, RollConfig, validate_augment_config
from tapforge.train.batches import ClipBatch, TrainBatch
from tapforge.train.draws import coin
from tapforge.train.jpeg import jpeg_compress
from tapforge.train.occluders import paste_occluders
from tapforge.train.photometric import color_jitter, gaussian_blur, gray, motion_blur, sensor_noise
from tapforge.train.queries import query_points, repair_queries
from tapforge.train.sampling import outside_frame
from tapforge.train.warp import (
    homography_frames,
    homography_motion,
    homography_points,
    map_tracks,
    roll_frames,
    roll_motion,
    roll_points,
    sample_windows,
    warp_frames,
    window_maps,
)


def _apply_some(x: torch.Tensor, p: float, fn, gen) -> torch.Tensor:
    """Apply ``fn`` to the clips of x [B,...] that win a coin toss with probability ``p``."""
    if p <= 0:
        return x
    chosen = torch.nonzero(coin(x.shape[0], p, gen, x.device)).flatten()
    if chosen.numel() == 0:
        return x
    out = x.clone()
    out[chosen] = fn(x[chosen]).to(x.dtype)
    return out


def _camera_motion(
    x: torch.Tensor, tracks: torch.Tensor, occluded: torch.Tensor, roll: RollConfig, homography: HomographyConfig, gen
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TAPNext++'s camera roll, then its homography sequence, each on the clips of x [B,T,3,H,W] that win its coin
    toss; tracks [B,N,T,2] move with the pixels, and a point is occluded from the first stage that takes it out of the
    frame (the homography can bring an outside point back in, over the black border). Draws nothing for an
    augmentation whose probability is 0."""
    batch_n, frames_n, _, height, width = x.shape
    if roll.p > 0:
        chosen = torch.nonzero(coin(batch_n, roll.p, gen, x.device)).flatten()
        shift, angle = roll_motion(roll, batch_n, frames_n, gen, x.device)
        if chosen.numel():
            shift, angle = shift[chosen], angle[chosen]
            x, tracks = x.clone(), tracks.clone()
            x[chosen] = roll_frames(x[chosen], shift, angle)
            tracks[chosen] = roll_points(tracks[chosen], shift[:, None], angle[:, None], (height, width))
            occluded = occluded | outside_frame(tracks, height, width)
    if homography.p > 0:
        chosen = torch.nonzero(coin(batch_n, homography.p, gen, x.device)).flatten()
        warps = homography_motion(homography, batch_n, frames_n, (height, width), gen, x.device)
        if chosen.numel():
            warps = warps[chosen]
            x, tracks = x.clone(), tracks.clone()
            x[chosen] = homography_frames(x[chosen], warps, homography.fill)
            tracks[chosen] = homography_points(tracks[chosen], warps[:, None])
            occluded = occluded | outside_frame(tracks, height, width)
    return x, tracks, occluded


class Sim2RealAugment:
    """Callable that turns a raw training batch into an augmented model batch on its device."""

    def __init__(self, config: AugmentConfig, resolution: tuple[int, int]):
        validate_augment_config(config)
        self.config = config
        self.resolution = (int(resolution[0]), int(resolution[1]))

    def __call__(self, batch: ClipBatch, gen: torch.Generator | None = None) -> TrainBatch:
        """Clips (video uint8 [B,T,H,W,3], tracks [B,N,T,2], occluded [B,N,T], query_frame [B,N]) -> the
        model's batch at ``resolution`` (see :class:`~tapforge.train.batches.TrainBatch`; ``source_index`` as in
        :func:`repair_queries`)."""
        cfg = self.config
        video = batch.video
        batch_n, frames_n, in_h, in_w, _ = video.shape
        out_h, out_w = self.resolution
        device = video.device
        x = video.permute(0, 1, 4, 2, 3).reshape(batch_n * frames_n, 3, in_h, in_w).float() / 255.0
        tracks, occluded = batch.tracks.float(), batch.occluded.bool()

        if cfg.enabled:
            cx, cy, w, h = sample_windows(cfg, batch_n, frames_n, in_h, in_w, gen, device)
            hflip = coin(batch_n, cfg.flip.horizontal_p, gen, device)
            vflip = coin(batch_n, cfg.flip.vertical_p, gen, device)
        else:
            full = torch.ones(batch_n, frames_n, device=device)
            cx, cy, w, h = full * in_w / 2, full * in_h / 2, full * in_w, full * in_h
            hflip = vflip = torch.zeros(batch_n, dtype=torch.bool, device=device)
        ax, bx, ay, by = window_maps(cx, cy, w, h, (out_h, out_w), hflip, vflip)
        if (in_h, in_w) != (out_h, out_w) or cfg.enabled:
            x = warp_frames(x, ax, bx, ay, by, (out_h, out_w))
        tracks = map_tracks(tracks, ax, bx, ay, by)
        occluded = occluded | outside_frame(tracks, out_h, out_w)
        x = x.reshape(batch_n, frames_n, 3, out_h, out_w)

        if cfg.enabled:
            if cfg.roll.p > 0 or cfg.homography.p > 0:
                x, tracks, occluded = _camera_motion(x, tracks, occluded, cfg.roll, cfg.homography, gen)
            if cfg.occluder.p > 0:
                x, occluded = paste_occluders(x, tracks, occluded, cfg.occluder, gen)
            x = _apply_some(x, cfg.color.p, lambda v: color_jitter(v, cfg.color, gen), gen)
            x = _apply_some(x, cfg.color.grayscale_p, lambda v: gray(v).expand_as(v), gen)
            x = _apply_some(x, cfg.blur.gaussian_p, lambda v: gaussian_blur(v, cfg.blur.gaussian_sigma, gen), gen)
            x = _apply_some(x, cfg.blur.motion_p, lambda v: motion_blur(v, cfg.blur.motion_length, gen), gen)
            x = _apply_some(x, cfg.noise.p, lambda v: sensor_noise(v, cfg.noise, gen), gen)
            x = _apply_some(x, cfg.jpeg.p, lambda v: jpeg_compress(v, cfg.jpeg.quality, gen), gen)

        tracks, occluded, query_frame, source, empty = repair_queries(tracks, occluded, batch.query_frame.long(), gen)
        return TrainBatch(
            video=x.permute(0, 1, 3, 4, 2) * 2.0 - 1.0,
            tracks=tracks,
            occluded=occluded,
            query_frame=query_frame,
            query_points=query_points(tracks, query_frame),
            source_index=source,
            no_visible_track=empty,
            object_ids=batch.object_ids.gather(1, source),
            keys=batch.keys,
        )
