"""`tapforge track`: track points through a video and write an overlay and/or the tracks.

    tapforge track VIDEO --checkpoint FILE [--grid K | --points FILE] --out overlay.mp4 [--save tracks.npz|csv]

Query files (--points): a CSV whose header names the columns ``t``, ``x`` and ``y`` in any order
(so "t,x,y" and "t,y,x" both work; other columns are ignored), or an NPZ with ``queries`` [N,3]
in (t, y, x) order or with separate ``t``, ``x``, ``y`` arrays. Coordinates are pixels of the
input video, t a frame index from 0.

Saved tracks: NPZ with tracks [N,T,2] (x,y), occluded [N,T] bool, visibility [N,T], queries [N,3]
(t,y,x), fps, height, width; or CSV with one row per point and frame: point,frame,x,y,occluded,visibility.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
import zipfile

import numpy as np

from tapforge.base.arguments import Parser, add_number
from tapforge.base.atomic import atomic_write, check_output_file, remove_stale_temporaries
from tapforge.base.errors import TapforgeError
from tapforge.tapir.cli_options import add_run_options, tracker_from_args

SAVE_SUFFIXES = (".npz", ".csv")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="tapforge track",
        description="Track points through a video (file or image folder) with TAPIR, TAP-Net or TAPNext.",
        epilog="--points CSV needs a header naming t, x, y (any order); NPZ holds queries [N,3] as (t,y,x).",
    )
    p.add_argument("video", help="video file (mp4/avi/mov/mkv/webm/gif) or a folder of frame images")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="tapnet .pt or checkpoint.npy, TAPNext .npz or .pt, tapforge .ckpt or .safetensors",
    )
    q = p.add_mutually_exclusive_group()
    add_number(
        q, "--grid", int, 1, 256, what="K", metavar="K", help="track a KxK grid of points on --grid-frame (default 8)"
    )
    q.add_argument("--points", metavar="FILE", help="queries as CSV (header t,x,y in any order) or NPZ")
    add_number(p, "--grid-frame", int, 0, default=0, help="frame of the --grid queries (default 0)")
    p.add_argument("--out", help="overlay video to write (.mp4, .gif, .webm, .avi, .mov, .mkv)")
    p.add_argument("--save", help="tracks to write (.npz or .csv)")
    add_number(
        p,
        "--resolution",
        int,
        8,
        4096,
        step=8,
        nargs=2,
        metavar=("H", "W"),
        help="resize frames to H W before tracking (multiples of 8; default the model's initial resolution; larger sizes add refinement at that size)",
    )
    add_number(p, "--fps", float, 0, 1000, above=True, help="overlay frame rate (default: the video's)")
    add_number(p, "--trail", int, 0, default=8, help="frames of trail drawn behind each point (default 8)")
    add_run_options(p)
    return p


def read_points(path: str) -> np.ndarray:
    """Queries [N,3] (t, y, x) from a CSV with a t/x/y header or an NPZ (see module docstring)."""
    if not os.path.isfile(path):
        raise TapforgeError(f"points file {path!r} does not exist; fix: check the path")
    if path.lower().endswith(".npz"):
        try:
            with np.load(path) as data:
                if "queries" in data:
                    queries = np.asarray(data["queries"], dtype=np.float64)
                elif all(k in data for k in "txy") and len({np.size(data[k]) for k in "txy"}) == 1:
                    queries = np.stack([np.ravel(data[k]) for k in "tyx"], axis=-1).astype(np.float64)
                else:
                    queries = None
                keys = ", ".join(f"{k} {data[k].shape}" for k in data.files)
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise TapforgeError(f"cannot read points file {path!r} ({err}); fix: write it with numpy.savez") from None
        if queries is None or queries.ndim != 2 or queries.shape[1] != 3:
            raise TapforgeError(
                f"{path!r} holds {keys or 'nothing'}; fix: store 'queries' [N,3] as (t,y,x) or equal-length arrays t, x, y"
            )
        return queries
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if not all(k in header for k in "txy"):
        raise TapforgeError(
            f"points CSV {path!r} needs a header line naming the columns t, x and y (in any order); "
            f"found {rows[0] if rows else 'an empty file'}; fix: add a first line such as t,x,y"
        )
    cols = [header.index(k) for k in "tyx"]
    try:
        queries = np.array([[float(row[c]) for c in cols] for row in rows[1:]], dtype=np.float64)
    except (ValueError, IndexError) as err:
        raise TapforgeError(
            f"points CSV {path!r} has a malformed row ({err}); fix: every row needs numeric t, x, y"
        ) from None
    if queries.size == 0:
        raise TapforgeError(f"points CSV {path!r} has no rows; fix: add one line per query point")
    return queries


def save_tracks(path: str, result, fps: float, height: int, width: int) -> None:
    """Write tracks as NPZ or CSV (by suffix), atomically."""
    if path.lower().endswith(".npz"):

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    tracks=result.tracks,
                    occluded=result.occluded,
                    visibility=result.visibility,
                    queries=result.queries,
                    fps=np.float32(fps),
                    height=np.int32(height),
                    width=np.int32(width),
                )
    else:

        def write(tmp: str) -> None:
            num_points, num_frames = result.occluded.shape
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["point", "frame", "x", "y", "occluded", "visibility"])
                for n in range(num_points):
                    for t in range(num_frames):
                        x, y = result.tracks[n, t]
                        writer.writerow(
                            [n, t, f"{x:.3f}", f"{y:.3f}", int(result.occluded[n, t]), f"{result.visibility[n, t]:.4f}"]
                        )

    atomic_write(path, write)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not args.out and not args.save:
        raise TapforgeError("nothing to write; fix: pass --out overlay.mp4 and/or --save tracks.npz")
    if args.save and not args.save.lower().endswith(SAVE_SUFFIXES):
        raise TapforgeError(f"--save {args.save!r} has an unknown suffix; fix: use .npz or .csv")
    if args.out:
        from tapforge.base.video import WRITE_SUFFIXES

        if not args.out.lower().endswith(WRITE_SUFFIXES):
            raise TapforgeError(
                f"--out {args.out!r} has an unknown suffix; fix: use one of {', '.join(WRITE_SUFFIXES)}"
            )
    inputs = {"the input video": args.video, "the checkpoint": args.checkpoint, "the points file": args.points}
    for flag, path in (("--out", args.out), ("--save", args.save)):
        if path:  # before the work: a path that cannot be written would lose the tracks
            check_output_file(path, flag, inputs)
            remove_stale_temporaries(path)
    from tapforge.base.drawing import draw_tracks, enlarge
    from tapforge.base.video import read_video, write_video
    from tapforge.tapir.inference import grid_queries

    frames, video_fps = read_video(args.video)
    num_frames, height, width = frames.shape[:3]
    if args.points:
        queries = read_points(args.points)
    else:
        if not 0 <= args.grid_frame < num_frames:
            raise TapforgeError(
                f"--grid-frame {args.grid_frame} is outside the video's {num_frames} frames; fix: use 0..{num_frames - 1}"
            )
        queries = grid_queries(8 if args.grid is None else args.grid, height, width, args.grid_frame)

    tracker = tracker_from_args(args, resolution=tuple(args.resolution) if args.resolution else None)
    print(f"tracking {len(queries)} points through {num_frames} frames ({width}x{height}) on {tracker.device}")
    start = time.perf_counter()
    result = tracker.track(frames, queries, progress=True)
    seconds = time.perf_counter() - start
    print(
        f"tracked in {seconds:.1f} s ({num_frames / seconds:.1f} frames/s); {100 * (1 - result.occluded.mean()):.0f}% of points visible"
    )

    if args.save:
        save_tracks(args.save, result, video_fps, height, width)
        print(f"wrote {args.save}")
    if args.out:
        enlarged, scale = enlarge(frames)  # a small video is drawn on at a readable size
        overlay = draw_tracks(enlarged, result.tracks * scale, result.occluded, trail=args.trail)
        write_video(args.out, overlay, args.fps or video_fps)
        print(f"wrote {args.out}")
    return 0
