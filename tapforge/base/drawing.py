"""Draw point tracks on video frames (numpy + PIL only, no torch).

Visible points are filled discs with a dark rim and a fading trail of their recent visible
path; hidden (occluded) points are hollow circles with a cross.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw


def track_colors(num_tracks: int) -> np.ndarray:
    """Distinct saturated colours, uint8 [num_tracks, 3], hues spread around the colour wheel."""
    hues = (np.arange(num_tracks) * 0.618033988749895) % 1.0
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.85, 1.0)] for h in hues], np.uint8).reshape(
        num_tracks, 3
    )


OVERLAY_MIN_SIDE = 384  # overlays are drawn on frames enlarged to at least this many pixels on their smaller side


def enlarge(frames: np.ndarray, min_side: int = OVERLAY_MIN_SIDE) -> tuple[np.ndarray, int]:
    """Frames [T,H,W,3] enlarged by the smallest whole factor (pixel repeat, so every pixel stays as rendered) that
    makes the smaller side at least ``min_side``, and that factor (multiply (x, y) raster tracks by it)."""
    factor = max(1, -(-int(min_side) // min(frames.shape[1:3])))
    return (frames.repeat(factor, axis=1).repeat(factor, axis=2) if factor > 1 else frames), factor


def draw_tracks(
    frames: np.ndarray,
    tracks: np.ndarray,
    occluded: np.ndarray,
    colors: np.ndarray | None = None,
    trail: int = 8,
    radius: float | None = None,
) -> np.ndarray:
    """Overlay tracks on frames and return new uint8 frames [T,H,W,3] (the input is not modified).

    Args:
      frames: uint8 [T,H,W,3].
      tracks: [N,T,2] (x, y) raster pixels, (0,0) = top-left corner of the top-left pixel.
      occluded: bool [N,T], True where the point is hidden.
      colors: uint8 [N,3] per-track colours (default :func:`track_colors`).
      trail: how many past frames of each visible path to draw (0 for none).
      radius: marker radius in pixels (default about 1% of the smaller frame side, at least 2).
    """
    frames = np.asarray(frames)
    tracks = np.asarray(tracks, dtype=np.float64)
    occluded = np.asarray(occluded, dtype=bool)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    num_frames, height, width = frames.shape[:3]
    if tracks.ndim != 3 or tracks.shape[1:] != (num_frames, 2) or occluded.shape != tracks.shape[:2]:
        raise ValueError(
            f"tracks must be [N,{num_frames},2] and occluded [N,{num_frames}], got {tracks.shape} and {occluded.shape}"
        )
    num_tracks = tracks.shape[0]
    colors = track_colors(num_tracks) if colors is None else np.asarray(colors, np.uint8).reshape(num_tracks, 3)
    radius = max(2.0, min(height, width) / 100.0) if radius is None else float(radius)
    line_width = max(1, int(round(radius / 2)))
    finite = np.all(np.isfinite(tracks), axis=-1)
    shown = finite & ~occluded

    out = np.empty_like(frames)
    for t in range(num_frames):
        image = Image.fromarray(frames[t])
        draw = ImageDraw.Draw(image, "RGBA")
        for s in range(max(0, t - trail), t):
            alpha = int(255 * (s - t + trail + 1) / (trail + 1))
            both = shown[:, s] & shown[:, s + 1]
            for n in np.flatnonzero(both):
                draw.line(
                    [tuple(tracks[n, s]), tuple(tracks[n, s + 1])], fill=(*colors[n].tolist(), alpha), width=line_width
                )
        for n in range(num_tracks):
            if not finite[n, t]:
                continue
            x, y = tracks[n, t]
            box = [x - radius, y - radius, x + radius, y + radius]
            color = tuple(colors[n].tolist())
            if shown[n, t]:
                draw.ellipse(box, fill=color, outline=(0, 0, 0), width=1)
            else:
                r = radius * 0.7
                draw.ellipse(box, outline=color, width=line_width)
                draw.line([(x - r, y - r), (x + r, y + r)], fill=color, width=1)
                draw.line([(x - r, y + r), (x + r, y - r)], fill=color, width=1)
        out[t] = np.asarray(image)
    return out
