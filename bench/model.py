"""Benchmark the TAPIR model: forward and forward+backward time, optionally against official tapnet.

    python bench/model.py                                # 24 frames, 256x256, 256 queries, CPU fp32
    python bench/model.py --train --bf16 --compile       # also training steps (fp32, bf16), compiled mixer
    python bench/model.py --official-path ~/src/tapnet   # side by side with tapnet/torch (needs einshape, dm-tree)
    python bench/model.py --models tapir tapnet tapnext  # the three models side by side, forward and training step

Prints medians over ``--repeats`` runs (after one warm-up) and, with ``--official-path``, the
speed ratio and the largest output differences on identical random weights. ``--models`` times each model's
forward (eval mode, no gradients) and training step (forward, its own loss, backward) on the same inputs:
TAPIR as ``--config``, TAP-Net, and TAPNext at the released size (ViT-B/8), which trains with gradient
checkpointing as configs/train/tapnext.yaml does.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from tapforge.tapir import TAPIR, TAPNet, TAPNext
from tapforge.tapir.losses import tapir_loss
from tapforge.tapir.tapnext_losses import tapnext_loss

CONFIGS = {
    "tapir": dict(pyramid_level=0, extra_convs=False),
    "bootstapir": dict(pyramid_level=1, extra_convs=True, softmax_temperature=10.0),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tapir")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=256, help="square frame side (pixels)")
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train", action="store_true", help="also time forward + loss + backward")
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="also time with the mixer torch.compile'd")
    parser.add_argument("--official-path", type=Path, default=None, help="tapnet checkout to compare against")
    parser.add_argument(
        "--models", nargs="+", choices=("tapir", "tapnet", "tapnext"), help="time these models side by side"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def make_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    t, s, n = args.frames, args.size, args.queries
    coarse = torch.rand(t, 3, s // 16, s // 16, generator=gen)
    video = torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear").permute(0, 2, 3, 1)[None] * 2 - 1
    queries = torch.cat(
        [torch.randint(0, t, (1, n, 1), generator=gen).float(), torch.rand(1, n, 2, generator=gen) * s], -1
    )
    target = torch.rand(1, n, t, 2, generator=gen) * s
    occluded = torch.rand(1, n, t, generator=gen) < 0.2
    return tuple(x.to(args.device) for x in (video, queries, target, occluded))


def timed(fn, repeats: int, device: str) -> tuple[float, float, object]:
    """Median wall and CPU (all threads of this process) seconds of ``fn`` after one warm-up."""
    result = fn()  # warm-up (and compilation)
    walls, cpus = [], []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load_official(path: Path):
    root = path.resolve()
    if (root / "tapir_model.py").exists():
        root = root.parent.parent
    if not (root / "tapnet" / "torch" / "tapir_model.py").exists():
        raise SystemExit(f"--official-path {path}: no tapnet/torch/tapir_model.py there; give a tapnet checkout")
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("tapnet.torch.tapir_model")
    except ImportError as err:
        raise SystemExit(f"cannot import the official model ({err}); it needs: pip install einshape dm-tree") from err


def _no_grad_forward(model, video, queries):
    with torch.no_grad():
        return model(video, queries)


def _training_step(model, video, queries, target, occluded, image_size):
    """Forward, the model's own loss (TAPNext's, or TAPIR's for TAPIR and TAP-Net), backward."""
    model.zero_grad(set_to_none=True)
    out = model(video, queries, is_training=True)
    if isinstance(model, TAPNext):
        loss, _ = tapnext_loss(out, target, occluded, image_size, query_frame=queries[..., 0])
    else:
        loss, _ = tapir_loss(out, target, occluded, image_size)
    loss.backward()
    return loss.detach()


def compare_models(args: argparse.Namespace) -> int:
    """Forward and training-step time of each of ``args.models`` on the same inputs, as a table."""
    device = args.device
    video, queries, target, occluded = make_inputs(args)
    image_size = (args.size, args.size)
    print(
        f"{args.frames} frames {args.size}x{args.size}, {args.queries} queries, device {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; medians of {args.repeats} after a warm-up"
    )
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        if name == "tapir":
            model = TAPIR(**CONFIGS[args.config], initial_resolution=image_size)
        elif name == "tapnet":
            model = TAPNet()
        else:
            model = TAPNext(image_size=image_size, use_checkpointing=True)
        model = model.to(device).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        forward_wall, forward_cpu, _ = timed(
            functools.partial(_no_grad_forward, model, video, queries), args.repeats, device
        )
        model.train()
        step = functools.partial(_training_step, model, video, queries, target, occluded, image_size)
        train_wall, train_cpu, _ = timed(step, args.repeats, device)
        rows.append((name, params, forward_wall, forward_cpu, train_wall, train_cpu))
        print(f"  {name}: forward {forward_wall:.2f} s, training step {train_wall:.2f} s (wall)", flush=True)
    print(f"\n{'model':<9}{'params':>9}{'forward s':>11}{'(CPU s)':>9}{'train step s':>14}{'(CPU s)':>9}")
    for name, params, fw, fc, tw, tc in rows:
        print(f"{name:<9}{params:>8.1f}M{fw:>11.2f}{fc:>9.2f}{tw:>14.2f}{tc:>9.2f}")
    if device == "cpu":
        print(f"peak resident memory: {peak_rss_gib():.2f} GiB")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.models:
        return compare_models(args)
    device = args.device
    video, queries, target, occluded = make_inputs(args)
    image_size = (args.size, args.size)
    kwargs = dict(CONFIGS[args.config], initial_resolution=image_size)
    torch.manual_seed(0)
    model = TAPIR(**kwargs).to(device).eval()
    print(
        f"TAPIR {args.config}: {args.frames} frames {args.size}x{args.size}, {args.queries} queries, device {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )

    def forward(m, autocast_dtype=None):
        ctx = torch.autocast(device.split(":")[0], dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            return m(video, queries)

    def train_step(m, **kw):
        m.zero_grad(set_to_none=True)
        out = m(video, queries, is_training=True, **kw)
        loss, _ = tapir_loss(out, target, occluded, image_size)
        loss.backward()
        return loss.detach()

    def bf16_step(m):
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            return train_step(m)

    def report(label: str, wall: float, cpu: float, note: str = "") -> None:
        print(f"{label:<26} median {wall:8.3f} s wall, {cpu:8.3f} s CPU  {note}".rstrip())

    wall, cpu, ours_out = timed(lambda: forward(model), args.repeats, device)
    results = {"forward": (wall, cpu)}
    report("forward fp32", wall, cpu)
    if args.bf16:
        wall, cpu, bf16_out = timed(lambda: forward(model, torch.bfloat16), args.repeats, device)
        drift = (bf16_out["tracks"].float() - ours_out["tracks"]).abs().median().item()
        report("forward bf16 autocast", wall, cpu, f"(median |tracks - fp32| {drift:.3f} px)")
    if args.train:
        model.train()
        wall, cpu, _ = timed(lambda: train_step(model), args.repeats, device)
        results["train"] = (wall, cpu)
        report("forward+backward fp32", wall, cpu, "(query chunk 32, JAX stop-gradients)")
        if args.bf16:
            wall, cpu, _ = timed(lambda: bf16_step(model), args.repeats, device)
            report("forward+backward bf16", wall, cpu, "(autocast, as trainer.precision=bf16-mixed)")
        model.eval()
    if args.compile:
        compiled = TAPIR(**kwargs).to(device).eval()
        compiled.load_state_dict(model.state_dict())
        compiled.torch_pips_mixer.compile()
        try:
            wall, cpu, comp_out = timed(lambda: forward(compiled), args.repeats, device)
        except Exception as err:  # compilers are optional: report and carry on
            print(f"torch.compile unavailable here: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
        else:
            diff = (comp_out["tracks"] - ours_out["tracks"]).abs().max().item()
            report("forward, compiled mixer", wall, cpu, f"(max |tracks diff| {diff:.2e} px)")
            if args.train:
                compiled.train()
                step = bf16_step if args.bf16 else train_step
                wall, cpu, _ = timed(lambda: step(compiled), args.repeats, device)
                report(f"forward+backward {'bf16' if args.bf16 else 'fp32'}, compiled", wall, cpu)
                compiled.eval()
    if device == "cpu":
        print(f"peak resident memory so far: {peak_rss_gib():.2f} GiB")
    else:
        print(f"peak {device} memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")

    if args.official_path is not None:
        official_module = load_official(args.official_path)
        official = official_module.TAPIR(**kwargs).to(device).eval()
        official.load_state_dict(model.state_dict(), strict=True)

        def official_forward():
            with torch.no_grad():
                return official(video, queries, query_chunk_size=64)

        wall, cpu, official_out = timed(official_forward, args.repeats, device)
        ours_wall, ours_cpu = results["forward"]
        report(
            "official forward fp32",
            wall,
            cpu,
            f"-> ours {wall / ours_wall:.2f}x (wall), {cpu / ours_cpu:.2f}x (CPU) faster",
        )
        for key in ("tracks", "occlusion", "expected_dist"):
            diff = (official_out[key] - ours_out[key]).abs().max().item()
            print(f"  max |{key} diff| {diff:.2e}")
        if args.train:
            official.train()
            wall, cpu, _ = timed(lambda: train_step(official, query_chunk_size=64), args.repeats, device)
            ours_wall, ours_cpu = results["train"]
            report(
                "official forward+backward",
                wall,
                cpu,
                f"-> ours {wall / ours_wall:.2f}x (wall), {cpu / ours_cpu:.2f}x (CPU) faster "
                "(official: detached soft argmax, every chunk back-propagated)",
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
