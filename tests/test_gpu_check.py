"""The prepared GPU check runs every stage at toy size on the CPU, so it is known to work before a GPU sees it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_passes_every_stage_and_writes_its_table(tmp_path):
    result = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--cpu-dry-run", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    failed = {s["stage"]: s["summary"][-3:] for s in report["stages"] if s["status"] != "ok"}
    assert result.returncode == 0 and not failed, failed or result.stderr[-2000:]
    assert [s["stage"] for s in report["stages"]] == ["setup", "model", "loader_png", "loader_jpg", "learn", "onnx"]
    table = (tmp_path / "gpu_check.md").read_text()
    assert "forward+backward bf16" in table and "clips/s" in table and "trained" in table
    assert "verified: max" in table  # the exported ONNX graph matched PyTorch


def test_train_and_tapir_import_and_build_without_blender():
    code = (
        "import sys; sys.modules['bpy'] = sys.modules['pybullet'] = None  # as on the GPU machine: no Blender\n"
        "import tapforge.tapir.model, tapforge.tapir.checkpoint, tapforge.tapir.inference, tapforge.train.module, tapforge.train.data, tapforge.train.cli\n"
        "from tapforge.cli import main; assert main(['train', 'fit', '--help']) == 0"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
