"""`tapforge synth render|verify|preview|to-tapvid|export`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tapforge.base.errors import TapforgeError


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors (a bad flag, a value that is not a number) are one error line, as every other
    error of the command line, instead of the usage block and a line."""

    def error(self, message: str):
        raise TapforgeError(f"{message}; see `{self.prog} --help`")


def _workers(text: str) -> int | None:
    """``--workers`` value: a positive integer, or None for auto."""
    if text == "auto":
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise TapforgeError(f"--workers {text}: give a positive number of worker processes, or auto")


def _check_counts(args: argparse.Namespace) -> None:
    """Numeric flags the parser takes as any integer: refuse values that would silently do the wrong thing (the
    upper bounds that depend on the dataset are checked where it is read: --index, --shard-index)."""
    for flag, minimum in (
        ("num_scenes", 1),
        ("max_tracks", 1),
        ("clips_per_file", 1),
        ("index", 0),
        ("num_shards", 1),
        ("shard_index", 0),
    ):
        value = getattr(args, flag, None)
        if value is not None and value < minimum:
            raise TapforgeError(f"--{flag.replace('_', '-')} {value}: give {minimum} or more")


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_file(path: Path, flag: str, suffixes: tuple[str, ...] = ()) -> None:
    """Refuse, before any work, an output file path that is a folder, lies under a file, or has another suffix than
    ``suffixes`` (any when empty)."""
    example = f"{path.name or 'out'}{suffixes[0] if suffixes else ''}"
    if path.is_dir():
        raise TapforgeError(f"{flag} {path} is a folder; give a file name, e.g. {flag} {path / example}")
    parent = _first_existing(path.parent)
    if parent.exists() and not parent.is_dir():
        raise TapforgeError(f"{flag} {path}: {parent} is a file, not a folder; give a path inside a folder")
    if suffixes and path.suffix.lower() not in suffixes:
        raise TapforgeError(f"{flag} {path}: give a file name ending in {' or '.join(suffixes)}")


def _presets() -> str:
    """One line per shipped preset: its name and the first line of its file's leading comment."""
    from tapforge.synth.config import CONFIG_DIR

    lines = ["presets (--config NAME):"]
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        if path.stem != "base":  # what every preset inherits, not one to render
            first = path.read_text().splitlines()[0].lstrip("#").strip()
            lines.append(f"  {path.stem:<15} {first}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tapforge synth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser(
        "render",
        help="render scenes into WebDataset shards (resumable, shard-indexed)",
        epilog=_presets(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render.add_argument(
        "--config", default="movi_e", help="a preset name (listed below; default movi_e) or a YAML file's path"
    )
    render.add_argument("--out", required=True, type=Path, help="dataset folder (created if missing)")
    render.add_argument("--num-scenes", type=int, default=8, help="scenes in the whole dataset (all jobs)")
    render.add_argument("--shard-index", type=int, help="this job's index I (default: SLURM/Kubernetes env, else 0)")
    render.add_argument("--num-shards", type=int, help="number K of parallel jobs the dataset is split over")
    render.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set render.samples=64 (repeatable)",
    )
    render.add_argument(
        "--workers",
        default="auto",
        metavar="N|auto",
        help="Blender worker processes on this machine, each rendering whole scenes (default auto: "
        "one per 4 usable cores, Cycles threads split between them)",
    )
    render.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    verify = sub.add_parser("verify", help="check manifest, checksums and schema of every shard")
    verify.add_argument("dir", type=Path)
    preview = sub.add_parser(
        "preview",
        help="write a GIF/MP4 of one scene with its tracks drawn (a clip over 240 frames: every k-th frame, numbered)",
    )
    preview.add_argument("dir", type=Path)
    preview.add_argument("--out", required=True, type=Path, help="clip.gif or clip.mp4 (or .webm, .mkv, .mov, .avi)")
    preview.add_argument("--index", type=int, default=0, help="which scene of the dataset (in shard order)")
    preview.add_argument("--max-tracks", type=int, default=64, help="draw at most this many tracks (default 64)")
    preview.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    to_tapvid = sub.add_parser("to-tapvid", help="write the clips as a TAP-Vid DAVIS-format pickle for evaluation")
    to_tapvid.add_argument("dir", type=Path)
    to_tapvid.add_argument(
        "--out", required=True, type=Path, help="e.g. heldout_tapvid.pkl (a folder with --clips-per-file)"
    )
    to_tapvid.add_argument(
        "--clips-per-file",
        type=int,
        help="write a folder of pickles of this many clips each (long clips: 1), read one at a time by tapforge eval",
    )
    to_tapvid.add_argument("--max-tracks", type=int, help="keep at most this many tracks per clip (random)")
    export = sub.add_parser(
        "export",
        help="write the dataset in another trainer's layout (CoTracker Kubric, PointOdyssey, TAPVid-3D, MVTracker's "
        "MV-Kubric)",
    )
    export.add_argument("dir", type=Path)
    export.add_argument(
        "--to", required=True, choices=("cotracker", "pointodyssey", "tapvid3d", "mvtracker"), help="the layout"
    )
    export.add_argument("--out", required=True, type=Path, help="output folder (a rerun keeps finished clips)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    _check_counts(args)
    if args.command == "render":
        from tapforge.synth.config import load_config
        from tapforge.synth.render_job import render_dataset
        from tapforge.synth.shards import job_from_environment

        workers = _workers(args.workers)
        config = load_config(args.config, args.overrides)
        job_index, num_jobs = job_from_environment(args.shard_index, args.num_shards)
        summary = render_dataset(
            config, args.out, args.num_scenes, job_index, num_jobs, progress=not args.no_progress, workers=workers
        )
        print(json.dumps(summary))
        return 0
    if args.command == "verify":
        from tapforge.synth.shards import read_manifest, verify_dataset

        problems = verify_dataset(args.dir)
        if problems:
            for problem in problems:
                print(f"DAMAGED {problem}", file=sys.stderr)
            return 1
        from tapforge.synth.pipeline import scene_of

        manifest = read_manifest(args.dir)
        shards, planned = manifest["shards"], manifest.get("num_scenes", "?")
        clips = sum(s["num_samples"] for s in shards)
        scenes = len({scene_of(key) for s in shards for key in s["keys"]})
        views = f", {clips} clips (their views)" if clips != scenes else ""
        print(f"ok: {len(shards)} shards, {scenes} scenes (of {planned} planned){views} in {args.dir}")
        return 0
    if args.command == "to-tapvid":
        from tapforge.synth.tapvid_export import export_tapvid_pickle

        if args.clips_per_file is None:
            check_output_file(args.out, "--out")
        else:
            from tapforge.base.atomic import check_output_folder

            check_output_folder(args.out, "--out")
        count = export_tapvid_pickle(args.dir, args.out, args.max_tracks, clips_per_file=args.clips_per_file)
        print(f"wrote {count} videos to {args.out}")
        return 0
    if args.command == "export":
        from tapforge.base.atomic import check_output_folder
        from tapforge.synth.exports import export_dataset

        check_output_folder(args.out, "--out")
        summary = export_dataset(args.dir, args.to, args.out)
        for note in summary["notes"]:
            print(f"note: {note}")
        unit = "scenes" if args.to == "mvtracker" else "clips"
        print(f"wrote {summary['written']} {unit} ({summary['kept']} kept from an earlier run) to {args.out}")
        return 0
    from tapforge.base.video import WRITE_SUFFIXES
    from tapforge.synth.preview import write_preview

    check_output_file(args.out, "--out", tuple(WRITE_SUFFIXES))
    print(write_preview(args.dir, args.out, args.index, args.max_tracks, progress=not args.no_progress))
    return 0
