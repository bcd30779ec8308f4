"""Named random streams: every consumer of randomness draws from its own stream of one seed.

A stream is named by a path of strings and integers, e.g. ``rng(seed, "scene", "tracks")`` or
``rng(seed, "train", rank, step)``. Streams with different names are independent (numpy's `SeedSequence` mixes the
seed with a stable hash of each name), so more draws in one stream never shift another, and no two consumers replay
each other's numbers. The same seed and name give the same numbers on every machine and Python version.
"""

from __future__ import annotations

import zlib

import numpy as np


def _words(name: str | int) -> list[int]:
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        value = int(name)
        if value < 0:
            raise ValueError(f"a stream name's number must be >= 0, got {value}")
        return [1, value & 0xFFFFFFFF, value >> 32]  # tagged, so the number 5 and the string "5" differ
    if isinstance(name, str):
        return [2, zlib.crc32(name.encode())]
    raise TypeError(f"a stream name is a string or an integer, got {type(name).__name__}")


def seed_sequence(seed: int, *names: str | int) -> np.random.SeedSequence:
    """The `SeedSequence` of the stream ``names`` under ``seed``."""
    entropy = _words(seed)
    for name in names:
        entropy += _words(name)
    return np.random.SeedSequence(entropy)


def rng(seed: int, *names: str | int) -> np.random.Generator:
    """A numpy generator for the stream ``names`` under ``seed``."""
    return np.random.default_rng(seed_sequence(seed, *names))


def seed_int(seed: int, *names: str | int, bits: int = 63) -> int:
    """A plain integer seed (for torch generators and libraries that take an int) for the stream ``names``."""
    state = seed_sequence(seed, *names).generate_state(2, np.uint32)
    return (int(state[0]) | int(state[1]) << 32) & ((1 << bits) - 1)
