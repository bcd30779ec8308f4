"""tapforge installs one import root: a wheel installed (non-editable) into a fresh environment renders a preset,
trains and tracks from any folder, and a user's own ``train.py`` / ``synth.py`` never shadows ours."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
OLD_NAMES = ("synth", "train", "tapir", "tapbase")
# every command and sub-command a user can ask for help on
HELP = [
    ["synth"],
    ["synth", "render"],
    ["synth", "verify"],
    ["synth", "preview"],
    ["synth", "to-tapvid"],
    ["train"],
    ["train", "fit"],
    ["eval"],
    ["photo-clips"],
    ["pack-videos"],
    ["export"],
    ["track"],
    ["demo"],
]


# the wheel's environment sees only what it installs: no PYTHONPATH of the caller's (a checkout on it would win)
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _run(args, cwd, **kw):
    kw.setdefault("env", CLEAN_ENV)
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, **kw)
    assert result.returncode == 0, f"{' '.join(map(str, args))}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def _shadowed_folder(path: Path) -> Path:
    """A folder with a researcher's own modules under our old top-level names; importing any of them fails loudly."""
    path.mkdir()
    for name in OLD_NAMES:
        (path / f"{name}.py").write_text(f"raise SystemExit('the user\\'s own {name}.py was imported')\n")
    return path


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """A fresh venv holding only the tapforge wheel (its dependencies are this environment's, read through a .pth
    line, which adds the folder without running the editable install's import hook)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".*", "build", "out", "runs", "*.egg-info", "__pycache__", "lightning_logs"),
    )
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", source],
        cwd=tmp,
    )
    (wheel,) = (tmp / "dist").glob("tapforge-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp).stdout.strip())
    (site / "tapforge_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], cwd=tmp)
    return {"wheel": wheel, "python": python, "tapforge": venv / "bin" / "tapforge", "site": site}


def test_the_wheel_holds_one_import_root_with_its_presets_and_scripts(wheel_env):
    with zipfile.ZipFile(wheel_env["wheel"]) as archive:
        names = archive.namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("tapforge-")}
    assert tops == {"tapforge"}, tops
    assert {
        "tapforge/synth/presets/movi_e.yaml",
        "tapforge/synth/presets/base.yaml",
        "tapforge/synth/scripts/movi.py",
    } <= set(names)


@pytest.mark.slow
def test_a_wheel_install_renders_trains_and_tracks_from_another_folder(wheel_env, tmp_path):
    pytest.importorskip("bpy", reason="bpy is needed to render")
    work = _shadowed_folder(tmp_path / "project")
    python, tapforge = wheel_env["python"], wheel_env["tapforge"]
    where = _run([python, "-c", "import tapforge.synth, tapforge.train; print(tapforge.synth.__file__)"], cwd=tmp_path)
    assert where.stdout.startswith(str(wheel_env["site"])), where.stdout
    _run(
        [
            tapforge,
            "synth",
            "render",
            "--config",
            "movi_e",
            "--out",
            "data",
            "--num-scenes",
            "2",
            "--no-progress",
            "--workers",
            "1",
            "--set",
            "render.resolution=32",
            "--set",
            "render.samples=1",
            "--set",
            "scene.num_frames=4",
            "--set",
            "tracks.num_tracks=32",
            "--set",
            "outputs.scenes_per_shard=1",
        ],
        cwd=work,
    )
    assert len(list((work / "data").glob("*.tar"))) == 2
    config = {
        "trainer": {
            "max_steps": 2,
            "default_root_dir": "runs",
            "enable_progress_bar": False,
            "logger": False,
            "limit_val_batches": 0,
        },
        "model": {
            "model": {
                "initial_resolution": [32, 32],
                "mixer_hidden_dim": 32,
                "num_mixer_blocks": 1,
                "blocks_per_group": [1, 1, 1, 1],
                "num_pips_iter": 1,
            },
            "warmup_steps": 1,
        },
        "data": {
            "train_shards": "data",
            "batch_size": 1,
            "num_frames": 4,
            "num_queries": 8,
            "resolution": [32, 32],
            "epoch_length": 2,
            "num_workers": 0,
            "shuffle_buffer": 1,
        },
    }
    (work / "tiny.yaml").write_text(yaml.safe_dump(config))
    _run(
        [tapforge, "train", "fit", "--config", ROOT / "configs" / "train" / "cpu_smoke.yaml", "--config", "tiny.yaml"],
        cwd=work,
    )
    (checkpoint,) = (work / "runs").rglob("last.ckpt")
    _run([tapforge, "synth", "preview", "data", "--out", "clip.mp4"], cwd=work)
    _run(
        [
            tapforge,
            "track",
            "clip.mp4",
            "--checkpoint",
            checkpoint,
            "--grid",
            "2",
            "--out",
            "overlay.mp4",
            "--save",
            "tracks.npz",
        ],
        cwd=work,
    )
    assert (work / "overlay.mp4").stat().st_size > 0 and (work / "tracks.npz").stat().st_size > 0


def test_the_old_top_level_names_are_not_installed(wheel_env, tmp_path):
    for name in OLD_NAMES:
        result = subprocess.run(
            [wheel_env["python"], "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True, env=CLEAN_ENV
        )
        assert result.returncode == 1 and f"No module named '{name}'" in result.stderr, (name, result.stderr)


@pytest.mark.parametrize("install", ["wheel", "editable"])
def test_a_users_own_train_py_and_synth_py_shadow_nothing(install, wheel_env, tmp_path):
    work = _shadowed_folder(tmp_path / "project")
    python = wheel_env["python"] if install == "wheel" else Path(sys.executable)
    _run(
        [python, "-c", "import tapforge.train.module, tapforge.synth.scene, tapforge.tapir.model, tapforge.base"],
        cwd=work,
    )
    helps = "; ".join(f"run({argv!r})" for argv in HELP)
    code = (
        "import contextlib, io\nfrom tapforge.cli import main\n"
        "def run(argv):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n            status = main(argv + ['--help'])\n"
        "        except SystemExit as exit:\n            status = exit.code\n"
        "    assert status in (0, None) and 'usage' in out.getvalue().lower(), (argv, status, out.getvalue())\n"
        f"{helps}\n"
    )
    _run([python, "-c", code], cwd=work)
    console = wheel_env["tapforge"] if install == "wheel" else Path(sys.executable).with_name("tapforge")
    assert "commands:" in _run([console, "--help"], cwd=work).stdout
    _run([python, "-m", "tapforge.cli", "synth", "render", "--help"], cwd=work)


def test_a_scene_script_written_for_the_old_names_is_told_the_new_import(tmp_path):
    from tapforge.base.errors import TapforgeError
    from tapforge.synth.scripts import load_script

    script = tmp_path / "old_scene.py"
    script.write_text("from synth.scene import Shape\n\ndef build(scene, rng, cfg):\n    pass\n")
    with pytest.raises(TapforgeError) as caught:
        load_script(str(script))
    message = str(caught.value)
    assert "\n" not in message and message.endswith(
        "line 1 imports 'synth', whose name is now 'tapforge.synth' (tapforge's packages live under one name): "
        "write 'from tapforge.synth.scene import Shape'"
    ), message
    with pytest.raises(
        TapforgeError, match="names 'tapbase', whose name is now 'tapforge.base' .*: write 'tapforge.base.errors:build'"
    ):
        load_script("tapbase.errors:build")
