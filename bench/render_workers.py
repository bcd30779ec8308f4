"""Worker speed-up: the same scenes rendered with 1 worker process and with more, side by side.

    python bench/render_workers.py [--config movi_e] [--scenes 8] [--workers 1 2] [--repeats 3]
                                   [--resolution 128] [--samples 16] [--frames 24]

Each run is a fresh `tapforge synth render` process rendering --scenes scenes (one shard each) into a new folder,
so Python and Blender start-up are part of the figure, as for a user.
Runs alternate between the worker counts so a change in machine load hits every count alike, and the load
average is printed: on a busy machine the figures say little. Prints s/scene per run, the medians and the
speed-up of each count over the first, and checks that every run wrote byte-identical shards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tapforge.synth.render_job import usable_cores
from tapforge.synth.shards import sha256_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="movi_e")
    parser.add_argument("--scenes", type=int, default=8, help="scenes per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    parser.add_argument("--repeats", type=int, default=3, help="runs per worker count (medians are reported)")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--frames", type=int, default=24)
    args = parser.parse_args()
    overrides = [
        f"render.resolution={args.resolution}",
        f"render.samples={args.samples}",
        f"scene.num_frames={args.frames}",
        "outputs.scenes_per_shard=1",
    ]
    print(
        f"{args.config} {args.resolution}x{args.resolution} {args.samples} spp {args.frames} frames, "
        f"{args.scenes} scenes per run, {usable_cores()} usable cores, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'run':>3} {'workers':>7} {'threads':>7} {'s/scene':>8}")
    seconds: dict[int, list[float]] = {w: [] for w in args.workers}
    reference: list[str] | None = None
    with tempfile.TemporaryDirectory(prefix="tapforge-bench-") as tmp:
        for repeat in range(args.repeats):
            for workers in args.workers:
                out = Path(tmp) / f"w{workers}-r{repeat}"
                command = [
                    sys.executable,
                    "-m",
                    "tapforge.cli",
                    "synth",
                    "render",
                    "--config",
                    args.config,
                    "--out",
                    str(out),
                    "--num-scenes",
                    str(args.scenes),
                    "--workers",
                    str(workers),
                    "--no-progress",
                    *[a for o in overrides for a in ("--set", o)],
                ]
                start = time.perf_counter()
                result = subprocess.run(command, capture_output=True, text=True)
                seconds[workers].append((time.perf_counter() - start) / args.scenes)
                if result.returncode:
                    raise SystemExit(result.stderr.strip().splitlines()[-1])
                summary = json.loads(result.stdout.strip().splitlines()[-1])
                checksums = [sha256_of(p) for p in sorted(out.glob("shard-*.tar"))]
                reference = reference or checksums
                if checksums != reference:
                    raise SystemExit(f"{workers} workers wrote different shards than the first run")
                print(
                    f"{repeat:>3} {summary['workers']:>7} {summary['threads_per_worker']:>7} "
                    f"{seconds[workers][-1]:>8.2f}",
                    flush=True,
                )
    base = statistics.median(seconds[args.workers[0]])
    print(f"median s/scene (load average now {os.getloadavg()[0]:.1f}; shards identical in every run):")
    for workers, values in seconds.items():
        median = statistics.median(values)
        print(f"  {workers} worker(s): {median:.2f} s/scene, speed-up x{base / median:.2f} over {args.workers[0]}")


if __name__ == "__main__":
    main()
