"""Export benchmark: how long `tapforge synth export` takes for 100 clips, per format.

    python bench/export.py [DATASET_DIR] [--num-clips 100] [--size 256] [--frames 24]

Without DATASET_DIR it renders one ``movi_e`` scene at --size x --size, --frames frames, 2048 tracks, with the depth
and segmentation passes (4 samples: the pixels' content does not change what an export costs; not timed), then
makes a --num-clips dataset of it the way a render writes one (a shard per clip, records, manifest, the clip
under a new key in each). Each format is then exported in full into a fresh temporary folder, in this process;
the figures are wall seconds for the whole export (reading and checking the shards included) and per clip.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tapforge.synth.exports import FORMATS, export_dataset
from tapforge.synth.pipeline import scene_key
from tapforge.synth.schema import iter_tar_samples
from tapforge.synth.shards import MANIFEST, load_records, record_path, shard_path, write_shard


def render(out: Path, size: int, frames: int) -> Path:
    command = [sys.executable, "-m", "tapforge.cli", "synth", "render", "--config", "movi_e", "--out", str(out)]
    command += ["--num-scenes", "1", "--no-progress", "--set", "outputs.passes=[depth,segmentation]"]
    command += ["--set", f"render.resolution={size}", "--set", f"scene.num_frames={frames}"]
    command += ["--set", "render.samples=4", "--set", "outputs.scenes_per_shard=1"]
    subprocess.run(command, check=True, capture_output=True)
    return out


def replicate(dataset: Path, num_clips: int) -> None:
    """Turn a one-clip dataset into ``num_clips`` clips: shards 1.. hold the clip under keys of their own."""
    manifest = dict(json.loads((dataset / MANIFEST).read_text()), num_scenes=num_clips)
    (dataset / MANIFEST).write_text(json.dumps(manifest))
    header = {k: v for k, v in manifest.items() if k != "shards" and not k.startswith("num_complete")}
    record = dict(load_records(dataset)[0], num_scenes=num_clips)
    record_path(dataset, 0).write_text(json.dumps(record, sort_keys=True) + "\n")
    (sample,) = iter_tar_samples(shard_path(dataset, 0))
    for shard in range(1, num_clips):
        key = scene_key(shard)
        copy = dict(sample, __key__=key)
        write_shard(dataset, shard, [copy], dict(record, keys=[key]), header)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", type=Path, help="a rendered dataset (default: render one, replicate)")
    parser.add_argument("--num-clips", type=int, default=100, help="clips in the generated dataset")
    parser.add_argument("--size", type=int, default=256, help="frame width and height of the generated dataset")
    parser.add_argument("--frames", type=int, default=24, help="frames per clip of the generated dataset")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset
        if dataset is None:
            dataset = render(Path(tmp) / "data", args.size, args.frames)
            replicate(dataset, args.num_clips)
            print(f"dataset: {args.num_clips} clips of {args.frames} frames at {args.size}x{args.size}, 2048 tracks")
        for name in FORMATS:
            start = time.perf_counter()
            summary = export_dataset(dataset, name, Path(tmp) / name)
            total = time.perf_counter() - start
            size = sum(p.stat().st_size for p in (Path(tmp) / name).rglob("*") if p.is_file()) / 2**20
            print(
                f"{name:<13} {total:6.1f} s for {summary['written']} clips ({total / max(summary['written'], 1):.3f} "
                f"s/clip), {size:.0f} MiB"
            )


if __name__ == "__main__":
    main()
