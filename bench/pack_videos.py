"""Packing and reading long real videos: cost per frame as the video grows, before-style against now, side by side.

    python bench/pack_videos.py [--lengths 100 3000] [--size 128] [--repeats 3] [--draws 20]

Writes synthetic 128x128 mp4s (the project's video writer, 30 fps) of each length, then packs each with
`tapforge pack-videos`' writer (24-frame clips, stride 1, JPEG) two ways: before-style, every clip decoded from frame
0 (as pack-videos did), and now, one decoder pass per video. Prints the median ms per packed frame of each, the ratio
of the per-frame cost of the longest video to the shortest (about 1: linear in the video's length), and whether both
ways packed the same bytes. Then ms per random 24-frame clip read from the longest video, as the real-video reader
draws them: decoded from frame 0 against a seek to the clip (the same random clips for both).

Times are CPU seconds of this process and the ffmpeg processes it ran (the machine may be shared), on one core.
The defaults take about 6 minutes, most of it the before-style packing of the 3000-frame video.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tarfile
import tempfile

import numpy as np

from tapforge.base.video import write_video
from tapforge.train import pack_videos
from tapforge.train.video_sources import count_frames, frame_grid, read_frames

NUM_FRAMES = 24


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the ffmpeg decoders)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def synthetic_video(path: str, length: int, size: int) -> str:
    """A panning random texture with a frame counter in its corner (every frame differs)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size * 2, size * 2, 3), np.uint8)
    frames = np.empty((length, size, size, 3), np.uint8)
    for t in range(length):
        y, x = (3 * t) % size, (7 * t) % size
        frames[t] = base[y : y + size, x : x + size]
        frames[t, :8, :8] = t % 256
    return write_video(path, frames, fps=30)


def before_style(specs):
    """The clips' frames as pack-videos read them before: every clip decoded from frame 0."""
    for spec in specs:
        yield read_frames(spec.source, spec.start + spec.stride * np.arange(spec.count))


def members(out: str) -> list[bytes]:
    """The bytes of every entry of every shard (a tar header's mtime is the packing time, so not compared)."""
    found = []
    for name in sorted(n for n in os.listdir(out) if n.endswith(".tar")):
        with tarfile.open(os.path.join(out, name)) as tar:
            found += [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    return found


def pack_ms_per_frame(video: str, out: str, style) -> tuple[float, int]:
    """(ms per packed frame, frames packed) of one packing run of ``video`` into the new folder ``out``."""
    saved = pack_videos._clip_frames
    pack_videos._clip_frames = style or saved
    try:
        start = cpu_seconds()
        manifest = pack_videos.pack_videos([video], out, num_frames=NUM_FRAMES)
        seconds = cpu_seconds() - start
    finally:
        pack_videos._clip_frames = saved
    frames = manifest["num_samples"] * NUM_FRAMES
    return 1000 * seconds / frames, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 3000])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # ffmpeg inherits the one core
    with tempfile.TemporaryDirectory() as tmp:
        videos = {n: synthetic_video(os.path.join(tmp, f"v{n}.mp4"), n, args.size) for n in args.lengths}
        per_frame = {}
        print(f"packing {NUM_FRAMES}-frame clips of {args.size}x{args.size} mp4s, median of {args.repeats}:")
        for n, video in videos.items():
            for label, style in (("before", before_style), ("now", None)):
                runs = [
                    pack_ms_per_frame(video, os.path.join(tmp, f"{label}{n}-{r}"), style) for r in range(args.repeats)
                ]
                per_frame[label, n] = statistics.median(ms for ms, _ in runs)
            same = members(os.path.join(tmp, f"before{n}-0")) == members(os.path.join(tmp, f"now{n}-0"))
            print(
                f"  {n:5d} frames ({runs[0][1]} packed): before {per_frame['before', n]:.2f} ms/frame, "
                f"now {per_frame['now', n]:.2f} ms/frame ({per_frame['before', n] / per_frame['now', n]:.1f}x); "
                f"same shard entries: {same}"
            )
        short, long = min(args.lengths), max(args.lengths)
        for label in ("before", "now"):
            ratio = per_frame[label, long] / per_frame[label, short]
            print(f"  {label}: per-frame cost at {long} frames / at {short} frames = {ratio:.2f}")

        video = videos[long]
        start = cpu_seconds()
        total = count_frames(video)
        counted = cpu_seconds()
        grid = frame_grid(video, total)
        print(
            f"once per video and reader: counting frames {1000 * (counted - start):.0f} ms, "
            f"timestamp grid {1000 * (cpu_seconds() - counted):.0f} ms"
        )
        rng = np.random.default_rng(0)
        starts = rng.integers(0, total - NUM_FRAMES + 1, args.draws)
        print(f"random {NUM_FRAMES}-frame clips of the {long}-frame video ({args.draws} draws, grid {grid}):")
        for label, used in (("from frame 0", None), ("seek", grid)):
            times = []
            for s in starts:
                start = cpu_seconds()
                read_frames(video, np.arange(s, s + NUM_FRAMES), used)
                times.append(1000 * (cpu_seconds() - start))
            print(f"  {label}: median {statistics.median(times):.0f} ms per clip (max {max(times):.0f})")


if __name__ == "__main__":
    main()
