"""Generated textures: reproducible from their seed, seamless, and with natural-image spectrum slopes."""

import numpy as np
import pytest

from tapforge.synth.textures import FAMILIES, generate_texture, spectrum_slope

# radially averaged power spectrum slopes measured on the photographs that scikit-learn and matplotlib ship
# (china 2.00, flower 1.96, grace_hopper 2.80, Minduka present 2.36): natural images sit near 2
PHOTO_SLOPE_RANGE = (1.7, 2.9)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_pixels_and_other_seed_other_pixels(family):
    first = generate_texture(family, 7, 128)
    generate_texture.cache_clear()
    assert np.array_equal(first, generate_texture(family, 7, 128))
    assert not np.array_equal(first, generate_texture(family, 8, 128))
    assert first.shape == (128, 128, 3) and first.dtype == np.uint8


@pytest.mark.parametrize("family", ["dead_leaves", "spectral", "mosaic", "mixture"])
def test_spectrum_slope_is_within_the_range_of_photographs(family):
    slopes = [spectrum_slope(generate_texture(family, seed, 256)) for seed in range(3)]
    assert PHOTO_SLOPE_RANGE[0] <= np.median(slopes) <= PHOTO_SLOPE_RANGE[1], slopes


def test_spectrum_slope_tells_white_noise_from_brownian_noise(rng):
    white = rng.random((256, 256))
    brown = np.cumsum(np.cumsum(rng.standard_normal((256, 256)), 0), 1)
    assert spectrum_slope(white) < 0.3 and spectrum_slope(brown) > 3.0


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown texture family"):
        generate_texture("marble", 0)
