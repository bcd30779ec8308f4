"""Native modules print nothing of their own into the command's output (tapforge.synth.native)."""

import subprocess
import sys

import pytest


def test_pybullet_imports_without_its_build_banner():
    pytest.importorskip("pybullet")
    code = "from tapforge.synth.native import import_pybullet; import_pybullet().connect; print('imported')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "imported\n" and result.stderr == "", (result.stdout, result.stderr)


def test_quiet_stdout_silences_c_level_output_and_restores_the_streams():
    code = """if True:
        import ctypes, sys
        from tapforge.synth.native import quiet_stdout
        with quiet_stdout(also_stderr=True):
            ctypes.CDLL(None).printf(b"from C\\n")
            print("from Python")
            print("to stderr", file=sys.stderr)
        print("after")
        print("errors still shown", file=sys.stderr)
        with quiet_stdout():
            print("hidden")
            print("not hidden", file=sys.stderr)
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "after\n", result.stdout
    assert result.stderr == "errors still shown\nnot hidden\n", result.stderr
