"""Appearance benchmark: exposure and image statistics of rendered clips, against natural photographs.

    python bench/appearance.py [--configs movi_e legacy_movi_e] [--scenes 100] [--resolution 128] [--frames 4]
                               [--settings today default]

Renders --scenes scenes of each config (--samples spp) and prints per config: the share of blown-out
pixels (all channels >= 250) and of crushed pixels (all channels <= 5), as the median clip, the worst
clip and the number of clips over 2%; the mean brightness; the radially averaged power spectrum slope of
the frames (median over clips); and the seconds per scene. The same slope is printed for the photographs
that scikit-learn and matplotlib ship (``pip install "tapforge[photos]"``), the reference range.
``--settings``: render settings of ``bench/render_quality.py`` (today, kubric, default) to compare on the same
scenes, each at --samples.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from render_quality import SETTINGS, overrides
from tqdm import tqdm

from tapforge.synth.config import load_config
from tapforge.synth.pipeline import SceneRenderer
from tapforge.synth.textures import spectrum_slope
from tapforge.train.photo_clips import load_photos


def clip_statistics(video: np.ndarray) -> dict[str, float]:
    """Blown-out and crushed pixel shares, mean brightness and the mean spectrum slope of a uint8 clip."""
    return {
        "blown": float((video >= 250).all(-1).mean()),
        "crushed": float((video <= 5).all(-1).mean()),
        "mean": float(video.mean()),
        "slope": float(np.mean([spectrum_slope(frame) for frame in video])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["movi_e", "legacy_movi_e"])
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--settings", nargs="+", default=["default"], help=f"of {list(SETTINGS)}")
    args = parser.parse_args()
    photos = load_photos()
    slopes = ", ".join(f"{name} {spectrum_slope(pixels):.2f}" for name, pixels in photos)
    print(f"photographs: spectrum slope {slopes}")
    for name, setting in ((c, s) for c in args.configs for s in args.settings):
        config = load_config(
            name,
            [
                *overrides(SETTINGS[setting]),
                f"render.resolution={args.resolution}",
                f"scene.num_frames={args.frames}",
                f"render.samples={args.samples}",
                "tracks.num_tracks=64",
            ],
        )
        renderer = SceneRenderer(config)
        rows, start = [], time.perf_counter()
        for index in tqdm(range(args.scenes), desc=f"{name} {setting}", unit="scene"):
            rows.append(clip_statistics(renderer.render(index).passes["rgb"]))
        seconds = (time.perf_counter() - start) / args.scenes
        blown, crushed = (np.array([r[key] for r in rows]) for key in ("blown", "crushed"))
        print(
            f"{name} ({setting} settings): {args.scenes} scenes at {args.resolution}x{args.resolution}, "
            f"{args.frames} frames, {args.samples} spp, {seconds:.1f} s/scene"
        )
        for label, values in (("blown out (all >= 250)", blown), ("crushed (all <= 5)", crushed)):
            print(
                f"  {label:<24} median clip {100 * np.median(values):.2f}%, worst {100 * values.max():.2f}%, "
                f"clips over 2%: {(values > 0.02).sum()}"
            )
        print(
            f"  mean brightness {statistics.median(r['mean'] for r in rows):.0f}/255 (median clip), spectrum "
            f"slope {statistics.median(r['slope'] for r in rows):.2f} (median clip)"
        )


if __name__ == "__main__":
    main()
