"""The prepared GPU check: one command, every stage under its own time limit, one markdown table and a JSON file.

    python bench/gpu_check.py --download-wheels      # here, before a GPU session: wheels the GPU stack may lack
    python bench/gpu_check.py --out "$OUT"           # on the GPU machine (Python 3.12, CUDA torch, no bpy),
                                                     # with the run's carry: [".gpu_wheels"]
    python bench/gpu_check.py --cpu-dry-run --out /tmp/gpu_check   # every stage at toy size on the CPU

Stages: ``setup`` (installs, from ``.gpu_wheels/``, only the packages that do not import; prints versions and the
GPU; checks that train/ and tapir/ import without bpy), ``model`` (TAPIR at full size, 24x256x256, 256 queries:
forward and training step in fp32 and bf16, with and without torch.compile, peak memory; `bench/model.py`),
``loader_png`` / ``loader_jpg`` (clips/s of the data path against the step's demand; `bench/loader.py`),
``learn`` (`bench/learn.py` on procedural clips for a fixed number of steps: AJ / <d_avg / OA against stay-put
and untrained), ``onnx`` (export of the learned checkpoint, checked against PyTorch with onnxruntime).
Cycles is not checked: bpy 5.0 needs Python 3.11 and its wheel alone is over the machine's transfer limit.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".gpu_wheels"
# what train/ and tapir/ need beyond the GPU machine's stack, as pure or small wheels (16 MiB in all; the carry
# limit is 64 MiB): import name -> distribution. onnxruntime (250 MiB with CUDA) must already be there.
MAYBE_MISSING = {
    "webdataset": "webdataset",
    "braceexpand": "braceexpand",
    "jsonargparse": "jsonargparse",
    "docstring_parser": "docstring-parser",
    "typeshed_client": "typeshed-client",
    "yaml": "pyyaml",
    "tqdm": "tqdm",
    "safetensors": "safetensors",
    "imageio": "imageio",
    "onnx": "onnx",
}

SETUP = """
import sys, platform
import numpy, torch, lightning
import tapforge.tapir.model, tapforge.tapir.checkpoint, tapforge.train.module, tapforge.train.data  # train/ and tapir/ without Blender
assert "bpy" not in sys.modules, "train/ or tapir/ imported bpy"
print("python", platform.python_version(), "| torch", torch.__version__, "| lightning", lightning.__version__,
      "| numpy", numpy.__version__)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.0f} GiB", "| cuda", torch.version.cuda)
else:
    print("gpu none: CPU only")
try:
    import onnxruntime
    print("onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())
except ImportError:
    print("onnxruntime missing")
"""


def stages(dry: bool, out: Path, learn_steps: int) -> list[tuple[str, int, list[str]]]:
    """(name, time limit in seconds, command) of each stage; toy sizes on the CPU with ``dry``."""
    py = sys.executable
    model = [py, "bench/model.py", "--train", "--bf16"] + (
        ["--device", "cpu", "--frames", "4", "--size", "64", "--queries", "8", "--repeats", "1"]
        if dry
        else ["--compile", "--repeats", "3"]
    )
    loader = (
        [
            "--clips",
            "2",
            "--size",
            "64",
            "--clip-frames",
            "4",
            "--num-frames",
            "4",
            "--batch-size",
            "2",
            "--batches",
            "1",
            "--workers",
            "1",
            "--aug-repeats",
            "1",
        ]
        if dry
        else ["--workers", "8"]
    )
    learn_out = out / "learn"
    learn = [py, "bench/learn.py", "--procedural", "--out", str(learn_out), "--steps", str(learn_steps)]
    learn += (
        ["--size", "32", "--frames", "8"]
        if dry
        else ["--set", "trainer.accelerator=gpu", "trainer.precision=bf16-mixed", "data.num_workers=8"]
    )
    onnx = [
        py,
        "-m",
        "tapforge.cli",
        "export",
        str(learn_out / "trained" / "checkpoints" / "last.ckpt"),
        "--to",
        "onnx",
        "--out",
        str(out / "tapir.onnx"),
        "--frames",
        "8",
        "--num-queries",
        "16",
    ]
    slack = 3 if dry else 1  # a dry run proves the stages work, on CPUs that may be shared and slow
    return [
        ("setup", 120 * slack, [py, "-c", SETUP]),
        ("model", 60 * slack if dry else 150, model),
        ("loader_png", 60 * slack, [py, "bench/loader.py", "--codec", "png", *loader]),
        ("loader_jpg", 60 * slack, [py, "bench/loader.py", "--codec", "jpg", *loader]),
        ("learn", 240 * slack, learn),
        ("onnx", 60 * slack, onnx),
    ]


def install_missing() -> list[str]:
    """pip-install, from the wheels that travel with the tree, each MAYBE_MISSING package that does not import."""
    missing = [dist for module, dist in MAYBE_MISSING.items() if importlib.util.find_spec(module) is None]
    wheels = [w for dist in missing for w in WHEELS.glob(f"{dist.replace('-', '_')}-*.whl")]
    if wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", *map(str, wheels)], check=False
        )
    return missing


def download_wheels() -> None:
    """Fetch the MAYBE_MISSING wheels for Python 3.12 manylinux x86_64 into .gpu_wheels/ (git-ignored)."""
    WHEELS.mkdir(exist_ok=True)
    for dist in MAYBE_MISSING.values():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.12",
                "--platform",
                "manylinux2014_x86_64",
                "--platform",
                "manylinux_2_28_x86_64",
                "-d",
                str(WHEELS),
                dist,
            ],
            check=False,
        )
    size = sum(f.stat().st_size for f in WHEELS.glob("*.whl")) / 2**20
    print(f"{len(list(WHEELS.glob('*.whl')))} wheels, {size:.0f} MiB in {WHEELS} (carry it: .gpu_wheels)")


def run_stage(name: str, limit: int, command: list[str], log_dir: Path) -> dict:
    """Run one stage under its time limit; its output goes to LOG_DIR/name.log and its last lines to the table."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = time.monotonic()
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        status = "ok" if result.returncode == 0 else f"failed ({result.returncode})"
        stdout, stderr = result.stdout, result.stderr
    except subprocess.TimeoutExpired as err:
        status = f"timed out ({limit} s)"
        stdout, stderr = ((x or b"").decode(errors="replace") for x in (err.stdout, err.stderr))
    seconds = time.monotonic() - start
    (log_dir / f"{name}.log").write_text(stdout + "\n--- stderr\n" + stderr)
    # the figures are on stdout; a failure's reason is at the end of stderr
    lines = [line for line in (stdout if status == "ok" else stdout + stderr).splitlines() if line.strip()]
    print(f"[{name}] {status} in {seconds:.0f} s", flush=True)
    return {"stage": name, "status": status, "seconds": round(seconds, 1), "summary": lines[-12:]}


def markdown(results: list[dict], header: str) -> str:
    rows = [header, "", "| stage | status | s | figures (last lines) |", "|---|---|---|---|"]
    for r in results:
        figures = "<br>".join(line.replace("|", "/") for line in r["summary"])
        rows.append(f"| {r['stage']} | {r['status']} | {r['seconds']:.0f} | {figures} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out/gpu_check")))
    parser.add_argument("--cpu-dry-run", action="store_true", help="every stage at toy size on the CPU")
    parser.add_argument("--learn-steps", type=int, help="training steps of the learn stage (default 1500; dry 2)")
    parser.add_argument("--only", nargs="+", help="run only these stages")
    parser.add_argument("--download-wheels", action="store_true", help="fetch the wheels for the GPU machine, exit")
    args = parser.parse_args()
    if args.download_wheels:
        download_wheels()
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    missing = [] if args.cpu_dry_run else install_missing()
    steps = args.learn_steps or (2 if args.cpu_dry_run else 1500)
    results = [
        run_stage(name, limit, command, args.out)
        for name, limit, command in stages(args.cpu_dry_run, args.out, steps)
        if not args.only or name in args.only
    ]
    header = (
        f"GPU check ({'CPU dry run, toy sizes' if args.cpu_dry_run else 'full size'}); "
        f"installed from wheels: {', '.join(missing) or 'nothing'}"
    )
    (args.out / "gpu_check.md").write_text(markdown(results, header))
    (args.out / "gpu_check.json").write_text(json.dumps({"header": header, "stages": results}, indent=1))
    print(markdown(results, header))
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
