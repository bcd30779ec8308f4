"""Training queries after augmentation: every query moved to a frame where its point is visible, and (t, y, x)
query points read off the tracks."""

from __future__ import annotations

import torch


def repair_queries(
    tracks: torch.Tensor, occluded: torch.Tensor, query_frame: torch.Tensor, gen
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Make every query frame a frame where its point is visible.

    A query whose point became hidden moves to the nearest visible frame of the same track; a
    track with no visible frame left is replaced by a random visible track of the same clip.
    Returns (tracks, occluded, query_frame, source_index [B,N] (which input row each output row
    is), clip_has_no_visible_track [B]).
    """
    batch, num, frames = occluded.shape
    source = torch.arange(num, device=tracks.device)[None].expand(batch, num)
    visible = ~occluded
    ok = visible.gather(-1, query_frame[..., None])[..., 0]
    empty = torch.zeros(batch, dtype=torch.bool, device=tracks.device)
    if bool(ok.all()):
        return tracks, occluded, query_frame, source, empty
    t = torch.arange(frames, device=tracks.device)
    distance = (t[None, None] - query_frame[..., None]).abs().float() + (~visible).float() * (2 * frames)
    query_frame = torch.where(ok, query_frame, distance.argmin(dim=-1))
    alive = visible.any(dim=-1)  # [B,N]
    empty = ~alive.any(dim=-1)
    if bool((~alive).any()):
        weights = alive.float() + empty[:, None].float()  # a clip with no visible track keeps its rows
        donor = torch.multinomial(weights, num, replacement=True, generator=gen)  # [B,N]
        source = torch.where(alive | empty[:, None], source, donor)
        tracks = tracks.gather(1, source[..., None, None].expand(-1, -1, frames, 2))
        occluded = occluded.gather(1, source[..., None].expand(-1, -1, frames))
        query_frame = query_frame.gather(1, source)
    return tracks, occluded, query_frame, source, empty


def query_points(tracks: torch.Tensor, query_frame: torch.Tensor) -> torch.Tensor:
    """(t, y, x) queries [B,N,3] read off the tracks [B,N,T,2] at the query frames [B,N]."""
    xy = tracks.gather(2, query_frame[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
    return torch.stack([query_frame.to(tracks.dtype), xy[..., 1], xy[..., 0]], dim=-1)
