"""Self-supervised fine-tuning on unlabeled real video (BootsTAP): does it help on real photos, without losing synthetic?

    python bench/bootstrap.py                           # ~1 h on 2 CPU cores
    python bench/bootstrap.py --num-scenes 8 --base-steps 5 --steps 3 --real-videos 4 --real-clips 3 --out runs/bootstrap_smoke

1. Renders --num-scenes training clips and 12 held-out clips (``tapforge synth render`` of --preset, as
   bench/sim2real.py), and trains --config (cpu_smoke) on them for --base-steps: the synthetic-data model.
2. Makes real-photo clips with exact tracks (tapforge/train/photo_clips.py) from two disjoint sets of the photographs that
   scikit-learn and matplotlib ship: --real-videos unlabeled clips of china.jpg and flower.jpg, written as mp4 files
   (read back through ``data.real_videos`` like any user's videos, tracks thrown away), and --real-clips evaluation
   clips of grace_hopper.jpg and Minduka_Present_Blue_Pack.png as a TAP-Vid pickle.
3. Fine-tunes the synthetic-data model for --steps more steps, once per seed (``seed_everything`` and
   ``data.seed``: the clips, queries, augmentation and pseudo-label draws), three ways: synthetic batches only
   (the control: as many more steps), synthetic + real batches with the BootsTAP loss (``tapforge.train.bootstrap``), and
   the same with the query-consistency filter off.
4. Scores every model and stay-put on the real-photo evaluation clips (query first and strided) and on the
   held-out synthetic clips (query first): AJ, <delta_avg, OA (x100); mean ± spread (max - min) over seeds, and
   the mean share of pseudo-labels kept.

Resumes in --out: rendering renders only missing shards; runs whose scores are logged are not rerun.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import shutil

import numpy as np
from learn import ROOT, fit, logged_metrics, train_args, validate

from tapforge.base.video import write_video
from tapforge.cli import main as tapforge_main
from tapforge.tapir.cli_eval import TABLE_COLUMNS
from tapforge.tapir.tapvid import write_tapvid_pickle
from tapforge.train.photo_clips import bundled_photo_paths, make_clips

COLUMNS = TABLE_COLUMNS[:3]  # AJ, <d_avg, OA
SETS = (("real", "davis", "first"), ("real", "davis", "strided"), ("synthetic", "synthetic", "first"))
TRAIN_PHOTOS, EVAL_PHOTOS = ("china.jpg", "flower.jpg"), ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
RUNS = {
    "synthetic only": [],
    "BootsTAP": ["model.self_supervised.consistency_filter=true"],
    "BootsTAP, no filter": ["model.self_supervised.consistency_filter=false"],
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_bootstrap")
    p.add_argument("--preset", default="panning_movi_e")
    p.add_argument("--num-scenes", type=int, default=48, help="rendered training clips")
    p.add_argument("--resolution", type=int, default=128, help="render and real-clip frame side")
    p.add_argument("--frames", type=int, default=12, help="frames per rendered clip")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "train", "cpu_smoke.yaml"))
    p.add_argument("--base-steps", type=int, default=1000, help="synthetic training of the starting model")
    p.add_argument("--steps", type=int, default=500, help="fine-tuning steps of each run")
    p.add_argument("--lr", type=float, default=3e-4, help="fine-tuning peak learning rate")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="fine-tuning seeds")
    p.add_argument("--real-videos", type=int, default=32, help="unlabeled real clips (24 frames) to fine-tune on")
    p.add_argument("--real-clips", type=int, default=30, help="real-photo evaluation clips (24 frames)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every fine-tune")
    return p.parse_args(argv)


def render(folder: str, scenes: int, args: argparse.Namespace, seed: int | None = None) -> None:
    """Render (resumably) ``scenes`` clips of the preset; ``seed`` replaces the preset's base seed."""
    command = [
        "synth",
        "render",
        "--config",
        args.preset,
        "--out",
        folder,
        "--num-scenes",
        str(scenes),
        "--set",
        f"render.resolution={args.resolution}",
        "--set",
        f"scene.num_frames={args.frames}",
        "--set",
        f"render.samples={args.samples}",
    ] + (["--set", f"seed={seed}"] if seed is not None else [])
    if tapforge_main(command):
        raise SystemExit(f"rendering failed (see above): tapforge {' '.join(command)}")


def photo_folder(folder: str, names: tuple[str, ...]) -> str:
    """A folder holding copies of the bundled photos ``names``."""
    os.makedirs(folder, exist_ok=True)
    for path in bundled_photo_paths():
        if os.path.basename(path) in names and not os.path.exists(os.path.join(folder, os.path.basename(path))):
            shutil.copy(path, folder)
    return folder


def real_data(args: argparse.Namespace) -> tuple[str, str]:
    """(folder of unlabeled mp4 clips, evaluation pickle) from disjoint photos."""
    videos = os.path.join(args.out, "data", f"real_videos_{args.real_videos}")
    if len(glob.glob(os.path.join(videos, "*.mp4"))) != args.real_videos:
        clips = make_clips(
            args.real_videos,
            24,
            args.resolution,
            seed=1,
            photos_dir=photo_folder(os.path.join(args.out, "photos", "train"), TRAIN_PHOTOS),
        )
        for clip in clips:
            write_video(os.path.join(videos, f"{clip.name}.mp4"), clip.video, fps=24)
    pickle = os.path.join(args.out, "data", f"real_eval_{args.real_clips}.pkl")
    if not os.path.exists(pickle):
        clips = make_clips(
            args.real_clips,
            24,
            args.resolution,
            seed=0,
            photos_dir=photo_folder(os.path.join(args.out, "photos", "eval"), EVAL_PHOTOS),
        )
        write_tapvid_pickle(pickle, ((c.name, c.video, c.tracks, c.occluded) for c in clips))
    return videos, pickle


def column_mean(root: str, name: str) -> float:
    """The mean of a logged column over a run's CSV logs (NaN when never logged)."""
    values = []
    for path in glob.glob(os.path.join(root, "csv", "version_*", "metrics.csv")):
        with open(path) as f:
            values += [float(row[name]) for row in csv.DictReader(f) if row.get(name)]
    return float(np.mean(values)) if values else float("nan")


def scored(root: str, common: list[str], checkpoint: str) -> dict[str, float]:
    metrics = logged_metrics(os.path.join(root, "eval"))
    if "val/davis_strided/average_jaccard" not in metrics:
        metrics = validate(common, os.path.join(root, "eval"), checkpoint)
    return metrics


def row(label: str, runs: list[dict[str, float]], suffix: str = "", extra: str = "") -> str:
    cells = []
    for _, source, mode in SETS:
        for _, key in COLUMNS:
            values = 100 * np.array([run[f"val/{source}_{mode}{suffix}/{key}"] for run in runs])
            cells.append(f"{values.mean():.1f} ± {np.ptp(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}")
    return f"| {label} | " + " | ".join(cells) + f" | {extra} |"


def main(argv=None) -> None:
    args = parse_args(argv)
    synthetic, heldout = (os.path.join(args.out, "data", name) for name in ("synthetic", "heldout"))
    render(synthetic, args.num_scenes, args)
    render(heldout, 12, args, seed=1000)  # other scenes than the training set's
    videos, pickle = real_data(args)
    validation = ["--data.val_shards", heldout, "--data.tapvid.davis", pickle]
    common = train_args(args.config, synthetic, validation)

    base_root = os.path.join(args.out, "runs", f"base_{args.base_steps}")
    base = os.path.join(base_root, "fit", "checkpoints", "last.ckpt")
    if not os.path.exists(base):
        minutes = fit(common, os.path.join(base_root, "fit"), args.base_steps) / 60
        print(f"synthetic-data model: {args.base_steps} steps in {minutes:.1f} min")
    results = {"synthetic-data model": [scored(base_root, common, base)]}
    kept = {}
    for name, overrides in RUNS.items():
        results[name], kept[name] = [], []
        for seed in args.seeds:
            root = os.path.join(
                args.out, "runs", f"{name.replace(', ', '_').replace(' ', '_')}_{args.steps}_seed{seed}"
            )
            settings = [
                f"model.init_from={base}",
                f"model.lr={args.lr}",
                "model.warmup_steps=20",
                f"seed_everything={seed}",
                f"data.seed={seed}",
                *overrides,
                *args.set,
            ]
            if name != "synthetic only":
                settings += [f"data.real_videos={videos}", "model.self_supervised.num_queries=64"]
            run_common = train_args(args.config, synthetic, validation, settings)
            last = os.path.join(root, "fit", "checkpoints", "last.ckpt")
            if not os.path.exists(os.path.join(root, "eval")):
                minutes = (
                    fit(
                        run_common,
                        os.path.join(root, "fit"),
                        args.steps,
                        ["--ckpt_path", last] if os.path.exists(last) else [],
                    )
                    / 60
                )
                print(f"{name}, seed {seed}: {args.steps} steps in {minutes:.1f} min")
            results[name].append(scored(root, run_common, last))
            kept[name].append(column_mean(os.path.join(root, "fit"), "self_supervised/kept_share"))

    print(
        f"\nfine-tuned {args.steps} steps from a {args.base_steps}-step synthetic model ({os.path.relpath(args.config)}, "
        f"lr {args.lr}); {args.real_videos} unlabeled real clips, {args.real_clips} real-photo evaluation clips "
        f"(other photos), 12 held-out synthetic clips; seeds {' '.join(map(str, args.seeds))}; x100, "
        "mean ± spread (max - min) over seeds"
    )
    header = [f"{kind} {mode} {column}" for kind, _, mode in SETS for column, _ in COLUMNS]
    print("| model | " + " | ".join(header) + " | pseudo-labels kept |")
    print("|---" * (len(header) + 2) + "|")
    print(row("stay-put", results["synthetic-data model"], suffix="_stay_put"))
    for name, runs in results.items():
        share = f"{100 * np.nanmean(kept[name]):.1f}%" if name in kept and not np.isnan(kept[name]).all() else ""
        print(row(name, runs, extra=share))


if __name__ == "__main__":
    main()
