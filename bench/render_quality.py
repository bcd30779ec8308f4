"""Render-quality benchmark: which sampling settings give clean frames at the least cost.

    python bench/render_quality.py [--config movi_e] [--scenes 3] [--resolution 128] [--reference-samples 1024]
                                   [--samples 8 16 32 64] [--thresholds 0 0.02] [--bounces 12 4]
                                   [--denoise off oidn]

Renders frame 0 of each of --scenes default scenes once at --reference-samples (no denoising, no adaptive
sampling, 12 bounces) and then at every combination of samples x {no denoising, OpenImageDenoise} x
adaptive-sampling noise threshold (0 = off) x bounce limit, and scores each against the reference: PSNR
(dB, on the 8-bit frames) and SSIM (Gaussian window sigma 1.5 on luminance, as Wang et al. 2004). Cost is
core-seconds per frame (wall time of the rgb render times the Cycles threads). Prints the medians over the
scenes, sorted by cost, with the Kubric MOVi anchor (64 spp + denoising) marked, and the cheapest setting
that matches the anchor's PSNR and SSIM.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from tapforge.synth.config import load_config
from tapforge.synth.pipeline import SceneRenderer, build_scene, scene_seed

ANCHOR = (64, True, 0.0, 12)  # Kubric MOVi: 64 spp with denoising


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images."""
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Mean structural similarity of the luminance of two uint8 RGB images (Gaussian window)."""
    weights = np.array([0.299, 0.587, 0.114])
    x, y = (np.asarray(im, np.float64) @ weights for im in (a, b))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = gaussian_filter(x, sigma), gaussian_filter(y, sigma)
    vx = gaussian_filter(x * x, sigma) - mx**2
    vy = gaussian_filter(y * y, sigma) - my**2
    cov = gaussian_filter(x * y, sigma) - mx * my
    return float(np.mean((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))))


def render_frame(blender, samples: int, denoise: bool, threshold: float, bounces: int) -> tuple[np.ndarray, float]:
    """Frame 0 of the built scene with these settings: (uint8 [H,W,3], wall seconds)."""
    cycles = blender.scene.cycles
    cycles.samples = samples
    cycles.use_denoising = denoise
    cycles.use_adaptive_sampling = threshold > 0
    if threshold > 0:
        cycles.adaptive_threshold = threshold
    cycles.max_bounces = bounces
    cycles.diffuse_bounces = cycles.glossy_bounces = min(4, bounces)
    with tempfile.TemporaryDirectory(prefix="tapforge-quality-") as tmp:
        seconds = blender._render_layers(Path(tmp), rgb=True, aux=False)
        return np.asarray(Image.open(Path(tmp) / "rgb_0000.png").convert("RGB")), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="movi_e")
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--reference-samples", type=int, default=1024)
    parser.add_argument("--samples", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.02])
    parser.add_argument("--bounces", type=int, nargs="+", default=[12, 4])
    parser.add_argument("--denoise", nargs="+", choices=("off", "oidn"), default=["off", "oidn"])
    args = parser.parse_args()
    config = load_config(args.config, [f"render.resolution={args.resolution}", "scene.num_frames=2"])
    renderer = SceneRenderer(config)
    blender = renderer.blender
    threads = blender.scene.render.threads if blender.scene.render.threads_mode == "FIXED" else os.cpu_count()
    denoise = [mode == "oidn" for mode in args.denoise]
    settings = list(itertools.product(args.samples, denoise, args.thresholds, args.bounces))
    if ANCHOR not in settings:
        settings.append(ANCHOR)
    scores: dict[tuple, list[tuple[float, float, float]]] = {s: [] for s in settings}
    for index in range(args.scenes):
        blender.build(build_scene(config, scene_seed(config.seed, index), renderer.assets))
        blender.scene.frame_end = 0
        start = time.perf_counter()
        reference, _ = render_frame(blender, args.reference_samples, False, 0.0, 12)
        print(
            f"scene {index}: reference at {args.reference_samples} spp in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        for setting in settings:
            image, seconds = render_frame(blender, *setting)
            scores[setting].append((seconds * threads, psnr(image, reference), ssim(image, reference)))
    median = {s: tuple(statistics.median(v[k] for v in runs) for k in range(3)) for s, runs in scores.items()}
    print(
        f"\n{args.scenes} {args.config} scenes at {args.resolution}x{args.resolution}, frame 0, against "
        f"{args.reference_samples} spp; medians over scenes; {threads} Cycles threads"
    )
    print(f"{'spp':>5} {'denoise':>8} {'adaptive':>9} {'bounces':>8} {'core-s/frame':>13} {'PSNR dB':>8} {'SSIM':>7}")
    for setting in sorted(settings, key=lambda s: median[s][0]):
        spp, denoise, threshold, bounces = setting
        cost, p, q = median[setting]
        mark = "  <- Kubric MOVi anchor" if setting == ANCHOR else ""
        print(
            f"{spp:>5} {'OIDN' if denoise else 'off':>8} {threshold or 'off':>9} {bounces:>8} {cost:>13.2f} "
            f"{p:>8.2f} {q:>7.4f}{mark}"
        )
    anchor_cost, anchor_psnr, anchor_ssim = median[ANCHOR]
    matching = [s for s in settings if median[s][1] >= anchor_psnr - 0.1 and median[s][2] >= anchor_ssim - 0.001]
    best = min(matching, key=lambda s: median[s][0])
    print(
        f"cheapest setting matching the anchor (PSNR within 0.1 dB, SSIM within 0.001): {best[0]} spp, "
        f"{'OIDN' if best[1] else 'no denoising'}, adaptive {best[2] or 'off'}, {best[3]} bounces: "
        f"{median[best][0]:.2f} core-s/frame, {anchor_cost / median[best][0]:.2f}x cheaper than the anchor"
    )


if __name__ == "__main__":
    main()
