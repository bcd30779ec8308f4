"""Options that `tapforge eval`, `track` and `export` share: how a checkpoint is loaded and run.

Parsing stays light (no torch import) until a command builds its model.
"""

from __future__ import annotations

import argparse
from typing import Any

from tapforge.base.arguments import add_number


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """--softmax-temperature and --causal: settings a tapnet .pt does not record."""
    add_number(
        parser,
        "--softmax-temperature",
        float,
        0,
        1e4,
        above=True,
        help="override the checkpoint's (BootsTAPIR uses 10)",
    )
    parser.add_argument(
        "--causal",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="force causal (or non-causal) mixer convs for a tapnet .pt",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--device, --bf16 and --query-chunk-size (where and how the model runs), then the load options."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPU)")
    add_number(parser, "--query-chunk-size", int, 1, 1 << 20, default=64, help="queries per cost-volume chunk (memory)")
    add_load_options(parser)


def load_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model settings the load options override (``tapforge.tapir.checkpoint.config_overrides``)."""
    from tapforge.tapir.checkpoint import config_overrides

    return config_overrides(args.softmax_temperature, args.causal)


def tracker_from_args(args: argparse.Namespace, **kwargs: Any):
    """A ``tapir.Tracker`` for ``args.checkpoint`` with the run and load options (``kwargs`` go to the Tracker)."""
    from tapforge.tapir.inference import Tracker

    return Tracker.from_checkpoint(
        args.checkpoint,
        device=args.device,
        overrides=load_overrides(args),
        bf16=args.bf16,
        query_chunk_size=args.query_chunk_size,
        **kwargs,
    )
