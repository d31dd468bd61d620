#!/usr/bin/env bash
# The three-class model (mask, no mask, mask worn incorrectly): how it was trained and judged. Resumable.
#   1. a folder of links: the two classes of ../shared/data/train, and of ../shared/data/extra/incorrect_mask
#      the SYNTHETIC photos only: the 54 real ones are never trained on, they are that class's test
#   2. face crops of it, upright where the landmarks are trusted (as the two-class model's)
#   3. ResNet34 from the shipped two-class model, all but its last layer, fine_tune
#   4. benchmarks/three_class.py: recall on the 54 real crops, and the other classes against the two-class model
# Outputs go to data/cache/ and models/three/ (ignored by git); nothing replaces export.pkl.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${SHARED:-../shared/data}
SRC=data/cache/three-class-photos
CROPS=data/cache/crops/three-class-aligned
EPOCHS=${EPOCHS:-3}
step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "links -> $SRC (incorrect_mask: synthetic photos only)"
mkdir -p "$SRC/incorrect_mask"
for c in with_mask without_mask; do
  [ -e "$SRC/$c" ] || ln -s "$(realpath "$SHARED/train/$c")" "$SRC/$c"
done
for f in "$SHARED"/extra/incorrect_mask/synthetic_*; do
  [ -e "$SRC/incorrect_mask/$(basename "$f")" ] || ln -s "$(realpath "$f")" "$SRC/incorrect_mask/"
done

step "face crops -> $CROPS"
$PY -c "from selfiemask.crops import CropSettings, crop_folder; print(crop_folder('$SRC', '$CROPS', settings=CropSettings(align=True)))"

if [ ! -f models/three/export.pkl ]; then
  step "three classes: resnet34 from the shipped model but its last layer, fine_tune($EPOCHS)"
  $PY -m selfiemask train "$CROPS" --classes 3 --pretrained shipped --epochs "$EPOCHS" --lr 2e-3 --no-engines \
      --out models/three/export.pkl --resume
fi

step "judged on the real incorrect_mask crops and the two-class validation photos"
$PY benchmarks/three_class.py "$SHARED/train" "$SHARED/extra/incorrect_mask" --three models/three/export.pkl \
    --two export.pkl --json models/three/three_class.json
step done
