"""Export benchmark: seconds per clip of `tapforge synth export` for each format, and what 100 clips take.

    python bench/export.py [DATASET_DIR] [--num-clips 4]

Without DATASET_DIR it first renders --num-clips scenes of the ``tiny`` preset (96x96, 8 frames, 256 tracks) with
the depth and segmentation passes (not timed). Each format is exported into a fresh temporary folder, in this
process; the 100-clip figure is the measured per-clip rate times 100 (exports are per clip, so it scales).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tapforge.synth.exports import FORMATS, export_dataset


def render(out: Path, num_clips: int) -> Path:
    command = [sys.executable, "-m", "tapforge.cli", "synth", "render", "--config", "tiny", "--out", str(out)]
    command += ["--num-scenes", str(num_clips), "--no-progress", "--set", "outputs.passes=[depth,segmentation]"]
    subprocess.run(command, check=True, capture_output=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", type=Path, help="a rendered dataset (default: render tiny clips)")
    parser.add_argument("--num-clips", type=int, default=4, help="clips to render when no dataset is given")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or render(Path(tmp) / "data", args.num_clips)
        for name in FORMATS:
            start = time.perf_counter()
            summary = export_dataset(dataset, name, Path(tmp) / name)
            per_clip = (time.perf_counter() - start) / max(summary["written"], 1)
            print(
                f"{name:<13} {per_clip:.3f} s/clip over {summary['written']} clips; 100 clips: {100 * per_clip:.0f} s"
            )


if __name__ == "__main__":
    main()
