"""The train package's commands: ``tapforge train``, ``tapforge pack-videos`` and ``tapforge photo-clips``.

``tapforge train fit|validate|test --config configs/train/X.yaml [--section.key value ...]`` (`main`) is
LightningCLI over :class:`tapforge.train.module.TAPIRModule` (``model:`` section) and
:class:`tapforge.train.data.TAPIRDataModule` (``data:`` section), with ``trainer:`` the Lightning Trainer.
The resolved config is saved as ``config.yaml`` in the first logger's folder. Loggers: those of
the config (TensorBoard by default), plus CSV always, plus W&B when ``wandb`` is installed and
``WANDB_PROJECT`` is set. Bad config values end with one TapforgeError line naming the key. ``--help`` shows the
main options (`short_help`, without importing Lightning), ``--help-all`` LightningCLI's help of every option.

``tapforge pack-videos`` (`pack_videos_main`) and ``tapforge photo-clips`` (`photo_clips_main`) are numpy-only
commands; like ``main``, each imports what it needs when it runs.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import signal
import sys
import warnings

from tapforge.base import verbose
from tapforge.base.errors import TapforgeError

SUBCOMMANDS = ("fit", "validate", "test")
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")  # --ckpt_path values Lightning resolves itself
log = logging.getLogger(__name__)
# the last line of a traceback that a DataLoader worker's TapforgeError carries: "[module.]TapforgeError: message"
ERROR_LINE = re.compile(rf"^(?:{re.escape(TapforgeError.__module__)}\.)?{TapforgeError.__name__}: (.*)$")


def _one_line(message: str) -> str:
    """The useful line of an error that may carry a DataLoader worker traceback or usage text."""
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        match = ERROR_LINE.match(line)
        if match:
            return match.group(1)
    return " ".join(lines) if len(lines) < 4 else lines[-1]


def _resolve_precision(trainer) -> None:
    """bf16 only where it runs fast: fall back to 32-true on the CPU and 16-mixed on pre-Ampere GPUs."""
    import torch

    precision, accelerator = str(trainer.get("precision")), str(trainer.get("accelerator"))
    if "bf16" not in precision:
        return
    if not (torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")):
        warnings.warn(f"trainer.precision={precision} needs a GPU; training in 32-true on the CPU", stacklevel=2)
        trainer["precision"] = "32-true"
    elif not torch.cuda.is_bf16_supported():
        warnings.warn(f"this GPU has no bfloat16; trainer.precision={precision} becomes 16-mixed", stacklevel=2)
        trainer["precision"] = "16-mixed"


def _has_tensorboard() -> bool:
    """TensorBoard logging needs tensorboard or tensorboardX; without either, training logs CSV only (and says so)."""
    import importlib.util

    if any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
        return True
    print(
        "tapforge train: tensorboard is not installed: logging to CSV only (pip install tensorboard)", file=sys.stderr
    )
    return False


def _resolve_last(trainer) -> str | None:
    """The file ``--ckpt_path last`` means, found as Lightning finds it (the newest last*.ckpt), or None."""
    found = [
        p
        for c in trainer.checkpoint_callbacks
        if getattr(c, "dirpath", None)
        for p in glob.glob(os.path.join(c.dirpath, "last*.ckpt"))
    ]
    return max(found, key=os.path.getmtime) if found else None


def read_checkpoint(path: str) -> dict:
    """The weights' shapes of a ``--ckpt_path`` file read as Lightning reads it (meta tensors: no memory held), or
    one error line naming the problem and the fix."""
    import torch

    from tapforge.tapir.checkpoint import load_plain

    if not os.path.isfile(path):
        raise TapforgeError(
            f"--ckpt_path {path}: no such file; fix: give a .ckpt written by tapforge train fit, or last"
        )
    try:  # Lightning's own load of it is restricted the same way (before_instantiate_classes)
        checkpoint = load_plain(path, f"--ckpt_path {path}", "give a .ckpt written by tapforge train fit")
    except TapforgeError:
        raise
    except Exception as err:  # noqa: BLE001 - truncated zip, random bytes
        others = sorted(
            (
                p
                for p in glob.glob(os.path.join(os.path.dirname(path) or ".", "*.ckpt"))
                if os.path.abspath(p) != os.path.abspath(path)
            ),
            key=os.path.getmtime,
        )
        hint = f"resume from the newest other checkpoint there ({others[-1]})" if others else "delete it and start over"
        raise TapforgeError(
            f"--ckpt_path {path} is not a readable checkpoint (truncated or not a torch file: "
            f"{type(err).__name__}); fix: {hint}"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise TapforgeError(
            f"--ckpt_path {path} is not a Lightning checkpoint (no state_dict); fix: give a .ckpt "
            "written by tapforge train fit (weights from elsewhere go in --model.init_from)"
        )
    return {k: torch.empty(getattr(v, "shape", ()), device="meta") for k, v in checkpoint["state_dict"].items()}


def check_checkpoint_fits(path: str, weights: dict, module) -> None:
    """One error line naming the mismatched keys when the ``--ckpt_path`` weights (`read_checkpoint`) do not fit
    ``module``."""
    from tapforge.tapir.checkpoint import state_dict_mismatch

    problems = state_dict_mismatch(module.state_dict(), weights)
    if problems:
        raise TapforgeError(
            f"--ckpt_path {path} does not fit this model.model: "
            + "; ".join(problems)
            + "; fix: use the model settings it was trained with (its run's config.yaml)"
        )


def _build_cli_class():
    from jsonargparse import Namespace
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.loggers import CSVLogger, Logger

    from tapforge.train.callbacks import TrackOverlays

    class TapforgeCLI(LightningCLI):
        """LightningCLI with tapforge's logger and precision rules."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_lightning_class_args(TrackOverlays, "overlays")  # config keys overlays.num_videos, .max_points

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            if "weights_only" in config:  # Lightning's resume load: never the full unpickler (as read_checkpoint)
                config["weights_only"] = True
            trainer = config["trainer"]
            _resolve_precision(trainer)
            root = trainer.get("default_root_dir") or "runs"
            trainer["default_root_dir"] = root
            if trainer.get("logger") in (None, True):
                kinds = (("TensorBoardLogger", "tensorboard"),) if _has_tensorboard() else ()
                trainer["logger"] = [
                    Namespace(
                        class_path=f"lightning.pytorch.loggers.{kind}", init_args=Namespace(save_dir=root, name=name)
                    )
                    for kind, name in kinds + (("CSVLogger", "csv"),)
                ]
            for callback in trainer.get("callbacks") or []:
                if isinstance(callback, Namespace) and str(callback.get("class_path", "")).endswith("ModelCheckpoint"):
                    if callback.get("init_args") is None:
                        callback["init_args"] = Namespace()
                    if not callback.init_args.get("dirpath"):
                        callback.init_args["dirpath"] = os.path.join(root, "checkpoints")

        def _parse_ckpt_path(self) -> None:
            # LightningCLI reads the file's hyper-parameters here (they override the model config): read it first
            subcommand = self.config.get("subcommand")
            path = self.config[subcommand].get("ckpt_path") if subcommand else None
            self._read_weights = None  # (path, weights): read once, checked against the model once it is built
            if path and path not in LIGHTNING_CKPT_NAMES:
                self._read_weights = (str(path), read_checkpoint(str(path)))
            super()._parse_ckpt_path()

        def _check_ckpt_path(self) -> None:
            path = self.config[self.subcommand].get("ckpt_path")
            if path == "last":
                path = _resolve_last(self.trainer)
            if path and path not in LIGHTNING_CKPT_NAMES:
                read = self._read_weights
                weights = read[1] if read and read[0] == str(path) else read_checkpoint(str(path))
                check_checkpoint_fits(str(path), weights, self.model)

        def before_fit(self) -> None:
            self._check_ckpt_path()
            # Lightning's own SIGTERM handling ends a fit after the current step, checkpointed by save_on_exception
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

        def before_validate(self) -> None:
            self._check_ckpt_path()

        def before_test(self) -> None:
            self._check_ckpt_path()

        def instantiate_trainer(self, **kwargs):
            trainer = super().instantiate_trainer(**kwargs)
            loggers = list(trainer.loggers)
            if loggers and not any(isinstance(lg, CSVLogger) for lg in loggers):
                loggers.append(CSVLogger(save_dir=trainer.default_root_dir, name="csv"))
            if loggers and os.environ.get("WANDB_PROJECT"):
                try:
                    import wandb  # noqa: F401
                    from lightning.pytorch.loggers import WandbLogger
                except ImportError:
                    log.info("WANDB_PROJECT is set but wandb is not installed; not logging to W&B")
                else:
                    if not any(isinstance(lg, WandbLogger) for lg in loggers):
                        loggers.append(
                            WandbLogger(project=os.environ["WANDB_PROJECT"], save_dir=trainer.default_root_dir)
                        )
            trainer.loggers = [lg for lg in loggers if isinstance(lg, Logger)]
            return trainer

    return TapforgeCLI


LIGHTNING_CHATTER = ("💡 Tip:", "`weights_only` was not set")  # notices a user cannot act on
# what Lightning says on SIGTERM / an exception, which our one 'interrupted at step N, saved ...' line says
LIGHTNING_INTERRUPT = re.compile(r"^(\[rank: \d+\] )?Received SIGTERM|^An \w+ was raised with message:")


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith(LIGHTNING_CHATTER) or LIGHTNING_INTERRUPT.match(message))


def _quiet_lightning() -> None:
    """Drop Lightning's advertisement and internal notices from its console output (progress bars stay)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _DropChatter) for f in handler.filters):
                handler.addFilter(_DropChatter())


HELP_ALL = "--help-all"  # LightningCLI's own help: every option
SUBCOMMAND_HELP = {  # (one line for the list, the sentence of its own help)
    "fit": ("train a model", "Train a model on the config's data, validating as its trainer: section says."),
    "validate": (
        "score a checkpoint, logged as val/*",
        "Score a checkpoint on the config's validation sets, logged as val/*.",
    ),
    "test": ("score a checkpoint, logged as test/*", "Score a checkpoint on the validation sets, logged as test/*."),
}
# (flag, what it does, the subcommands it is shown for): the options most runs set, of LightningCLI's hundreds
MAIN_OPTIONS = (
    ("--config FILE", "a YAML config (configs/train/*.yaml); give more to layer them, later ones win", SUBCOMMANDS),
    ("--data.train_shards SHARDS", "training shards: folders, files, globs, brace patterns or URLs", ("fit",)),
    ("--data.val_shards SHARDS", "held-out synthetic shards, scored like TAP-Vid", SUBCOMMANDS),
    ("--data.tapvid.davis PKL", "a TAP-Vid DAVIS pickle (also .kinetics, .rgb_stacking, .robotap)", SUBCOMMANDS),
    ("--data.real_videos VIDEOS", "unlabeled videos for self-supervised fine-tuning", ("fit",)),
    ("--model.init_from FILE", "start from these weights (official .pt, .ckpt or .safetensors)", ("fit",)),
    ("--trainer.max_steps N", "training steps", ("fit",)),
    ("--trainer.devices N", "devices per node (auto, 1, 8 ...)", SUBCOMMANDS),
    ("--ckpt_path CKPT", "resume from this checkpoint, or last (the newest last.ckpt of the run)", ("fit",)),
    ("--ckpt_path CKPT", "the checkpoint to score", ("validate", "test")),
    ("--print_config", "print the resolved config as YAML and exit", SUBCOMMANDS),
)


def short_help(subcommand: str | None) -> str:
    """``tapforge train [SUBCOMMAND] --help``: the usage, the main options and how to see every option."""
    sections = "Every key of a config's model:, data: and trainer: sections is an option too: --section.key VALUE."
    if subcommand is None:
        width = max(map(len, SUBCOMMANDS))
        return "\n".join(
            [
                "usage: tapforge train {fit,validate,test} --config FILE [--section.key VALUE ...]",
                "",
                "Train and score point trackers (TAPIR, TAP-Net) with Lightning's LightningCLI.",
                sections,
                "",
                "subcommands:",
                *(f"  {name:<{width}}  {SUBCOMMAND_HELP[name][0]}" for name in SUBCOMMANDS),
                "",
                "its main options: tapforge train SUBCOMMAND --help",
                f"every option, with its default and help: tapforge train SUBCOMMAND {HELP_ALL}",
            ]
        )
    options = [(flag, text) for flag, text, shown in MAIN_OPTIONS if subcommand in shown]
    width = max(len(flag) for flag, _ in options)
    checkpoint = " --ckpt_path CKPT" if subcommand != "fit" else ""
    return "\n".join(
        [
            f"usage: tapforge train {subcommand} --config FILE{checkpoint} [--section.key VALUE ...]",
            "",
            SUBCOMMAND_HELP[subcommand][1],
            sections,
            "",
            "main options:",
            *(f"  {flag:<{width}}  {text}" for flag, text in options),
            "",
            f"every option, with its default and help: tapforge train {subcommand} {HELP_ALL}",
        ]
    )


def _check_config_files(argv: list[str]) -> None:
    """Every ``--config FILE`` is a readable YAML mapping of sections, or one line naming it (LightningCLI would
    quote a line of the file as if it were a key)."""
    import yaml

    paths = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    paths += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                tree = yaml.safe_load(f)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            reason = err.strerror if isinstance(err, OSError) else type(err).__name__
            raise TapforgeError(
                f"--config {path}: not a readable YAML file ({reason}); fix: give a config such as "
                "configs/train/tapir.yaml"
            ) from None
        if not isinstance(tree, dict):
            raise TapforgeError(
                f"--config {path}: holds a {type(tree).__name__}, not a mapping of sections (trainer:, "
                "model:, data:); fix: give a config such as configs/train/tapir.yaml"
            )


def main(argv: list[str] | None = None) -> int:
    """Run ``fit``, ``validate`` or ``test``; see the module docstring. ``--help`` prints `short_help` (no Lightning
    import), ``--help-all`` LightningCLI's help of every option."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(short_help(next((a for a in argv if a in SUBCOMMANDS), None)))
        return 0
    argv = ["--help" if a == HELP_ALL else a for a in argv]
    _check_config_files(argv)
    from jsonargparse import ArgumentError
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from tapforge.train.callbacks import DataStatistics, InterruptedFit, LastCheckpoint
    from tapforge.train.data import TAPIRDataModule
    from tapforge.train.module import TAPIRModule

    if not verbose():
        _quiet_lightning()
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")  # ours is exact
    warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")  # no validation set
    # the training stream is re-seeded from the global step (TAPIRDataModule.train_dataloader): a mid-epoch resume is sound
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    parser_kwargs = {
        "prog": "tapforge train",
        "exit_on_error": False,
        **{name: {"exit_on_error": False} for name in SUBCOMMANDS},
    }
    cli_class = _build_cli_class()

    class Subcommands(cli_class):
        @staticmethod
        def subcommands():
            return {k: v for k, v in cli_class.subcommands().items() if k in SUBCOMMANDS}

    interrupt = InterruptedFit()
    try:
        Subcommands(
            TAPIRModule,
            TAPIRDataModule,
            args=argv,
            parser_kwargs=parser_kwargs,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": [LastCheckpoint(), interrupt, DataStatistics()]},
            seed_everything_default=0,
            auto_configure_optimizers=False,
        )
    except ArgumentError as err:
        raise TapforgeError(
            f"bad training config: {_one_line(str(err))}; fix: correct that key in the YAML or on the command line "
            f"(tapforge train fit {HELP_ALL} lists every key)"
        ) from None
    except MisconfigurationException as err:
        raise TapforgeError(
            f"conflicting trainer settings: {_one_line(str(err))}; fix: change one of them in the YAML or on the "
            "command line"
        ) from None
    except TapforgeError as err:
        raise TapforgeError(_one_line(str(err))) from None
    except SystemExit:
        if interrupt.interrupted:  # Lightning's exit after an interrupted fit: end it as every command does
            raise KeyboardInterrupt(interrupt.saved_checkpoint()) from None
        raise
    return 0


def pack_videos_main(argv: list[str]) -> int:
    """``tapforge pack-videos SOURCE... --out DIR``: unlabeled clips as WebDataset shards for data.real_videos."""
    from tapforge.base.arguments import Parser, add_number
    from tapforge.base.atomic import check_output_folder
    from tapforge.synth.schema import VIDEO_CODECS
    from tapforge.train.pack_videos import pack_videos
    from tapforge.train.video_sources import expand_video_sources

    p = Parser(
        prog="tapforge pack-videos",
        description="Cut unlabeled videos into clips and write them as WebDataset shards (shard-*.tar and "
        "manifest.json) for self-supervised fine-tuning (data.real_videos).",
    )
    p.add_argument("sources", nargs="+", help="video files, folders of videos or of frames, globs")
    p.add_argument("--out", required=True, help="folder for shard-*.tar and manifest.json")
    add_number(p, "--num-frames", int, 1, 4096, default=24, help="frames per clip (default 24)")
    add_number(p, "--stride", int, 1, default=1, help="take every n-th frame (default 1)")
    add_number(p, "--size", int, 8, 4096, nargs=2, metavar=("H", "W"), help="resize frames (default: keep the size)")
    add_number(p, "--clips-per-video", int, 1, help="at most this many non-overlapping clips per video (default all)")
    add_number(p, "--clips-per-shard", int, 1, default=64, help="clips per shard-*.tar (default 64)")
    p.add_argument("--codec", choices=VIDEO_CODECS, default="jpg")
    add_number(p, "--jpeg-quality", int, 1, 100, default=95, help="JPEG quality (default 95)")
    args = p.parse_args(argv)
    out = check_output_folder(args.out, "--out")
    videos, shards = expand_video_sources(args.sources, "pack-videos")
    shards = [s for s in shards if os.path.dirname(os.path.abspath(s)) != out]  # its own output, in a source folder
    if shards or not videos:
        raise TapforgeError("pack-videos takes videos and frame folders, not shards; fix: list the videos themselves")
    manifest = pack_videos(
        videos,
        args.out,
        args.num_frames,
        tuple(args.size) if args.size else None,
        args.stride,
        args.clips_per_video,
        args.clips_per_shard,
        args.codec,
        args.jpeg_quality,
    )
    clips = manifest["num_complete_samples"]
    print(
        f"packed {clips} clips of {args.num_frames} frames from {len(videos) - len(manifest['skipped'])} videos into "
        f"{len(manifest['shards'])} shards in {args.out} ({len(manifest['skipped'])} videos left out)"
    )
    return 0


def photo_clips_main(argv: list[str]) -> int:
    """``tapforge photo-clips --out real.pkl``: clips of real photos moved by known homographies, as a TAP-Vid pickle."""
    from tapforge.base.arguments import Parser, add_number
    from tapforge.base.atomic import check_output_file, remove_stale_temporaries
    from tapforge.base.video import IMAGE_SUFFIXES
    from tapforge.tapir.tapvid import write_tapvid_pickle
    from tapforge.train.photo_clips import make_clips

    p = Parser(
        prog="tapforge photo-clips",
        description="Write clips of real photos moved by known homographies, with exact point tracks, "
        "as a TAP-Vid DAVIS-format pickle (for tapforge eval --tapvid-davis).",
        epilog='Bundled photos: scikit-learn and matplotlib sample photographs (pip install "tapforge[photos]").',
    )
    p.add_argument("--out", required=True, help="the pickle to write, e.g. real.pkl")
    p.add_argument(
        "--photos",
        metavar="DIR",
        help=f"a folder of photos ({', '.join(IMAGE_SUFFIXES)}; default: the bundled ones)",
    )
    add_number(p, "--num-clips", int, 1, 100_000, default=30, help="clips to write (default 30)")
    add_number(p, "--frames", int, 2, 1000, default=24, help="frames per clip (default 24)")
    add_number(p, "--size", int, 16, 4096, default=256, help="frame side in pixels (default 256)")
    add_number(
        p, "--points", int, 2, 100_000, default=128, help="tracks per clip, half on the moving patch (default 128)"
    )
    add_number(p, "--seed", int, 0, default=0, help="random seed (default 0)")
    args = p.parse_args(argv)
    check_output_file(args.out, "--out", {"the photo folder": args.photos})  # before the work
    remove_stale_temporaries(args.out)
    clips = make_clips(args.num_clips, args.frames, args.size, args.points, args.seed, args.photos)
    write_tapvid_pickle(args.out, ((c.name, c.video, c.tracks, c.occluded) for c in clips))
    print(
        f"wrote {len(clips)} clips ({args.frames} frames, {args.size}x{args.size}, {args.points} tracks each) "
        f"to {args.out}"
    )
    return 0
