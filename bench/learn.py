""" "It learns": train with a config for a fixed number of steps and score held-out clips.

    python bench/learn.py --train out/learn/train --heldout out/learn/heldout     # rendered shards
    python bench/learn.py --procedural                                            # procedural shards
    python bench/learn.py --procedural --model tapir tapnet tapnext               # the three side by side

Runs ``tapforge train`` three times per model: ``validate`` with the untrained model, ``fit`` for --steps
steps (no validation during the fit), ``validate`` with the resulting ``last.ckpt``. Prints the
held-out AJ, <delta_avg and OA (TAP-Vid metrics, query modes first and strided) of the stay-put
baseline, the untrained and the trained model, and the training time (and AJ_RD, the re-detection AJ of TAPNext++,
for long held-out clips: train on windows with ``--set data.num_frames=24``). OA is split into the shares
of visible and of hidden points predicted so ("vis ok", "hid ok"): stay-put calls every point
visible, so its OA is the visible share. ``--model`` picks each model's CPU config (``MODEL_CONFIGS``: the same
data, clip length, batch and queries for all three), ``--config`` one config of your own.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import time

from tapforge.tapir.cli_eval import TABLE_COLUMNS
from tapforge.train.cli import main as train_main
from tapforge.train.procedural import write_shards

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# AJ, TAPNext++'s re-detection AJ (nan where no point re-appears), <d_avg, OA and OA's split into visible and
# hidden points
COLUMNS = tuple(c for c in TABLE_COLUMNS if c[0] in ("AJ", "AJ_RD", "<d_avg", "OA", "vis ok", "hid ok"))
PROCEDURAL = dict(num_objects=4, points_per_object=64, background_points=128)  # 256 tracks per clip
MODEL_CONFIGS = {
    "tapir": "cpu_smoke.yaml",
    "tapnet": "tapnet_cpu_smoke.yaml",
    "tapnext": "tapnext_cpu_smoke.yaml",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", help="training shard folder/glob")
    p.add_argument("--heldout", help="held-out shard folder/glob")
    p.add_argument("--procedural", action="store_true", help="generate 64 train + 16 held-out procedural clips")
    p.add_argument("--size", type=int, default=128, help="procedural frame side")
    p.add_argument("--frames", type=int, default=24, help="procedural clip length")
    p.add_argument("--model", nargs="+", choices=sorted(MODEL_CONFIGS), default=["tapir"], help="models to train")
    p.add_argument("--config", help="a training config instead of --model's (one model)")
    p.add_argument("--steps", type=int, default=200, help="training steps (the fixed budget)")
    p.add_argument("--out", default="runs/bench_learn")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides, e.g. data.batch_size=4")
    args = p.parse_args(argv)
    if not args.procedural and not (args.train and args.heldout):
        p.error("pass --train and --heldout, or --procedural")
    if args.config and len(args.model) > 1:
        p.error("--config sets one model's config; pass one --model with it")
    return args


def logged_metrics(root: str) -> dict[str, float]:
    """The last logged value of every metric in the CSV logs (``csv/version_*``) under ``root``."""
    values: dict[str, float] = {}
    for path in sorted(glob.glob(os.path.join(root, "csv", "version_*", "metrics.csv"))):
        with open(path) as f:
            for row in csv.DictReader(f):
                values.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return values


def write_procedural(out: str, num_clips: int, seed: int, size: int, frames: int) -> None:
    """``num_clips`` procedural clips of ``frames`` frames at ``size`` x ``size`` as shards of 8 in ``out``."""
    write_shards(out, num_clips, clips_per_shard=8, seed=seed, num_frames=frames, size=(size, size), **PROCEDURAL)


def train_args(config: str, train: str, validation: list[str], overrides=()) -> list[str]:
    """Arguments every ``tapforge train`` run of a benchmark shares; ``validation`` names the sets, scored whole."""
    args = [
        "--config",
        config,
        "--data.train_shards",
        train,
        *validation,
        "--data.val_max_videos",
        "null",
        "--trainer.limit_val_batches",
        "1.0",
    ]
    return args + [f"--{item.split('=', 1)[0]}={item.split('=', 1)[1]}" for item in overrides]


def fit(common: list[str], root: str, steps: int, extra=()) -> float:
    """Train ``steps`` steps without validation, logs and checkpoints under ``root``; returns the seconds."""
    start = time.perf_counter()
    train_main(
        ["fit"]
        + common
        + [
            "--trainer.default_root_dir",
            root,
            "--trainer.max_steps",
            str(steps),
            "--trainer.limit_val_batches",
            "0",
            *extra,
        ]
    )
    return time.perf_counter() - start


def validate(common: list[str], root: str, checkpoint: str | None = None) -> dict[str, float]:
    """Score the validation sets (the untrained model without ``checkpoint``); returns the logged metrics."""
    train_main(
        ["validate"]
        + common
        + ["--trainer.default_root_dir", root]
        + (["--ckpt_path", checkpoint] if checkpoint else [])
    )
    return logged_metrics(root)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.procedural:
        data = os.path.join(args.out, "data")
        args.train, args.heldout = os.path.join(data, "train"), os.path.join(data, "heldout")
        if not os.path.isdir(args.train):
            print(f"writing procedural shards to {data}")
            write_procedural(args.train, 64, seed=1, size=args.size, frames=args.frames)
            write_procedural(args.heldout, 16, seed=2, size=args.size, frames=args.frames)
    results = {}
    for model in args.model:
        config = args.config or os.path.join(ROOT, "configs", "train", MODEL_CONFIGS[model])
        out = os.path.join(args.out, model) if len(args.model) > 1 else args.out
        common = train_args(config, args.train, ["--data.val_shards", args.heldout], args.set)
        untrained = validate(common, os.path.join(out, "untrained"))
        train_seconds = fit(common, os.path.join(out, "trained"), args.steps)
        last = os.path.join(out, "trained", "checkpoints", "last.ckpt")
        results[model] = (config, train_seconds, untrained, validate(common, os.path.join(out, "trained_eval"), last))
    print()
    for model, (config, seconds, _, _) in results.items():
        print(
            f"{model}: trained {args.steps} steps in {seconds / 60:.1f} min ({seconds / args.steps:.2f} s/step), "
            f"config {os.path.relpath(config)}"
        )
    for mode in ("first", "strided"):
        key = f"val/synthetic_{mode}"
        scored = [r for r in results.values() if f"{key}/num_videos" in r[3]]
        if not scored:
            continue
        print(f"\nheld-out, query mode {mode}, {int(scored[0][3][f'{key}/num_videos'])} clips (x100):")
        print(f"  {'':<18}" + "".join(f"{c:>8}" for c, _ in COLUMNS))
        rows = [("stay-put", scored[0][3], f"{key}_stay_put")]
        for model, (_, _, untrained, trained) in results.items():
            rows += [(f"{model} untrained", untrained, key), (f"{model} trained", trained, key)]
        for name, source, prefix in rows:
            print(f"  {name:<18}" + "".join(f"{100 * source[f'{prefix}/{m}']:8.1f}" for _, m in COLUMNS))


if __name__ == "__main__":
    main()
