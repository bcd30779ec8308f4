"""Render-quality benchmark: image quality against a high-sample reference, and the cost, of render settings.

    python bench/render_quality.py [--configs movi_e:4 movi_deform:2] [--frames 0 12] [--resolution 256]
                                   [--clip-frames 24] [--reference-samples 1024] [--reference-cache DIR] [--repeats 1]
                                   [--settings today kubric default] [--add NAME:key=value,key=value ...]
                                   [--sheet sheet.png]

Settings are named sets of ``render.*`` keys over the config: ``today`` (the default before the sampling change:
64 spp, OpenImageDenoise, adaptive noise threshold 0.02 with Cycles' own minimum of 52 samples, Blender's light
paths), ``kubric`` (Kubric MOVi's: 64 spp + OpenImageDenoise, no adaptive sampling), ``default`` (the config as it
is: base.yaml's render section) and any given with ``--add``. ``--configs``: presets with their scene counts.

For every scene (the same scenes for every setting) and every frame of ``--frames``, one reference is rendered at
``--reference-samples`` (no denoising, no adaptive sampling, Blender's light paths; cached as a PNG under
``--reference-cache`` by config, scene, frame, resolution and samples, so a rerun only renders the settings), then
every setting's rgb frame, in turn (``--repeats`` rounds, so that a change in machine load hits every setting
alike; the first render of a session, which loads the denoiser, is not counted). Each is scored against the
reference: PSNR (dB, on the 8-bit frames), SSIM (Gaussian window sigma 1.5 on luminance, as Wang et al. 2004) and
the share of pixels off by more than 32 of 255 in a channel (fireflies, blotches). Cost: core-seconds per frame,
the wall time of the rgb render times the Cycles threads. Prints per setting the medians over frames, the cost
ratio to ``today`` and the quality differences, and whether it holds today's quality (PSNR within 0.5 dB, SSIM
within 0.003). ``--sheet``: a contact sheet of every frame (reference, today, default, |default - reference| x 4).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from tapforge.synth.config import load_config
from tapforge.synth.pipeline import SceneRenderer, build_scene, scene_seed

SETTINGS = {
    "today": "render.samples=64,render.denoise=true,render.noise_threshold=0.02,render.adaptive_min_samples=0,"
    "render.max_bounces=12,render.diffuse_bounces=4,render.glossy_bounces=4,render.light_tree=true",
    "kubric": "render.samples=64,render.denoise=true,render.noise_threshold=0,render.max_bounces=12,"
    "render.diffuse_bounces=4,render.glossy_bounces=4,render.light_tree=true",
    "default": "",
}
REFERENCE = "render.denoise=false,render.noise_threshold=0,render.max_bounces=12,render.diffuse_bounces=4,"
REFERENCE += "render.glossy_bounces=4,render.light_tree=true"
EQUAL_PSNR, EQUAL_SSIM = 0.5, 0.003  # "today's quality": within these of today's default


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


def outliers(a: np.ndarray, b: np.ndarray, level: int = 32) -> float:
    """Share of pixels with a channel off by more than ``level`` of 255 (fireflies, denoiser blotches)."""
    return float((np.abs(a.astype(np.int16) - b).max(-1) > level).mean())


def add_setting_arguments(parser) -> None:
    """``--settings`` (named in SETTINGS) and ``--add NAME:key=value,...``: the settings a render bench compares."""
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help=f"of {list(SETTINGS)}")
    parser.add_argument("--add", nargs="*", default=[], help="NAME:key=value,key=value (render.* keys)")


def named_settings(args) -> dict[str, str]:
    """The settings ``add_setting_arguments`` parsed: name -> ``key=value,...`` over the config."""
    return {name: SETTINGS[name] for name in args.settings} | dict(item.split(":", 1) for item in args.add)


def overrides(spec: str) -> list[str]:
    """``key=value,key=value`` -> ["key=value", ...] (a list value stays whole)."""
    return [item for item in spec.split(",") if item]


def render_frame(blender, frame: int) -> tuple[np.ndarray, float]:
    """One rgb frame of the built scene with the renderer's current settings: (uint8 [H,W,3], wall seconds)."""
    blender.scene.frame_start = blender.scene.frame_end = frame
    with tempfile.TemporaryDirectory(prefix="tapforge-quality-") as tmp:
        seconds = blender._render_layers(Path(tmp), rgb=True, aux=False)
        with Image.open(Path(tmp) / f"rgb_{frame:04d}.png") as image:
            return np.asarray(image.convert("RGB")), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["movi_e:4", "movi_deform:2"], help="preset:scenes")
    parser.add_argument("--frames", type=int, nargs="+", default=[0, 12], help="frames of each clip to score")
    parser.add_argument("--clip-frames", type=int, default=24, help="the clip's length (its camera path depends on it)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference-samples", type=int, default=1024)
    parser.add_argument("--reference-cache", default=str(Path(tempfile.gettempdir()) / "tapforge-references"))
    add_setting_arguments(parser)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sheet", help="write a contact sheet PNG here")
    args = parser.parse_args()
    specs = named_settings(args)
    cache = Path(args.reference_cache)
    cache.mkdir(parents=True, exist_ok=True)
    common = [f"render.resolution={args.resolution}", f"scene.num_frames={args.clip_frames}"]
    scores: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in specs}
    sheet_rows = []
    for item in args.configs:
        preset, num_scenes = item.split(":") if ":" in item else (item, "1")
        base = load_config(preset, common)
        settings = {name: load_config(preset, common + overrides(spec)).render for name, spec in specs.items()}
        reference = load_config(preset, common + overrides(REFERENCE)).render
        renderer = SceneRenderer(base, args.threads)
        blender = renderer.blender
        for index in range(int(num_scenes)):
            blender.build(build_scene(base, scene_seed(base.seed, index), renderer.assets, index))
            blender.read_surfaces(base.scene.num_frames)  # runs the cloth and soft-body simulations
            for frame in args.frames:
                script = base.tree["scene"]["script_sha256"][:12]
                path = cache / f"{preset}-{script}-{index}-{frame}-{args.resolution}-{args.reference_samples}.png"
                if path.exists():
                    with Image.open(path) as image:
                        truth = np.asarray(image.convert("RGB"))
                else:
                    blender.apply_sampling(dataclasses.replace(reference, samples=args.reference_samples))
                    truth, seconds = render_frame(blender, frame)
                    Image.fromarray(truth).save(path)
                    print(f"{preset} scene {index} frame {frame}: reference in {seconds:.0f} s", flush=True)
                blender.apply_sampling(next(iter(settings.values())))
                render_frame(blender, frame)  # loads the denoiser; not counted
                images: dict[str, np.ndarray] = {}
                seconds: dict[str, list[float]] = {name: [] for name in specs}
                for _ in range(args.repeats):
                    for name, render in settings.items():
                        blender.apply_sampling(render)
                        images[name], wall = render_frame(blender, frame)
                        seconds[name].append(wall * args.threads)
                line = []
                for name in specs:
                    image = images[name]
                    score = (statistics.median(seconds[name]), psnr(image, truth), ssim(image, truth))
                    scores[name].append((*score, outliers(image, truth)))
                    line.append(f"{name} {score[0]:.1f} core-s {score[1]:.2f} dB {score[2]:.4f}")
                print(f"{preset} scene {index} frame {frame}: " + "; ".join(line), flush=True)
                shown = [truth] + [images[n] for n in ("today", "default") if n in images]
                error = np.abs(images[list(specs)[-1] if "default" not in images else "default"].astype(int) - truth)
                sheet_rows.append(np.concatenate([*shown, np.clip(error * 4, 0, 255).astype(np.uint8)], 1))
    if args.sheet:
        Image.fromarray(np.concatenate(sheet_rows, 0)).save(args.sheet)
        print(f"contact sheet: {args.sheet} (rows: frames; reference, today, default, |default - reference| x 4)")
    frames = len(next(iter(scores.values())))
    print(
        f"\n{frames} frames ({', '.join(args.configs)}; frames {args.frames}) at {args.resolution}x{args.resolution} "
        f"against {args.reference_samples} spp; medians over frames; {args.threads} Cycles threads"
    )
    base_name = "today" if "today" in scores else next(iter(scores))
    base_cost, base_psnr, base_ssim, _ = (statistics.median(v[k] for v in scores[base_name]) for k in range(4))
    print(
        f"{'setting':<10} {'core-s/frame':>12} {'x cheaper':>9} {'PSNR dB':>8} {'dPSNR':>6} {'SSIM':>7} "
        f"{'dSSIM':>7} {'>32/255':>8}  equal quality"
    )
    for name, runs in scores.items():
        cost, p, q = (statistics.median(v[k] for v in runs) for k in range(3))
        worst = max(v[3] for v in runs)
        equal = p >= base_psnr - EQUAL_PSNR and q >= base_ssim - EQUAL_SSIM
        print(
            f"{name:<10} {cost:>12.2f} {base_cost / cost:>9.2f} {p:>8.2f} {p - base_psnr:>+6.2f} {q:>7.4f} "
            f"{q - base_ssim:>+7.4f} {100 * worst:>7.3f}%  {'yes' if equal else 'no'}   {specs[name]}"
        )


if __name__ == "__main__":
    main()
