"""tapforge: synthetic point-tracking data, TAPIR training and tracking (see README.md)."""

__version__ = "0.1.0"
