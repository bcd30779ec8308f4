"""Occluder patches pasted over the augmented clip; the points under a patch become occluded."""

from __future__ import annotations

import torch

from tapforge.train.augment_config import OccluderConfig
from tapforge.train.draws import coin, uniform


def paste_occluders(
    frames: torch.Tensor, tracks: torch.Tensor, occluded: torch.Tensor, config: OccluderConfig, gen
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste moving rectangular patches into some clips; points they cover become occluded.

    ``frames`` [B,T,3,H,W] in [0,1], ``tracks`` [B,N,T,2], ``occluded`` [B,N,T]. Patches have
    integer pixel edges: a patch spanning columns [x0, x1) covers the points with x0 <= x < x1.
    """
    batch, frames_n, _, height, width = frames.shape
    device = frames.device
    chosen = coin(batch, config.p, gen, device)
    if not bool(chosen.any()):
        return frames, occluded
    count = torch.randint(1, config.max_patches + 1, (batch,), generator=gen, device=device)
    t = torch.arange(frames_n, device=device)
    cols = torch.arange(width, device=device)
    rows = torch.arange(height, device=device)
    # another clip's content, flipped so that it differs from the host clip even for a batch of one
    donors = torch.flip(frames[torch.randperm(batch, generator=gen, device=device)], dims=(-2, -1))
    frames = frames.clone()
    occluded = occluded.clone()
    for k in range(config.max_patches):
        on = chosen & (count > k)
        pw = (uniform(batch, *config.size, gen, device) * width).round().clamp(1, width)
        ph = (uniform(batch, *config.size, gen, device) * height).round().clamp(1, height)
        x0 = torch.rand(batch, generator=gen, device=device) * (width - pw + 1)
        y0 = torch.rand(batch, generator=gen, device=device) * (height - ph + 1)
        speed = uniform((2, batch), -config.max_speed, config.max_speed, gen, device)
        start = torch.randint(0, frames_n, (batch,), generator=gen, device=device)
        stop = start + 1 + (torch.rand(batch, generator=gen, device=device) * (frames_n - start)).long()
        active = on[:, None] & (t[None] >= start[:, None]) & (t[None] < stop[:, None])  # [B,T]
        dt = (t[None] - start[:, None]).float()
        left = (x0[:, None] + speed[0][:, None] * width * dt).round()  # [B,T]
        top = (y0[:, None] + speed[1][:, None] * height * dt).round()
        right, bottom = left + pw[:, None], top + ph[:, None]
        in_cols = (cols[None, None] >= left[..., None]) & (cols[None, None] < right[..., None])  # [B,T,W]
        in_rows = (rows[None, None] >= top[..., None]) & (rows[None, None] < bottom[..., None])  # [B,T,H]
        mask = (in_rows[..., :, None] & in_cols[..., None, :]) & active[..., None, None]  # [B,T,H,W]

        replace = coin(batch, config.replace_p, gen, device)[:, None, None, None, None]
        colour = torch.rand((batch, 1, 3, 1, 1), generator=gen, device=device)
        grain = uniform((batch, 1, 1, 1, 1), 0.0, 0.1, gen, device)
        texture = torch.randn((batch, 1, 3, height, width), generator=gen, device=device)
        flat = (colour + grain * texture).clamp(0, 1)
        content = torch.where(replace, donors, flat)
        frames = torch.where(mask[:, :, None], content, frames)

        x, y = tracks[..., 0], tracks[..., 1]  # [B,N,T]
        covered = (x >= left[:, None]) & (x < right[:, None]) & (y >= top[:, None]) & (y < bottom[:, None])
        occluded = occluded | (covered & active[:, None])
    return frames, occluded
