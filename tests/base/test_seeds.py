"""Named random streams (tapforge.base.seeds): reproducible, independent by name, integers distinct from strings."""

import numpy as np
import pytest

from tapforge.base.seeds import rng, seed_int


def test_a_stream_replays_itself_and_no_other():
    first = rng(7, "scene", 3, "tracks").random(8)
    assert np.array_equal(first, rng(7, "scene", 3, "tracks").random(8))
    others = [
        rng(7, "scene", 3, "script"),
        rng(7, "scene", 4, "tracks"),
        rng(8, "scene", 3, "tracks"),
        rng(7, "scene", "3", "tracks"),
        rng(7, "scene", 3),
        np.random.default_rng(7),
    ]
    for other in others:
        assert not np.isclose(first, other.random(8)).any()


def test_integer_seeds_fit_and_differ_by_name():
    values = {seed_int(0, "train", rank, step) for rank in range(4) for step in range(50)}
    assert len(values) == 200 and all(0 <= v < 2**63 for v in values)
    assert seed_int(0, "a", bits=32) < 2**32


@pytest.mark.parametrize("bad", [-1, 1.5, None, b"x"])
def test_names_are_non_negative_integers_or_strings(bad):
    with pytest.raises((ValueError, TypeError)):
        rng(0, bad)
