"""The `tapforge` dispatcher: help, unknown commands, one clear error line for user errors."""

import subprocess
import sys

import pytest


def _run(*args):
    return subprocess.run([sys.executable, "-m", "tapforge.cli", *args], capture_output=True, text=True)


def test_help_lists_every_command():
    out = _run("--help")
    assert out.returncode == 0
    for command in ("synth", "train", "eval", "export", "track", "demo"):
        assert command in out.stdout


def test_unknown_command_is_one_line_with_the_choices():
    out = _run("rander")
    assert out.returncode == 2 and "unknown command 'rander'" in out.stderr and "synth" in out.stderr


def test_user_errors_are_one_line_without_traceback(tmp_path):
    out = _run("synth", "verify", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.startswith("tapforge synth: error:") and "manifest.json" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = _run("synth", "render", "--out", str(tmp_path / "x"), "--set", "render.samples=zero")
    assert out.returncode == 2 and "render.samples: bad value 'zero'" in out.stderr and "Traceback" not in out.stderr


def test_synth_count_flags_out_of_range_are_one_line(tmp_path):
    cases = [
        (("preview", str(tmp_path), "--out", "p.gif", "--max-tracks", "0"), "--max-tracks 0: give 1 or more"),
        (("preview", str(tmp_path), "--out", "p.gif", "--index", "-1"), "--index -1: give 0 or more"),
        (("to-tapvid", str(tmp_path), "--out", "x.pkl", "--max-tracks", "-3"), "--max-tracks -3: give 1 or more"),
        (("to-tapvid", str(tmp_path), "--out", "x", "--clips-per-file", "0"), "--clips-per-file 0: give 1 or more"),
        (("render", "--out", str(tmp_path / "x"), "--num-scenes", "0"), "--num-scenes 0: give 1 or more"),
        (
            ("render", "--out", str(tmp_path / "x"), "--shard-index", "-1", "--num-shards", "2"),
            "--shard-index -1: give 0 or more",
        ),
    ]
    for args, message in cases:
        out = _run("synth", *args)
        assert out.returncode == 2 and out.stderr.strip() == f"tapforge synth: error: {message}", out.stderr
    assert not (tmp_path / "x").exists()


def test_importing_synth_and_the_schema_does_not_import_bpy_or_torch():
    modules = "tapforge.synth.schema, tapforge.synth.config, tapforge.synth.shards, tapforge.synth.tapvid_export"
    modules += ", tapforge.synth.exports"
    code = f"import sys, {modules}; print('bpy' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_base_layer_imports_none_of_the_packages_above_it():
    import ast
    import pathlib

    above = ("tapforge.synth", "tapforge.tapir", "tapforge.train", "tapforge.cli", "tapforge.demo")
    for path in pathlib.Path(__file__).parent.parent.joinpath("tapforge", "base").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            assert not [n for n in names if n.startswith(above)], f"{path.name} imports {names}"
    code = (
        "import sys, tapforge.base.atomic, tapforge.base.errors, tapforge.base.video, tapforge.base.drawing; "
        f"print(sorted(m for m in ('torch', 'bpy', *{above}) if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_render_help_lists_every_preset_with_one_line_and_the_default():
    from tapforge.synth.config import CONFIG_DIR

    out = _run("synth", "render", "--help")
    assert out.returncode == 0 and "default movi_e" in out.stdout
    listed = out.stdout.split("presets (--config NAME):")[1].strip().splitlines()
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "base")
    assert [line.split()[0] for line in listed] == names
    assert all(len(line.split(maxsplit=1)) == 2 for line in listed)


def test_an_unexpected_error_is_one_line_naming_the_log_with_the_traceback(tmp_path, monkeypatch, capsys):
    import types

    from tapforge import cli

    def broken(argv):
        return {}["a bug"]

    module = types.ModuleType("broken_command")
    module.main = broken
    monkeypatch.setitem(sys.modules, "broken_command", module)
    monkeypatch.setitem(cli.COMMANDS, "broken", ("broken_command", "a command with a bug"))
    monkeypatch.setenv("TAPFORGE_CACHE", str(tmp_path))
    assert cli.main(["broken", "--flag"]) == 1
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith("tapforge broken: internal error: KeyError: 'a bug' (the full traceback is in ")
    (log,) = (tmp_path / "crashes").glob("*-broken-*.log")
    assert str(log) in line and "Traceback" not in err
    text = log.read_text()
    assert text.startswith("tapforge broken --flag") and "Traceback" in text and 'return {}["a bug"]' in text


@pytest.mark.parametrize(
    "args",
    [
        ("track",),
        ("track", "video.mp4", "--checkpoint", "x.pt", "--nope"),
        ("eval", "--query-mode", "bogus"),
        ("export",),
        ("export", "x.ckpt", "--to", "zip", "--out", "x.zip"),
        ("pack-videos",),
        ("photo-clips", "--frames", "many"),
        ("demo", "--steps", "0"),
        ("demo", "--surprise"),
    ],
)
def test_a_wrong_flag_or_a_missing_argument_is_one_line(args):
    out = _run(*args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith(f"tapforge {args[0]}: error: ") and "usage:" not in out.stderr, lines[0]
