#!/usr/bin/env bash
# A retrain of the shipped model on upright faces with the occluders and the camera model, distilled from the
# shipped model itself (so that it keeps what it knew where the new augmentations do not reach). Resumable.
#   1. face crops of ../shared/data/train, each face turned upright where its landmarks are trusted (80 s here)
#   2. fine_tune of the shipped ResNet34 on them, 1 frozen + 4 epochs at 1e-3, occluders p 0.1, camera model
#      p 0.15, the shipped model as teacher (T 4, alpha 0.5): about 24 min on 2 cores
#   3. the stress benchmark, the shipped model against the new one on all validation photos (about 15 min)
# Outputs go to data/cache/ and models/ (ignored by git); nothing replaces export.pkl here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SRC=${SRC:-../shared/data/train}
CROPS=data/cache/crops/train-retina-aligned
OUT=models/distilled
mkdir -p "$OUT" models/bench
step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "face crops, upright -> $CROPS"
$PY -c "from selfiemask.crops import CropSettings, crop_folder; print(crop_folder('$SRC', '$CROPS', settings=CropSettings(align=True)))"

if [ ! -f "$OUT/export.pkl" ]; then
  step "fine_tune(4) of the shipped model, distilled from it, with occluders and the camera model"
  $PY -m selfiemask train "$CROPS" --pretrained shipped --teacher export.pkl --distill-alpha 0.5 \
      --occlude-p 0.1 --camera-p 0.15 --epochs 4 --lr 1e-3 --no-engines --out "$OUT/export.pkl" --resume
fi

step "stress benchmark on every validation photo: both models as their cards say"
$PY benchmarks/conditions.py "$SRC" --model "shipped=export.pkl" --model "distilled=$OUT/export.pkl" \
    --json models/bench/distilled.json
step done
