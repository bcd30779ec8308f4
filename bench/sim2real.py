"""Sim to real: does the synthetic data teach tracking on real photos?

    python bench/sim2real.py                                     # 3 datasets x 2 seeds x 1000 steps (hours on a CPU)
    python bench/sim2real.py --datasets procedural --num-scenes 8 --steps 5 --real-clips 4 --out runs/sim2real_smoke

Makes three training sets of --num-scenes clips each: ``legacy`` and ``natural``, rendered by
``tapforge synth render`` from the same preset, seed and render settings (so the same scenes),
``legacy`` with ``--set scene.appearance=legacy scene.background=sky`` (the look of the legacy_movi_e preset) and ``natural`` with the default appearance; and
``procedural`` (tapforge/train/procedural.py clips of the same size and length) as a reference. Trains
--config for --steps steps on each, once per training seed (``--seed_everything``), and scores
every model and the stay-put baseline with ``tapforge train validate`` on real-photo clips with
exact tracks (tapforge/train/photo_clips.py, made here at the render resolution; --photos for your own)
in both query modes, at the config's ``data.resolution``. Prints AJ, <delta_avg and OA (x100) per
query mode: per dataset the mean and the spread (max - min) over the seeds, then every seed.

Resumes in --out: rendering renders only missing shards, procedural shards are kept, a training
whose scores are logged is not rerun and one cut short resumes from its ``last.ckpt``.

    python bench/sim2real.py --augment-cost --resolution 256 --frames 24      # the augmentation's cost, nothing else

``--augment-cost`` prints what each sim2real augmentation option (``data.augment``) costs per batch of
--augment-batch clips on one CPU thread, applied to every clip (p 1), beside the crop and flip that always run,
and the defaults with and without TAPNext++'s roll and homography at their p 0.8: median and spread over
--augment-repeats batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import shutil
import statistics
import time

import numpy as np
import torch
from learn import ROOT, fit, logged_metrics, train_args, validate, write_procedural

from tapforge.cli import main as tapforge_main
from tapforge.tapir.cli_eval import TABLE_COLUMNS
from tapforge.tapir.tapvid import write_tapvid_pickle
from tapforge.train.augment import Sim2RealAugment
from tapforge.train.augment_config import (
    AugmentConfig,
    BlurConfig,
    ColorConfig,
    HomographyConfig,
    JpegConfig,
    NoiseConfig,
    OccluderConfig,
    RollConfig,
)
from tapforge.train.batches import ClipBatch
from tapforge.train.photo_clips import make_clips

DATASETS = ("procedural", "legacy", "natural")
APPEARANCE = {"legacy": ["--set", "scene.appearance=legacy", "--set", "scene.background=sky"], "natural": []}
COLUMNS = TABLE_COLUMNS[:3]  # AJ, <d_avg, OA
MODES = ("first", "strided")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_sim2real")
    p.add_argument(
        "--datasets",
        nargs="+",
        choices=DATASETS,
        default=list(DATASETS),
        help="which training sets (procedural alone renders nothing)",
    )
    p.add_argument("--preset", default="panning_movi_e", help="synth preset or YAML for the rendered sets")
    p.add_argument("--num-scenes", type=int, default=64, help="clips per training set")
    p.add_argument("--resolution", type=int, default=128, help="render (and procedural, real-photo) frame side")
    p.add_argument("--frames", type=int, default=12, help="frames per training clip")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "train", "cpu_smoke.yaml"))
    p.add_argument("--steps", type=int, default=1000, help="training steps per run (the fixed budget)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds (--seed_everything)")
    p.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="training overrides, e.g. data.batch_size=4"
    )
    p.add_argument("--real-clips", type=int, default=30, help="real-photo clips to score on")
    p.add_argument("--real-frames", type=int, default=24, help="frames per real-photo clip")
    p.add_argument(
        "--photos", metavar="DIR", help="your own photos for the real-photo clips (default: the bundled ones)"
    )
    p.add_argument("--augment-cost", action="store_true", help="only time the augmentation options (see above)")
    p.add_argument("--augment-batch", type=int, default=8, help="clips per timed batch")
    p.add_argument("--augment-queries", type=int, default=256, help="tracks per timed clip")
    p.add_argument("--augment-repeats", type=int, default=7, help="timed batches per option")
    return p.parse_args(argv)


def make_dataset(name: str, folder: str, args: argparse.Namespace) -> None:
    """Render (resumably) or write the procedural training set ``name`` into ``folder``."""
    if name == "procedural":
        if len(glob.glob(os.path.join(folder, "shard-*.tar"))) != -(-args.num_scenes // 8):
            shutil.rmtree(folder, ignore_errors=True)
            print(f"writing {args.num_scenes} procedural clips to {folder}")
            write_procedural(folder, args.num_scenes, seed=1, size=args.resolution, frames=args.frames)
        return
    render = [
        "synth",
        "render",
        "--config",
        args.preset,
        "--out",
        folder,
        "--num-scenes",
        str(args.num_scenes),
        "--set",
        f"render.resolution={args.resolution}",
        "--set",
        f"scene.num_frames={args.frames}",
        "--set",
        f"render.samples={args.samples}",
        *APPEARANCE[name],
    ]
    if tapforge_main(render):
        raise SystemExit(f"rendering the {name} set failed (see above): tapforge {' '.join(render)}")


def train_and_score(dataset: str, seed: int, shards: str, real: str, args: argparse.Namespace) -> dict[str, float]:
    """Metrics on the real-photo clips of the model trained on ``shards`` with ``seed`` (skipped when logged)."""
    root = os.path.join(args.out, "runs", f"{dataset}_seed{seed}_{args.steps}steps")
    scored = logged_metrics(os.path.join(root, "eval"))
    if f"val/davis_{MODES[-1]}/average_jaccard" in scored:
        return scored
    common = train_args(args.config, shards, ["--data.tapvid.davis", real], args.set)
    last = os.path.join(root, "fit", "checkpoints", "last.ckpt")
    seconds = fit(
        common + ["--seed_everything", str(seed)],
        os.path.join(root, "fit"),
        args.steps,
        ["--ckpt_path", last] if os.path.exists(last) else [],
    )
    print(f"{dataset} seed {seed}: {args.steps} steps in {seconds / 60:.1f} min")
    return validate(common, os.path.join(root, "eval"), last)


def row(label: str, runs: list[dict[str, float]], method: str = "") -> str:
    """One table row: the mean (and, over several runs, the max - min spread) of each metric per query mode."""
    cells = []
    for mode in MODES:
        for _, key in COLUMNS:
            values = 100 * np.array([run[f"val/davis_{mode}{method}/{key}"] for run in runs])
            cells.append(f"{values.mean():5.1f} ± {np.ptp(values):4.1f}" if len(values) > 1 else f"{values[0]:5.1f}")
    return f"  {label:<18}" + "".join(f"{c:>14}" for c in cells)


def augment_options() -> dict[str, AugmentConfig]:
    """Each option alone at p 1 beside the crop and flip (which always run), and the defaults without and with
    TAPNext++'s roll and homography."""
    base = AugmentConfig(
        occluder=OccluderConfig(p=0.0),
        color=ColorConfig(p=0.0, grayscale_p=0.0),
        blur=BlurConfig(gaussian_p=0.0, motion_p=0.0),
        noise=NoiseConfig(p=0.0),
        jpeg=JpegConfig(p=0.0),
    )
    return {
        "crop + flip": base,
        "occluder": dataclasses.replace(base, occluder=OccluderConfig(p=1.0)),
        "color": dataclasses.replace(base, color=ColorConfig(p=1.0, grayscale_p=0.0)),
        "gaussian blur": dataclasses.replace(base, blur=BlurConfig(gaussian_p=1.0, motion_p=0.0)),
        "motion blur": dataclasses.replace(base, blur=BlurConfig(gaussian_p=0.0, motion_p=1.0)),
        "noise": dataclasses.replace(base, noise=NoiseConfig(p=1.0)),
        "jpeg": dataclasses.replace(base, jpeg=JpegConfig(p=1.0)),
        "roll (new)": dataclasses.replace(base, roll=RollConfig(p=1.0)),
        "homography (new)": dataclasses.replace(base, homography=HomographyConfig(p=1.0)),
        "roll + homography": dataclasses.replace(base, roll=RollConfig(p=1.0), homography=HomographyConfig(p=1.0)),
        "defaults": AugmentConfig(),
        "defaults + both p 0.8": AugmentConfig(roll=RollConfig(p=0.8), homography=HomographyConfig(p=0.8)),
    }


def augment_cost(args: argparse.Namespace) -> None:
    """Print the CPU seconds per batch of each augmentation option, options interleaved so that they share the
    machine's state."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    b, t, s, n = args.augment_batch, args.frames, args.resolution, args.augment_queries
    query_frame = torch.randint(0, t, (b, n), generator=gen)
    batch = ClipBatch(
        video=torch.randint(0, 256, (b, t, s, s, 3), dtype=torch.uint8, generator=gen),
        tracks=torch.rand(b, n, t, 2, generator=gen) * s,
        occluded=(torch.rand(b, n, t, generator=gen) < 0.2).scatter_(2, query_frame[..., None], False),
        query_frame=query_frame,
        object_ids=torch.zeros(b, n, dtype=torch.int64),
        keys=[f"clip{i}" for i in range(b)],
    )
    augments = {name: Sim2RealAugment(config, (s, s)) for name, config in augment_options().items()}
    times: dict[str, list[float]] = {name: [] for name in augments}
    for repeat in range(args.augment_repeats + 1):
        for name, augment in augments.items():
            start = time.process_time()
            augment(batch, gen)
            if repeat:  # the first round warms up
                times[name].append(time.process_time() - start)
    base = statistics.median(times["crop + flip"])
    print(
        f"\nsim2real augmentation, batch {b} x {t} frames x {s}x{s}, {n} tracks, 1 CPU thread: CPU-s per batch, "
        f"median (max - min) of {args.augment_repeats}; each option at p 1 except the defaults"
    )
    print(f"  {'option':<22}{'s/batch':>10}{'spread':>10}{'over crop + flip':>18}")
    for name, values in times.items():
        median = statistics.median(values)
        extra = f"{median - base:+.3f}" if name != "crop + flip" else ""
        print(f"  {name:<22}{median:10.3f}{max(values) - min(values):10.3f}{extra:>18}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.augment_cost:
        augment_cost(args)
        return
    real = os.path.join(args.out, f"real_{args.real_clips}x{args.real_frames}_{args.resolution}px.pkl")
    clips = make_clips(args.real_clips, args.real_frames, args.resolution, seed=0, photos_dir=args.photos)
    write_tapvid_pickle(real, ((c.name, c.video, c.tracks, c.occluded) for c in clips))
    print(f"wrote {args.real_clips} real-photo clips to {real}")
    results = {}
    for dataset in args.datasets:
        shards = os.path.join(args.out, "data", dataset)
        make_dataset(dataset, shards, args)
        results[dataset] = [train_and_score(dataset, seed, shards, real, args) for seed in args.seeds]

    print(
        f"\nreal-photo clips ({args.real_clips} x {args.real_frames} frames, {args.resolution}x{args.resolution}), "
        f"{args.steps} steps of {os.path.relpath(args.config)} on {args.num_scenes} clips per set, seeds "
        f"{' '.join(map(str, args.seeds))}; x100, mean ± spread (max - min) over seeds"
    )
    print(f"  {'':<18}" + "".join(f"{'query ' + mode:^42}" for mode in MODES))
    print(f"  {'':<18}" + "".join(f"{name:>14}" for _ in MODES for name, _ in COLUMNS))
    print(row("stay-put", results[args.datasets[0]][:1], method="_stay_put"))
    for dataset, runs in results.items():
        print(row(dataset, runs))
    for dataset, runs in results.items():
        for seed, run in zip(args.seeds, runs):
            print(row(f"{dataset} seed {seed}", [run]))


if __name__ == "__main__":
    main()
