"""`tapforge` console script: dispatches to the subcommand's own module.

Each subcommand is a function ``(argv: list[str]) -> int | None`` that owns its argument parsing: the table names
its module (the function is then the module's ``main``) or ``module:function``. Modules are imported only for the
command that runs, so heavy imports (bpy, torch, lightning) happen only for the command that needs them.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from tapforge.base import VERBOSE_ENV, cache_dir, verbose
from tapforge.base.errors import TapforgeError

COMMANDS = {
    "synth": ("tapforge.synth.cli", "render, verify and preview synthetic point-tracking shards"),
    "train": ("tapforge.train.cli", "fit / validate / test TAPIR with Lightning (LightningCLI)"),
    "eval": ("tapforge.tapir.cli_eval", "evaluate a checkpoint on TAP-Vid pickles"),
    "photo-clips": (
        "tapforge.train.cli:photo_clips_main",
        "clips of real photos moved by known homographies, as a TAP-Vid pickle",
    ),
    "pack-videos": (
        "tapforge.train.cli:pack_videos_main",
        "unlabeled videos as WebDataset shards of clips, for self-supervised fine-tuning",
    ),
    "export": ("tapforge.tapir.cli_export", "export a checkpoint to tapnet-pt, safetensors, onnx or torchscript"),
    "track": ("tapforge.tapir.cli_track", "track points through a video and write an overlay"),
    "demo": ("tapforge.demo", "the whole loop on a tiny embedded default"),
}


def _usage() -> str:
    lines = [
        "usage: tapforge [--verbose] COMMAND [options]   (tapforge COMMAND --help for details)",
        "",
        "  --verbose  also show the libraries' deprecation warnings and notices",
        "",
        "commands:",
    ]
    width = max(len(name) for name in COMMANDS)
    lines += [f"  {name:<{width}} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _crash_log(command: str, argv: list[str]) -> str:
    """Write the current exception's traceback to a log file (the cache's ``crashes/``, else the temp folder);
    return where it went, or the traceback itself when no folder can be written."""
    text = f"tapforge {' '.join(argv)}\n\n{traceback.format_exc()}"
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{command}-{os.getpid()}.log"
    for folder in (cache_dir() / "crashes", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            return f"the full traceback is in {folder / name}"
        except OSError:
            continue
    return f"traceback:\n{text}"


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; SIGTERM (how SLURM and Kubernetes stop a job) ends it like Ctrl-C does."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-v"], ["--verbose"]):
        argv = argv[1:]
        os.environ[VERBOSE_ENV] = "1"
    if not verbose():  # deprecations inside torch / Lightning / webdataset are not the user's to act on
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from tapforge.base import __version__

        print(f"tapforge {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"tapforge: error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, _, function = COMMANDS[argv[0]][0].partition(":")
    command = getattr(importlib.import_module(module), function or "main")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(command(argv[1:]) or 0)
    except TapforgeError as err:
        print(f"tapforge {argv[0]}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # a command may say where it stopped and how to resume
        detail = f" {err}" if str(err) else "; completed work is kept, rerun the same command to resume"
        print(f"tapforge {argv[0]}: interrupted{detail}", file=sys.stderr)
        return 130
    except Exception as err:  # the safety net: a bug or an unforeseen input is one line, never a bare traceback
        where = _crash_log(argv[0], argv)
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(
            f"tapforge {argv[0]}: internal error: {type(err).__name__}: {message} ({where}; please report it with "
            "the command you ran)",
            file=sys.stderr,
        )
        if verbose():
            traceback.print_exc()
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
