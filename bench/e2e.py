"""End to end: render N clips, load them, train K steps, evaluate; seconds per stage and the bottleneck.

    python bench/e2e.py                                            # 8 + 2 tiny scenes, 60 steps of cpu_smoke
    python bench/e2e.py --scenes 64 --heldout 16 --steps 500 --set render.resolution=[128,128]

Every stage is the command a user would run (``tapforge synth render``, ``tapforge train fit`` and
``validate``); the load stage pulls --steps batches through the training DataModule in this process
(decode, sub-clip, queries, then the sim2real augmentation that runs on the device in training),
on one core. Prints each stage's seconds, its share of the total and its per-clip cost, names the
stage that dominates, and compares what one loader core supplies with what training consumes.
Rendering resumes, so a rerun with the same --out re-times only the stages after it (pass a fresh
--out to time rendering again).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import torch
import yaml
from learn import logged_metrics

from tapforge.base.errors import TapforgeError
from tapforge.cli import main as tapforge_main
from tapforge.train.augment_config import AugmentConfig
from tapforge.train.data import TAPIRDataModule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_e2e")
    p.add_argument("--synth-config", default="tiny", help="synth preset or YAML")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="synth overrides for both renders")
    p.add_argument("--scenes", type=int, default=8, help="training clips to render")
    p.add_argument("--heldout", type=int, default=2, help="held-out clips to render")
    p.add_argument("--train-config", default=os.path.join(ROOT, "configs", "train", "cpu_smoke.yaml"))
    p.add_argument("--steps", type=int, default=60, help="training steps (and batches pulled by the load stage)")
    return p.parse_args(argv)


def run(argv: list[str]) -> float:
    """Seconds one ``tapforge`` command takes; a failing command stops the benchmark."""
    start = time.perf_counter()
    status = tapforge_main(argv)
    if status:
        raise TapforgeError(f"'tapforge {' '.join(argv[:3])} ...' failed (exit {status}); see above")
    return time.perf_counter() - start


def load_seconds(train_config: str, shards: str, batches: int) -> tuple[float, int]:
    """(seconds, clips) to pull ``batches`` augmented training batches in this process (no workers)."""
    with open(train_config) as f:
        data = dict(yaml.safe_load(f).get("data") or {})
    data.update(train_shards=shards, val_shards=None, num_workers=0, epoch_length=batches)
    if isinstance(data.get("augment"), dict):
        data["augment"] = AugmentConfig(**data["augment"])
    data.pop("tapvid", None)
    module = TAPIRDataModule(**data)
    module.setup("fit")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    clips, start = 0, time.perf_counter()
    for batch in module.train_dataloader():
        batch = module.on_after_batch_transfer(module.on_before_batch_transfer(batch, 0), 0)
        clips += batch.video.shape[0]
    seconds = time.perf_counter() - start
    torch.set_num_threads(threads)
    return seconds, clips


def main(argv=None) -> None:
    args = parse_args(argv)
    train, heldout, runs = (os.path.join(args.out, name) for name in ("train", "heldout", "runs"))
    seconds: dict[str, float] = {}
    clips: dict[str, int] = {}

    render = ["synth", "render", "--config", args.synth_config] + [a for item in args.set for a in ("--set", item)]
    seconds["render"] = run(render + ["--out", train, "--num-scenes", str(args.scenes)])
    seconds["render"] += run(render + ["--out", heldout, "--num-scenes", str(args.heldout), "--set", "seed=1000"])
    clips["render"] = args.scenes + args.heldout

    seconds["load"], clips["load"] = load_seconds(args.train_config, train, args.steps)

    shutil.rmtree(runs, ignore_errors=True)
    common = ["--config", args.train_config, "--data.train_shards", train, "--data.val_shards", heldout]
    seconds["train"] = run(
        [
            "train",
            "fit",
            *common,
            "--trainer.max_steps",
            str(args.steps),
            "--trainer.limit_val_batches",
            "0",
            "--trainer.default_root_dir",
            os.path.join(runs, "fit"),
        ]
    )
    clips["train"] = clips["load"]
    checkpoint = os.path.join(runs, "fit", "checkpoints", "last.ckpt")
    seconds["evaluate"] = run(
        [
            "train",
            "validate",
            *common,
            "--ckpt_path",
            checkpoint,
            "--data.val_max_videos",
            "null",
            "--trainer.limit_val_batches",
            "1.0",
            "--trainer.default_root_dir",
            os.path.join(runs, "validate"),
        ]
    )
    metrics = logged_metrics(os.path.join(runs, "validate"))
    clips["evaluate"] = args.heldout * sum(1 for k in metrics if k.endswith("/num_videos") and "stay_put" not in k)

    total = sum(seconds.values())
    print(
        f"\nend to end: {args.scenes}+{args.heldout} clips ({args.synth_config}), {args.steps} steps "
        f"({os.path.relpath(args.train_config)}), {os.cpu_count()} cores, {total:.0f} s in all"
    )
    print(f"  {'stage':<10}{'seconds':>10}{'share':>8}{'clips':>8}{'s/clip':>10}")
    for stage, value in seconds.items():
        print(
            f"  {stage:<10}{value:10.1f}{100 * value / total:7.1f}%{clips[stage]:8d}{value / max(1, clips[stage]):10.3f}"
        )
    bottleneck = max(seconds, key=seconds.get)
    print(f"bottleneck: {bottleneck} ({100 * seconds[bottleneck] / total:.0f}% of the time)")
    supplied, consumed = clips["load"] / seconds["load"], clips["train"] / seconds["train"]
    print(
        f"data path: one loader core supplies {supplied:.1f} clips/s, training consumes {consumed:.1f} clips/s "
        f"(x{supplied / consumed:.1f} per core)"
    )
    for key in sorted(k for k in metrics if k.endswith("/average_jaccard")):
        print(f"  {key}: {100 * metrics[key]:.1f}")


if __name__ == "__main__":
    main()
