"""tapforge: synthetic point-tracking data, TAPIR training and tracking (see README.md).

This package is the command line (`tapforge.cli`) and the demo on top of synth, train and tapir; the
helpers they share live in `tapbase`.
"""
from tapbase import __version__

__all__ = ["__version__"]
