"""Reading windows of long clips: ms to make one training example from a 24-frame clip and from a long one.

    python bench/long_read.py [--lengths 24 1024] [--size 256] [--window 24] [--repeats 20]

Each clip (a procedural 24-frame clip played over and over to the length, PNG frames as a render writes them) is
encoded into a shard sample once; the figure is the
median time of `make_training_example` (decode the arrays, draw a window, decode only its frames, sample queries)
for a ``--window``-frame window, and the frames it decoded (it must be the window's, not the clip's).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from unittest import mock

import numpy as np

from tapforge.synth import schema
from tapforge.train.dataset import make_training_example
from tapforge.train.procedural import make_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[24, 1024])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--window", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    base = make_clip(rng, "clip", num_frames=24, size=(args.size, args.size))
    medians = {}
    for length in args.lengths:
        loop = np.arange(length) % base.num_frames
        clip = dataclasses.replace(
            base,
            video=base.video[loop],
            tracks=base.tracks[:, loop],
            occluded=base.occluded[:, loop],
            tracks_3d=base.tracks_3d[:, loop],
        )
        sample = schema.encode_clip(clip)
        megabytes = sum(len(v) for k, v in sample.items() if k != "__key__") / 2**20
        times, decoded = [], []
        for _ in range(args.repeats):
            with mock.patch.object(schema, "decode_frame", wraps=schema.decode_frame) as decode:
                start = time.perf_counter()
                make_training_example(sample, args.window, [1], 256, rng)
                times.append(time.perf_counter() - start)
            decoded.append(decode.call_count)
        medians[length] = statistics.median(times)
        print(
            f"{length:>5}-frame clip ({megabytes:.0f} MiB sample): {1000 * medians[length]:.1f} ms per "
            f"{args.window}-frame window, {max(decoded)} frames decoded"
        )
    longest, shortest = max(medians), min(medians)
    print(f"ratio {longest} / {shortest} frames: {medians[longest] / medians[shortest]:.2f}")


if __name__ == "__main__":
    main()
