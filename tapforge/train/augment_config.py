"""The sim2real augmentation's settings: one frozen dataclass per augmentation, each with its probability (drawn per
clip) and ranges, and their range check. Set a probability to 0 to turn that augmentation off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass

from tapforge.base.errors import TapforgeError


@dataclass(frozen=True)
class ColorConfig:
    """Colour jitter as in tapnet's training (same factors for every frame of a clip)."""

    p: float = 0.8
    brightness: float = 32.0 / 255.0  # max |added offset|, in [0,1] intensity units
    contrast: tuple[float, float] = (0.6, 1.4)
    saturation: tuple[float, float] = (0.6, 1.4)
    hue: float = 0.2  # max |hue shift|, as a fraction of the colour circle
    grayscale_p: float = 0.2


@dataclass(frozen=True)
class BlurConfig:
    gaussian_p: float = 0.1
    gaussian_sigma: tuple[float, float] = (0.3, 1.5)  # pixels at the training resolution
    motion_p: float = 0.1
    motion_length: tuple[float, float] = (2.0, 8.0)  # streak length in pixels


@dataclass(frozen=True)
class NoiseConfig:
    """Sensor noise: signal-independent read noise plus signal-dependent shot noise."""

    p: float = 0.2
    read_sigma: tuple[float, float] = (0.0, 0.03)
    shot_sigma: tuple[float, float] = (0.0, 0.05)


@dataclass(frozen=True)
class JpegConfig:
    """JPEG-style compression: YCbCr 4:2:0, 8x8 DCT quantised with the IJG tables at ``quality``."""

    p: float = 0.2
    quality: tuple[float, float] = (30.0, 90.0)


@dataclass(frozen=True)
class CropConfig:
    """Random crop window (Kubric-style area and aspect), optionally drifting and zooming over time."""

    p: float = 1.0
    area: tuple[float, float] = (0.3, 1.0)  # window area as a fraction of the frame
    aspect: tuple[float, float] = (0.5, 2.0)  # window aspect change (stretch) range
    drift_p: float = 0.5  # probability that the window moves over the clip (simulated camera motion)
    drift: float = 0.15  # max shift of the window centre from first to last frame, fraction of the frame
    zoom: tuple[float, float] = (0.8, 1.25)  # window scale factor from first to last frame


@dataclass(frozen=True)
class FlipConfig:
    horizontal_p: float = 0.5
    vertical_p: float = 0.0


@dataclass(frozen=True)
class OccluderConfig:
    """Patches pasted over the video; points under a patch become occluded."""

    p: float = 0.3
    max_patches: int = 3
    size: tuple[float, float] = (0.1, 0.35)  # patch sides as a fraction of the training resolution
    replace_p: float = 0.5  # a patch shows another clip's content; otherwise a flat noisy colour (eraser)
    max_speed: float = 0.02  # patch motion, fraction of the frame per frame


@dataclass(frozen=True)
class RollConfig:
    """TAPNext++'s camera roll (off by default; TAPNext++ trains with p 0.8): every frame is shifted by whole pixels,
    wrapping around on the frame padded with black to its diagonal, then rotated about the frame's centre.

    The x shift, y shift and angle each follow a sum of ``waves`` slow and ``waves`` fast sinusoids over the clip that
    starts at 0 on the first frame (see `tapforge.train.draws.wave_signal`). The amplitude pairs are the largest
    amplitude of one slow and of one fast sinusoid, times ``strength``; the defaults are TAPNext++'s (256x256 frames).
    """

    p: float = 0.0
    strength: float = 1.0  # scales every amplitude
    waves: int = 5  # sinusoids per band (slow, fast) and per quantity
    shift_x: tuple[float, float] = (30.0, 10.0)  # (slow, fast) max amplitude, pixels at the training resolution
    shift_y: tuple[float, float] = (20.0, 7.0)  # (slow, fast) max amplitude, pixels at the training resolution
    angle: tuple[float, float] = (10.0, 5.0)  # (slow, fast) max amplitude, degrees (counter-clockwise on screen)
    slow_freq: tuple[float, float] = (1.0, 4.0)  # angular frequency range of a slow sinusoid, in pi per clip
    fast_freq: tuple[float, float] = (8.0, 16.0)  # angular frequency range of a fast sinusoid, in pi per clip


@dataclass(frozen=True)
class HomographyConfig:
    """TAPNext++'s homography sequence (off by default; TAPNext++ trains with p 0.8): every frame is warped by the
    homography that moves the frame's corners inwards, each corner coordinate by a sum of ``waves`` slow and ``waves``
    fast sinusoids over the clip (its absolute value, times the frame side) that starts at 0 on the first frame.

    A corner that would move further in than ``margin`` of the frame side is reflected back (so the frame never
    folds over); pixels from outside the frame are black (``fill: black``) or the nearest edge pixel (``edge``).
    """

    p: float = 0.0
    strength: float = 1.0  # scales every amplitude
    waves: int = 3  # sinusoids per band (slow, fast) and per corner coordinate
    corner: tuple[float, float] = (0.05, 0.02)  # (slow, fast) max amplitude, fraction of the frame side
    slow_freq: tuple[float, float] = (1.0, 4.0)  # angular frequency range of a slow sinusoid, in pi per clip
    fast_freq: tuple[float, float] = (8.0, 16.0)  # angular frequency range of a fast sinusoid, in pi per clip
    margin: float = 0.3  # how far in a corner may move, fraction of the frame side
    fill: str = "black"  # black | edge


@dataclass(frozen=True)
class AugmentConfig:
    """All sim2real augmentations; set a probability to 0 to turn that one off."""

    enabled: bool = True
    crop: CropConfig = field(default_factory=CropConfig)
    flip: FlipConfig = field(default_factory=FlipConfig)
    roll: RollConfig = field(default_factory=RollConfig)
    homography: HomographyConfig = field(default_factory=HomographyConfig)
    occluder: OccluderConfig = field(default_factory=OccluderConfig)
    color: ColorConfig = field(default_factory=ColorConfig)
    blur: BlurConfig = field(default_factory=BlurConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    jpeg: JpegConfig = field(default_factory=JpegConfig)


_RANGE_LIMITS = {
    "contrast": (0.0, math.inf),
    "saturation": (0.0, math.inf),
    "gaussian_sigma": (0.0, 20.0),
    "motion_length": (0.0, 64.0),
    "read_sigma": (0.0, 1.0),
    "shot_sigma": (0.0, 1.0),
    "quality": (1.0, 100.0),
    "area": (1e-3, 1.0),
    "aspect": (1e-2, 100.0),
    "zoom": (0.1, 10.0),
    "size": (1e-3, 1.0),
    "slow_freq": (0.0, 1000.0),
    "fast_freq": (0.0, 1000.0),
}
# (slow, fast) amplitude pairs: each entry in the limits, in no particular order
_PAIR_LIMITS = {
    "shift_x": (0.0, 1000.0),
    "shift_y": (0.0, 1000.0),
    "angle": (0.0, 180.0),
    "corner": (0.0, 1.0),
}
_SCALAR_LIMITS = {
    "brightness": (0.0, 1.0),
    "hue": (0.0, 0.5),
    "drift": (0.0, 1.0),
    "max_speed": (0.0, 1.0),
    "max_patches": (1, 64),
    "strength": (0.0, 100.0),
    "waves": (1, 64),
    "margin": (1e-3, 0.45),  # below 0.5 the warped frame stays convex
}
_CHOICES = {"fill": ("black", "edge")}


def validate_augment_config(config: AugmentConfig, prefix: str = "data.augment") -> None:
    """Raise TapforgeError naming the key of the first out-of-range value."""
    for f in fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}.{f.name}"
        if is_dataclass(value):
            validate_augment_config(value, key)
        elif f.name == "p" or f.name.endswith("_p"):
            if not 0.0 <= float(value) <= 1.0:
                raise TapforgeError(f"{key} is {value}; fix: set it to a probability in [0, 1]")
        elif f.name in _RANGE_LIMITS:
            low, high = _RANGE_LIMITS[f.name]
            if len(value) != 2 or not low <= value[0] <= value[1] <= high:
                raise TapforgeError(f"{key} is {value}; fix: set it to [low, high] with {low} <= low <= high <= {high}")
        elif f.name in _PAIR_LIMITS:
            low, high = _PAIR_LIMITS[f.name]
            if len(value) != 2 or not all(low <= v <= high for v in value):
                raise TapforgeError(f"{key} is {value}; fix: set it to [slow, fast] with each in [{low}, {high}]")
        elif f.name in _SCALAR_LIMITS:
            low, high = _SCALAR_LIMITS[f.name]
            if f.name == "waves" and not isinstance(value, int):
                raise TapforgeError(f"{key} is {value}; fix: set it to a whole number in [{low}, {high}]")
            if not low <= value <= high:
                raise TapforgeError(f"{key} is {value}; fix: set it to a value in [{low}, {high}]")
        elif f.name in _CHOICES:
            if value not in _CHOICES[f.name]:
                raise TapforgeError(f"{key} is {value!r}; fix: set it to one of {', '.join(_CHOICES[f.name])}")
