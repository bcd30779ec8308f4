"""TAPIR point tracking in PyTorch.

Importing the package is light: ``tapforge.tapir.tapvid`` stays numpy-only, and torch is
imported only when ``TAPIR`` (or another model symbol) is first accessed, e.g. ``from tapforge.tapir import TAPIR``.
"""

from __future__ import annotations

__all__ = ["TAPIR", "TAPNet", "TAPNext", "Tracker", "track"]


def __getattr__(name: str):
    if name == "TAPIR":
        from tapforge.tapir.model import TAPIR

        return TAPIR
    if name == "TAPNet":
        from tapforge.tapir.tapnet import TAPNet

        return TAPNet
    if name == "TAPNext":
        from tapforge.tapir.tapnext import TAPNext

        return TAPNext
    if name in ("Tracker", "track"):
        from tapforge.tapir import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'tapforge.tapir' has no attribute {name!r}")
