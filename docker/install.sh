#!/usr/bin/env bash
# Installs tapforge into the Python 3.11 environment of $PYTHON (default: python3 on PATH). The Dockerfile and
# .ci/run both run these steps, so CI exercises the commands the image is built with.
#
#   install.sh deps [EXTRA...]         pip, then torch==$TORCH_VERSION (the build TORCH_INDEX_URL serves, e.g. a
#                                      PyTorch CUDA index; unset: the default index), then every dependency that
#                                      pyproject.toml names, with those of the extras. Reads only pyproject.toml.
#   install.sh project [-e] [EXTRA...] the project itself (-e: editable); its dependencies are already installed
#   install.sh check                   smoke test: every package imports, presets load, the console script runs
set -euo pipefail
PYTHON=${PYTHON:-python3}
case $PYTHON in */*) PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON") ;; esac  # absolute, not resolved
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0

extras() {  # "" or "[a,b]" from the arguments
    local IFS=,
    if [ $# -gt 0 ]; then echo "[$*]"; fi
}

case "${1:-}" in
deps)
    shift
    requirements=$(mktemp)
    trap 'rm -f "$requirements"' EXIT
    "$PYTHON" - "$@" >"$requirements" <<'EOF'
import sys, tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
optional = project.get("optional-dependencies", {})
unknown = [e for e in sys.argv[1:] if e not in optional]
if unknown:
    sys.exit(f"install.sh deps: unknown extra {unknown}; pyproject.toml has {sorted(optional)}")
print("\n".join(project["dependencies"] + [r for e in sys.argv[1:] for r in optional[e]]))
EOF
    "$PYTHON" -m pip install --upgrade pip
    # torch first, so the project's torch range is already met by the chosen build and installs nothing more
    "$PYTHON" -m pip install "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
    "$PYTHON" -m pip install -r "$requirements"
    ;;
project)
    shift
    editable=()
    if [ "${1:-}" = "-e" ]; then editable=(-e); shift; fi
    "$PYTHON" -m pip install "${editable[@]}" ".$(extras "$@")"
    ;;
check)
    "$PYTHON" -c "import bpy, torch, tapforge.synth, tapforge.train, tapforge.tapir; from tapforge.synth.config import load_config; load_config('tiny')"
    "$(dirname "$(command -v "$PYTHON")")/tapforge" --help >/dev/null
    ;;
*)
    echo "usage: install.sh deps [EXTRA...] | project [-e] [EXTRA...] | check" >&2
    exit 2
    ;;
esac
