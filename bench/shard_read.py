"""Shard read benchmark: clips per second per core decoding a shard with plain `webdataset`.

    python bench/shard_read.py DATASET_DIR [--repeats 3]

Renders nothing: point it at a folder written by `tapforge synth render`. Runs in one process on one core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import webdataset as wds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    shards = sorted(str(p) for p in __import__("pathlib").Path(args.dataset).glob("shard-*.tar"))
    rates = []
    for _ in range(args.repeats):
        start, count, frames = time.perf_counter(), 0, 0
        for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode("rgb8"):
            count += 1
            frames += sum(1 for k in sample if k.startswith("video."))
        rates.append(count / (time.perf_counter() - start))
    print(
        f"plain webdataset decode: median {statistics.median(rates):.1f} clips/s/core "
        f"({frames // max(count, 1)} frames/clip, {count} clips, {len(shards)} shards)"
    )


if __name__ == "__main__":
    main()
