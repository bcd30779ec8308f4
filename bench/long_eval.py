"""Long-clip evaluation benchmark: peak memory and time of `tapforge eval` on one long video, whole and chunked.

    python bench/long_eval.py [--frames 1024] [--size 256] [--queries 256] [--chunk-frames 256] [--model tiny|tapir]

Writes a TAP-Vid DAVIS-format pickle of one --frames-long --size x --size clip (a noise texture panning by an eighth
of its width over the clip, so the tracks are exact) with --queries tracks, each hidden over a few random gaps of 2 to 120 frames,
then runs `tapforge eval --query-mode first --device cpu` on it as a child process three ways: stay-put only (no
model: the floor of reading the pickle and holding the clip), the model on the whole clip (--chunk-frames 0) and in
windows (--chunk-frames N). It prints each child's peak RSS (the kernel's maxrss of that process), wall seconds, AJ
and AJ_RD, and the largest difference of any model metric between whole and chunked. ``--model tiny`` is TAPIR
with a 32-wide mixer and one ResNet block per stage (the feature grids, which are what grows with the clip, have
the official sizes, and so has the temporal reach: 4 iterations x 12 blocks, 96 frames each side); ``tapir`` is the
official TAPIR config (hours on a CPU at 1024 frames).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tapforge.tapir import TAPIR
from tapforge.tapir.checkpoint import save_safetensors
from tapforge.tapir.inference import temporal_reach
from tapforge.tapir.tapvid import write_tapvid_pickle

MODELS = {
    "tiny": dict(mixer_hidden_dim=32, blocks_per_group=(1, 1, 1, 1)),
    "tapir": {},
}


def make_clip(num_frames: int, size: int, num_tracks: int, seed: int = 0):
    """A panning noise texture with exact tracks; each track hidden over 1-4 gaps of 2-120 frames."""
    rng = np.random.default_rng(seed)
    shift = np.arange(num_frames) * (size // 8) // num_frames  # whole pixels: an eighth of the width in all
    coarse = rng.integers(0, 256, (size // 4 + 1, (size + int(shift[-1])) // 4 + 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(coarse, 4, axis=0), 4, axis=1)
    texture = (texture.astype(np.int16) + rng.integers(-20, 21, texture.shape)).clip(0, 255).astype(np.uint8)
    video = np.stack([texture[:size, s : s + size] for s in shift])
    start = rng.uniform(0.1, 0.9, (num_tracks, 2)) * size
    tracks = np.repeat(start[:, None], num_frames, axis=1)
    tracks[..., 0] -= shift[None]  # the content moves left as the window pans right
    occluded = (tracks < 0).any(axis=-1) | (tracks >= size).any(axis=-1)
    for row in occluded:
        for _ in range(rng.integers(1, 5)):
            first = rng.integers(1, num_frames)
            row[first : first + rng.integers(2, 121)] = True
    occluded[:, 0] = False  # every track is queried on frame 0 (query mode first)
    return video, np.clip(tracks, 0, size).astype(np.float32), occluded


def run_eval(argv: list[str], out: Path) -> tuple[float, float, dict]:
    """Run ``tapforge eval argv --json out`` as a child; (peak RSS MiB, wall seconds, its report)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        command = [sys.executable, "-m", "tapforge.cli", "eval", *argv, "--json", str(out)]
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # the rusage of this child alone
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        if child.returncode:
            log.seek(0)
            raise SystemExit(f"tapforge eval failed (exit code {child.returncode}):\n{log.read().decode()[-2000:]}")
    report = json.loads(out.read_text())["datasets"]["tapvid_davis"]
    return usage.ru_maxrss / 1024, seconds, report  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--size", type=int, default=256, help="frame width and height (the eval resolution is 256)")
    parser.add_argument("--queries", type=int, default=256, help="tracks, one query each (query mode first)")
    parser.add_argument("--chunk-frames", type=int, default=256, help="--chunk-frames of the chunked run")
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video, tracks, occluded = make_clip(args.frames, args.size, args.queries)
        pickle_path = write_tapvid_pickle(tmp / "long.pkl", [("long", video, tracks, occluded)])
        del video
        torch.manual_seed(0)
        model = TAPIR(**MODELS[args.model])
        checkpoint = str(save_safetensors(model, tmp / "model.safetensors"))
        reach = temporal_reach(model, (256, 256))
        print(
            f"tapforge eval, one clip of {args.frames} frames at {args.size}x{args.size}, {args.queries} queries "
            f"(first), {args.model} TAPIR (temporal reach {reach[0]} frames each side), cpu, "
            f"{torch.get_num_threads()} threads; one run each"
        )
        common = ["--tapvid-davis", pickle_path, "--device", "cpu"]
        runs = {
            "stay-put only": common,
            "whole clip": common + ["--checkpoint", checkpoint, "--chunk-frames", "0"],
            f"chunked {args.chunk_frames}": common
            + ["--checkpoint", checkpoint, "--chunk-frames", str(args.chunk_frames)],
        }
        print(f"{'run':<16}{'peak RSS MiB':>14}{'seconds':>10}{'AJ':>8}{'AJ_RD':>8}")
        results = {}
        for name, argv in runs.items():
            rss, seconds, report = run_eval(argv, tmp / "m.json")
            metrics = report.get("model", report["stay_put"])["mean"]
            results[name] = (rss, metrics)
            print(
                f"{name:<16}{rss:14.0f}{seconds:10.1f}{100 * metrics['average_jaccard']:8.1f}"
                f"{100 * (metrics['AJ_RD'] if metrics['AJ_RD'] is not None else float('nan')):8.1f}"
            )
        (whole_rss, whole), (chunk_rss, chunked) = results["whole clip"], results[f"chunked {args.chunk_frames}"]
        diff = max(abs(whole[k] - chunked[k]) for k in whole if whole[k] is not None and chunked[k] is not None)
        print(f"peak RSS whole / chunked: {whole_rss / chunk_rss:.2f}x; largest model metric difference: {diff:.2g}")


if __name__ == "__main__":
    main()
