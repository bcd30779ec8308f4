"""`tapforge eval`: TAP-Vid metrics of a checkpoint, with the stay-put baseline alongside.

    tapforge eval --checkpoint FILE --tapvid-davis tapvid_davis.pkl [--query-mode first|strided] [--json out.json]

Videos are resized to 256x256 and scored with ``tapforge.tapir.tapvid.compute_tapvid_metrics`` and
TAPNext++'s re-detection AJ (``compute_redetection_metrics``, AJ_RD: NaN for a video where no point
re-appears, which the mean leaves out); the benchmark number is the mean over videos. The stay-put
baseline (every point stays at its query position and is always visible) is always scored too, so a
run without --checkpoint scores only it. A TAPIR runs over a video longer than --chunk-frames (plus
its temporal reach) in windows, with the whole clip's outputs and memory bounded by the window; a TAPNext
runs online, --chunk-frames frames at a time with its recurrent state carried (the frames before a query's
frame on the reversed video, as the official strided evaluation does).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time

from tqdm.auto import tqdm

from tapforge.base.arguments import Parser, add_number
from tapforge.base.atomic import atomic_write, check_output_file, remove_stale_temporaries
from tapforge.base.errors import TapforgeError
from tapforge.tapir import tapvid
from tapforge.tapir.cli_options import add_run_options, tracker_from_args

DATASET_FLAGS = (
    ("tapvid_davis", "--tapvid-davis", "TAP-Vid-DAVIS pickle"),
    ("tapvid_kinetics", "--tapvid-kinetics", "folder of TAP-Vid-Kinetics pickle shards (or one shard)"),
    ("tapvid_rgb_stacking", "--tapvid-rgb-stacking", "TAP-Vid-RGB-Stacking pickle"),
    ("robotap", "--robotap", "folder of RoboTAP pickles (or one)"),
)
TABLE_COLUMNS = (
    ("AJ", "average_jaccard"),
    ("AJ_RD", "AJ_RD"),
    ("<d_avg", "average_pts_within_thresh"),
    ("OA", "occlusion_accuracy"),
    ("vis ok", "visible_recall"),
    ("hid ok", "occluded_recall"),
    ("J1", "jaccard_1"),
    ("J2", "jaccard_2"),
    ("J4", "jaccard_4"),
    ("J8", "jaccard_8"),
    ("J16", "jaccard_16"),
    ("<1", "pts_within_1"),
    ("<2", "pts_within_2"),
    ("<4", "pts_within_4"),
    ("<8", "pts_within_8"),
    ("<16", "pts_within_16"),
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="tapforge eval",
        description="TAP-Vid metrics (AJ, AJ_RD, <delta_avg, OA) of a TAPIR, TAP-Net or TAPNext checkpoint.",
    )
    p.add_argument(
        "--checkpoint",
        help="tapnet .pt or checkpoint.npy, TAPNext .npz or .pt, tapforge .ckpt or .safetensors (omit to score only "
        "stay-put)",
    )
    for dest, flag, help_ in DATASET_FLAGS:
        p.add_argument(flag, dest=dest, metavar="PATH", help=help_)
    p.add_argument("--query-mode", choices=tapvid.QUERY_MODES, default="first", help="query sampling (default first)")
    p.add_argument("--json", help="write all numbers (means and per-video) to this JSON file")
    add_number(p, "--max-videos", int, 1, help="evaluate only the first N videos of each dataset")
    add_number(
        p,
        "--chunk-frames",
        int,
        0,
        default=256,
        help="run a TAPIR over longer videos this many frames at a time, plus its temporal reach on each side, "
        "a TAPNext online this many frames at a time (same outputs, bounded memory; default 256; 0: whole clips)",
    )
    add_run_options(p)
    return p


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """Metrics x100 as a fixed-width table, one row per method ("-" for a metric no video has, e.g. AJ_RD where no
    point re-appears)."""
    width = max(len(name) for name in rows) + 2
    lines = [" " * width + "".join(f"{c:>8}" for c, _ in TABLE_COLUMNS)]
    for name, metrics in rows.items():
        cells = (f"{100 * metrics[k]:8.1f}" if math.isfinite(metrics[k]) else f"{'-':>8}" for _, k in TABLE_COLUMNS)
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def evaluate(samples, query_mode: str, tracker=None, max_videos: int | None = None, desc: str = "eval") -> dict:
    """Per-video and mean metrics for the stay-put baseline and (with a tracker) the model; a video without query
    points (strided mode: none visible on a query frame) is listed under ``videos_without_queries``, not scored."""
    per_video = {"stay_put": [], "model": []}
    names, unscored = [], []
    samples = iter(samples)
    first = next(samples, None)  # the first pickle is read and checked (every example) before the progress bar
    for i, sample in enumerate(tqdm(itertools.chain([first] if first else [], samples), desc=desc, unit="video")):
        if max_videos is not None and i >= max_videos:
            break
        if sample["query_points"].shape[1] == 0:  # strided mode can find no visible point: nothing to score
            unscored.append(sample["name"])
            continue
        names.append(sample["name"])
        args = (sample["query_points"], sample["occluded"], sample["target_points"])
        stay_tracks, stay_occ = tapvid.stay_put_prediction(sample["query_points"], sample["occluded"].shape[-1])
        per_video["stay_put"].append(tapvid.compute_all_metrics(*args, stay_occ, stay_tracks, query_mode))
        if tracker is not None:
            result = tracker.track(sample["video"][0], sample["query_points"][0])
            per_video["model"].append(
                tapvid.compute_all_metrics(*args, result.occluded[None], result.tracks[None], query_mode)
            )
    if not names:
        raise TapforgeError(
            "the dataset holds no videos"
            + (f" with a query point ({len(unscored)} without)" if unscored else "")
            + "; fix: check the pickle path, or use --query-mode first"
        )
    report = {"query_mode": query_mode, "num_videos": len(names), "videos": names, "videos_without_queries": unscored}
    for method, metrics in per_video.items():
        if metrics:
            report[method] = {
                "mean": tapvid.mean_metrics(metrics),
                "per_video": {
                    k: [float(m[k][0]) for m in metrics] for k in tapvid.METRIC_KEYS + tapvid.REDETECTION_KEYS
                },
            }
    return report


def _json_safe(obj):
    """NaN (a video without evaluable points) becomes null so any JSON reader accepts the file."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    datasets = [(dest, getattr(args, dest)) for dest, _, _ in DATASET_FLAGS if getattr(args, dest)]
    if not datasets:
        raise TapforgeError(
            "no dataset given; fix: pass --tapvid-davis PKL (or --tapvid-kinetics / --tapvid-rgb-stacking / --robotap)"
        )
    if args.json:  # before the work: a path that cannot be written would lose the results
        flags = {dest: flag for dest, flag, _ in DATASET_FLAGS}
        inputs = {f"the {flags[dest]} data": path for dest, path in datasets}
        check_output_file(args.json, "--json", {"the checkpoint": args.checkpoint, **inputs})
        remove_stale_temporaries(args.json)
    for _, path in datasets:  # a missing file or an empty folder is found before the work
        tapvid.tapvid_pickle_paths(path)
    tracker = None
    if args.checkpoint:
        tracker = tracker_from_args(args, chunk_frames=args.chunk_frames)
    results = {"checkpoint": args.checkpoint, "datasets": {}}
    for dest, path in datasets:
        start = time.perf_counter()
        samples = tapvid.iter_tapvid(path, args.query_mode, resolution=(256, 256))
        report = evaluate(samples, args.query_mode, tracker, args.max_videos, desc=dest)
        report["seconds"] = round(time.perf_counter() - start, 2)
        results["datasets"][dest] = report
        rows = {"model": report["model"]["mean"]} if "model" in report else {}
        rows["stay-put"] = report["stay_put"]["mean"]
        left_out = report["videos_without_queries"]
        note = f", {len(left_out)} without a visible query point left out" if left_out else ""
        print(f"\n{dest} ({report['num_videos']} videos{note}, query mode {args.query_mode}; x100)")
        print(format_table(rows))
    if args.json:

        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                json.dump(_json_safe(results), f, indent=2, allow_nan=False)

        atomic_write(args.json, write)
        print(f"\nwrote {args.json}")
    return 0
