"""A non-editable install carries the presets and scene scripts: `tapforge synth render --config movi_e` works
from any folder."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_install_renders_a_preset_from_another_folder(tmp_path):
    pytest.importorskip("bpy", reason="bpy is needed to render")
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "out", "runs", "*.egg-info",
                                                                "__pycache__", "lightning_logs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheel"), str(source)], check=True, capture_output=True)
    wheel, = (tmp_path / "wheel").glob("tapforge-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    assert {"synth/presets/movi_e.yaml", "synth/presets/base.yaml", "synth/scripts/movi.py"} <= set(names)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))  # the wheel's files before the checkout's
    code = ("import sys, synth; from tapforge.cli import main; assert 'site' in synth.__file__, synth.__file__; "
            "sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "synth", "render", "--config", "movi_e", "--out", "data",
                             "--num-scenes", "1", "--no-progress", "--workers", "1", "--set", "render.resolution=32",
                             "--set", "render.samples=1", "--set", "scene.num_frames=2", "--set",
                             "tracks.num_tracks=16"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert list((elsewhere / "data").glob("*.tar"))
