"""Benchmark the training data path on the CPU and compare it with what a GPU step consumes.

    python bench/loader.py                               # procedural 256x256 x 24-frame shards
    python bench/loader.py --shards out/movi_e/train     # real shards
    python bench/loader.py --gpu-step-seconds 0.35       # a measured GPU training-step time

Prints (medians): per-clip CPU cost of decoding + sub-clip + query sampling on one core (and its
parts), clips per CPU-second of the whole in-process stream (CPU time, so a busy shared machine
does not skew it; wall-clock alongside), clips/s through a DataLoader with --workers processes, the cost of the default sim2real
augmentation on one batch on one CPU core, and the ratio of what --target-workers workers supply
to what one GPU consumes. The GPU step time is --gpu-step-seconds, or else estimated from the
FLOPs of one TAPIR training step (counted on fake tensors) at --gpu-tflops x --mfu.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tapforge.synth.schema import decode_clip, decode_frames
from tapforge.train.augment import Sim2RealAugment
from tapforge.train.augment_config import AugmentConfig
from tapforge.train.batches import ClipBatch
from tapforge.train.data import TrainClipStream
from tapforge.train.dataset import ShardDataset
from tapforge.train.procedural import write_shards
from tapforge.train.sampling import sample_queries, subclip_indices
from tapforge.train.shards import CorruptShardHandler, expand_shards, read_samples


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", help="shard folder/glob (default: generate procedural shards)")
    p.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "tapforge_bench_loader"),
        help="where procedural shards are written (reused when present)",
    )
    p.add_argument("--clips", type=int, default=16, help="procedural clips to generate")
    p.add_argument("--size", type=int, default=256, help="procedural frame side")
    p.add_argument("--clip-frames", type=int, default=24, help="frames per procedural clip")
    p.add_argument("--codec", choices=["png", "jpg"], default="png")
    p.add_argument("--num-frames", type=int, default=24, help="training sub-clip length")
    p.add_argument("--num-queries", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=12, help="batches timed per measurement")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="DataLoader workers to time")
    p.add_argument("--target-workers", type=int, default=8, help="workers per GPU in the comparison")
    p.add_argument("--aug-repeats", type=int, default=3)
    p.add_argument("--gpu-step-seconds", type=float, help="measured GPU training-step time (batch --batch-size)")
    p.add_argument("--gpu-tflops", type=float, default=989.0, help="GPU bf16 dense peak (H100 SXM: 989)")
    p.add_argument("--mfu", type=float, default=0.3, help="assumed fraction of the peak reached")
    return p.parse_args(argv)


def get_shards(args) -> list[str]:
    if args.shards:
        return expand_shards(args.shards, "--shards")
    folder = os.path.join(args.workdir, f"{args.size}px_{args.clip_frames}f_{args.codec}")
    if not os.path.isdir(folder) or len(os.listdir(folder)) * 2 < args.clips:
        print(f"writing {args.clips} procedural {args.size}x{args.size} x {args.clip_frames}-frame clips to {folder}")
        write_shards(
            folder,
            args.clips,
            clips_per_shard=2,
            codec=args.codec,
            num_frames=args.clip_frames,
            size=(args.size, args.size),
            num_objects=6,
            points_per_object=128,
            background_points=256,
        )
    return expand_shards(folder)


def per_clip_parts(samples: list[dict], args) -> dict[str, float]:
    """Median CPU seconds per clip of each stage, on one core, from in-memory samples."""
    rng = np.random.default_rng(0)
    times = {"arrays+checks": [], "frame decode": [], "sub-clip+queries": []}
    for sample in samples:
        t0 = time.process_time()
        clip = decode_clip(sample, with_video=False)
        t1 = time.process_time()
        frames = subclip_indices(clip.num_frames, args.num_frames, [1], rng)
        decode_frames(sample, frames)
        t2 = time.process_time()
        sample_queries(clip.occluded[:, frames], clip.object_ids, args.num_queries, rng)
        t3 = time.process_time()
        times["arrays+checks"].append(t1 - t0)
        times["frame decode"].append(t2 - t1)
        times["sub-clip+queries"].append(t3 - t2)
    return {k: statistics.median(v) for k, v in times.items()}


def stream(urls, args, epoch_length):
    dataset = ShardDataset(urls, num_frames=args.num_frames, num_queries=args.num_queries, on_corrupt="skip")
    return TrainClipStream(dataset, args.batch_size, epoch_length, shuffle_buffer=16)


def loader_rate(urls, args, workers: int) -> tuple[float, float]:
    """(clips per wall second, clips per CPU second of this process) through a DataLoader.

    Timing starts after the first batches, which fill the shuffle buffers.
    """
    loader = DataLoader(
        stream(urls, args, args.batches + 2),
        batch_size=None,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )
    it = iter(loader)
    for _ in range(max(1, workers)):
        next(it)
    start, cpu_start = time.perf_counter(), time.process_time()
    count = 0
    for batch in it:
        count += batch.video.shape[0]
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu_start)


def augment_cost(args) -> float:
    gen = torch.Generator().manual_seed(0)
    b, t, s, n = args.batch_size, args.num_frames, args.size, args.num_queries
    query_frame = torch.randint(0, t, (b, n), generator=gen)
    batch = ClipBatch(
        video=torch.randint(0, 256, (b, t, s, s, 3), dtype=torch.uint8, generator=gen),
        tracks=torch.rand(b, n, t, 2, generator=gen) * s,
        occluded=(torch.rand(b, n, t, generator=gen) < 0.2).scatter_(2, query_frame[..., None], False),
        query_frame=query_frame,
        object_ids=torch.zeros(b, n, dtype=torch.int64),
        keys=[f"clip{i}" for i in range(b)],
    )
    augment = Sim2RealAugment(AugmentConfig(), (s, s))
    times = []
    for _ in tqdm(range(args.aug_repeats), desc="augment", leave=False):
        start = time.process_time()
        augment(batch, gen)
        times.append(time.process_time() - start)
    return statistics.median(times)


def step_flops(args) -> float:
    """FLOPs of one TAPIR forward + loss + backward for one clip, counted on fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    from tapforge.tapir import TAPIR
    from tapforge.tapir.losses import tapir_loss

    t, s, n = args.num_frames, args.size, args.num_queries
    with FakeTensorMode():
        model = TAPIR()
        video = torch.rand(1, t, s, s, 3) * 2 - 1
        queries = torch.cat([torch.randint(0, t, (1, n, 1)).float(), torch.rand(1, n, 2) * s], -1)
        with FlopCounterMode(display=False) as counter:
            outputs = model(video, queries, is_training=True)
            loss, _ = tapir_loss(outputs, torch.rand(1, n, t, 2) * s, torch.rand(1, n, t) < 0.2, (s, s))
            loss.backward()
    return float(counter.get_total_flops())


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    urls = get_shards(args)
    handler = CorruptShardHandler("fail")
    samples = [s for _, s in zip(range(args.clips), read_samples(urls, handler))]
    parts = per_clip_parts(samples, args)
    per_clip = sum(parts.values())
    stored = len([k for k in samples[0] if k.startswith("video.")])
    print(f"\nper clip on one core ({args.num_frames} of {stored} frames decoded, {args.num_queries} queries):")
    for name, seconds in parts.items():
        print(f"  {name:<18} {seconds * 1e3:8.1f} ms")
    print(f"  {'total':<18} {per_clip * 1e3:8.1f} ms  ->  {1 / per_clip:6.1f} clips/s/core")

    wall, in_process = loader_rate(urls, args, 0)
    print(
        f"\nTrainClipStream in-process (read + decode + sample + shuffle + collate): {in_process:6.1f} clips per "
        f"CPU-second ({wall:.1f} clips/s wall-clock)"
    )
    if args.workers:
        rate, _ = loader_rate(urls, args, args.workers)
        print(f"DataLoader, {args.workers} workers on {os.cpu_count()} cores: {rate:6.1f} clips/s wall-clock")

    aug = augment_cost(args)
    print(
        f"\nsim2real augmentation (defaults), batch {args.batch_size}x{args.num_frames}x{args.size}^2, "
        f"1 CPU thread: {aug:.2f} CPU-s per batch (runs on the GPU in training)"
    )

    if args.gpu_step_seconds:
        step, how = args.gpu_step_seconds, "measured"
    else:
        flops = step_flops(args) * args.batch_size
        step = flops / (args.gpu_tflops * 1e12 * args.mfu)
        how = f"estimated: {flops / 1e12:.1f} TFLOP per step at {args.mfu:.0%} of {args.gpu_tflops:.0f} TFLOP/s"
    consumed = args.batch_size / step
    supplied = args.target_workers * in_process
    print(f"\nGPU step {step:.3f} s ({how}) consumes {consumed:.1f} clips/s")
    print(
        f"{args.target_workers} workers supply ~{supplied:.1f} clips/s ({args.target_workers} x the per-CPU-second rate): "
        f"ratio {supplied / consumed:.2f} (goal >= 3)"
    )


if __name__ == "__main__":
    main()
