"""`tapforge export`: convert a checkpoint (TAPIR, TAP-Net or TAPNext) to tapnet .pt, safetensors, ONNX or
TorchScript.

    tapforge export CKPT --to tapnet-pt|safetensors|onnx|torchscript --out FILE [--frames T --num-queries N]
    tapforge export TAPNEXT_CKPT --to onnx --online --out step.onnx [--num-queries N]

ONNX and TorchScript hold the traced graph for one input shape: video [1,T,H,W,3] float32 in
[-1,1] at the model resolution and query_points [1,N,3] (t,y,x) pixels; outputs tracks,
occlusion, expected_dist and visibility (a TAPNext's with the frames before each query tracked on the
reversed video). ``--online`` (TAPNext, ONNX) writes instead its step over one frame with the recurrent state
as inputs and outputs (``tapforge.tapir.checkpoint.OnlineTrackingGraph``). After exporting, the file is loaded
back and run against PyTorch on a random input (the online step over --frames frames) and the largest
difference is printed; more than 1e-3 (ONNX, TorchScript) or any difference (weights) is an error.
--no-verify skips this.
"""

from __future__ import annotations

import argparse
import os
import time
from importlib.util import find_spec

import numpy as np
import torch

from tapforge.base.arguments import Parser, add_number
from tapforge.base.atomic import check_output_file, remove_stale_temporaries
from tapforge.base.errors import TapforgeError
from tapforge.tapir import checkpoint
from tapforge.tapir.cli_options import add_load_options, load_overrides

GRAPH_TOLERANCE = 1e-3
"""Largest accepted difference between an ONNX/TorchScript file and PyTorch (pixels or logits)."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="tapforge export", description="Export a TAPIR, TAP-Net or TAPNext checkpoint to another format.")
    p.add_argument(
        "checkpoint", help="tapnet .pt or checkpoint.npy, TAPNext .npz or .pt, tapforge .ckpt or .safetensors"
    )
    p.add_argument("--to", required=True, choices=checkpoint.EXPORT_FORMATS, help="output format")
    p.add_argument("--out", required=True, help="output file")
    add_number(p, "--frames", int, 1, 4096, default=24, help="ONNX/TorchScript: number of frames T (default 24)")
    add_number(
        p, "--num-queries", int, 1, 65536, default=64, help="ONNX/TorchScript: number of query points N (default 64)"
    )
    p.add_argument(
        "--online",
        action="store_true",
        help="ONNX of a TAPNext: one frame per call, the recurrent state as inputs and outputs",
    )
    p.add_argument("--no-verify", action="store_true", help="skip running the exported file against PyTorch")
    add_load_options(p)
    return p


def _reference(model, video, queries):
    with torch.no_grad():
        return [t.numpy() for t in checkpoint.TrackingGraph(model, queries.shape[1])(video, queries)]


def _online_difference(model, path: str, num_frames: int, num_queries: int) -> float:
    """Largest difference between an online ONNX step run over a random stream and ``TAPNext.online_step``."""
    import onnxruntime as ort

    video, queries = checkpoint.example_inputs(model, num_frames, num_queries, seed=1)
    with torch.no_grad():
        expected, _ = model.online_step(video, None, queries)
    expected["visibility"] = torch.sigmoid(-expected["occlusion"])
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    _, _, _, rg_lru_state, conv1d_state = checkpoint.online_example_inputs(model, num_queries)
    rg_lru_state, conv1d_state = rg_lru_state.numpy(), conv1d_state.numpy()
    worst = 0.0
    for t in range(num_frames):
        feed = [video[:, t : t + 1].numpy(), queries.numpy(), np.array(t, np.float32), rg_lru_state, conv1d_state]
        *got, rg_lru_state, conv1d_state = session.run(None, dict(zip(checkpoint.ONLINE_INPUTS, feed)))
        for key, value in zip(("tracks", "occlusion", "expected_dist", "visibility"), got):
            worst = max(worst, float(np.abs(expected[key][:, :, t].numpy() - value).max()))
    return worst


def verify_export(model, path: str, fmt: str, num_frames: int, num_queries: int, online: bool = False) -> float:
    """Largest absolute difference between the exported file and PyTorch on a fresh random input."""
    model = model.float().cpu().eval()
    if fmt in ("tapnet-pt", "safetensors"):
        reloaded = checkpoint.load_model(path)
        own, back = model.state_dict(), reloaded.state_dict()
        return max(float((own[k].float() - back[k].float()).abs().max()) for k in own)
    if online:
        return _online_difference(model, path, num_frames, num_queries)
    video, queries = checkpoint.example_inputs(model, num_frames, num_queries, seed=1)
    expected = _reference(model, video, queries)
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run(None, {"video": video.numpy(), "query_points": queries.numpy()})
    else:
        with torch.no_grad():
            got = [t.numpy() for t in torch.jit.load(path)(video, queries)]
    return max(float(np.abs(a - b).max()) for a, b in zip(expected, got))


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    check_output_file(args.out, "--out", {"the input checkpoint": args.checkpoint})
    if args.online and args.to != "onnx":
        raise TapforgeError(f"--online writes an ONNX step graph, not {args.to}; fix: add --to onnx or drop --online")
    if args.to == "onnx":
        missing = [m for m in ("onnx", "onnxruntime")[: 1 if args.no_verify else 2] if not find_spec(m)]
        if missing:
            raise TapforgeError(
                f"--to onnx needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed; "
                'fix: pip install "tapforge[onnx]" (or --to torchscript, which needs nothing more)'
            )
    remove_stale_temporaries(args.out)  # left by a killed export of this file
    model = checkpoint.load_model(args.checkpoint, **load_overrides(args))
    start = time.perf_counter()
    if args.to == "tapnet-pt":
        checkpoint.save_tapnet_pt(model, args.out)
    elif args.to == "safetensors":
        checkpoint.save_safetensors(model, args.out)
    elif args.to == "onnx":
        checkpoint.export_onnx(model, args.out, args.frames, args.num_queries, online=args.online)
    else:
        checkpoint.export_torchscript(model, args.out, args.frames, args.num_queries)
    print(
        f"wrote {args.out} ({args.to}, {os.path.getsize(args.out) / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f} s"
    )
    if not args.no_verify:
        diff = verify_export(model, args.out, args.to, args.frames, args.num_queries, online=args.online)
        tolerance = GRAPH_TOLERANCE if args.to in ("onnx", "torchscript") else 0.0
        if not diff <= tolerance:
            raise TapforgeError(
                f"{args.out} was written but differs from PyTorch by {diff:.2e} (more than {tolerance:g}); "
                "fix: do not use it, and report this with the checkpoint and command"
            )
        print(f"verified: max |exported - pytorch| = {diff:.2e}")
    return 0
