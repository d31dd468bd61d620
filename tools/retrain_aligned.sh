#!/usr/bin/env bash
# How the shipped export.pkl was retrained on upright faces (after tools/train_shipped.sh made the model it
# starts from). Resumable: run it again after an interruption and each step continues where it stopped.
#   1. face crops of ../shared/data/train, each face turned upright where its landmarks are trusted (80 s here)
#   2. fine_tune of the shipped ResNet34 on them with the occluders (a hand, sunglasses) and the camera model
#      (settings.py: occlude_p, camera_p), 1 frozen + 6 epochs at 2e-3 (about 30 min on 2 cores)
#   3. the stress benchmark, the shipped model against the new one on the same validation photos
# Outputs go to data/cache/ and models/ (ignored by git); nothing replaces export.pkl here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SRC=${SRC:-../shared/data/train}
CROPS=data/cache/crops/train-retina-aligned
EPOCHS=${EPOCHS:-6}
LIMIT=${LIMIT:-300}
mkdir -p models/aligned models/bench
step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "face crops, upright -> $CROPS"
$PY -c "from selfiemask.crops import CropSettings, crop_folder; print(crop_folder('$SRC', '$CROPS', settings=CropSettings(align=True)))"

if [ ! -f models/aligned/export.pkl ]; then
  step "fine_tune($EPOCHS) of the shipped model on upright crops, occluders and camera conditions"
  $PY -m selfiemask train "$CROPS" --pretrained shipped --epochs "$EPOCHS" --lr 2e-3 --no-engines \
      --out models/aligned/export.pkl --resume
fi

step "stress benchmark on $LIMIT validation photos: every condition, both models as their cards say"
$PY benchmarks/conditions.py "$SRC" --model "shipped=export.pkl" --model "retrained=models/aligned/export.pkl" \
    --limit "$LIMIT" --json models/bench/aligned.json
step done
