#!/usr/bin/env bash
# A learner's first run with their own photos: 100 real photos (50 a label) through notebooks 02 and 03 with
# their default parameters, in a fresh clone of this checkout, offline. Prints each notebook's time and what
# training said (start, validation figures, kept or replaced).
#
#   bash benchmarks/own_photos.sh [PHOTOS_DIR] [N_PER_LABEL]
#
# PHOTOS_DIR holds <label>/ folders (default ../shared/data/train, beside the project's own checkout). The
# photos are drawn from the shipped model's validation split (photos it never trained on) and renamed as a
# phone names them, so the new run draws its own split. They are copied to a scratch clone in /tmp, never
# into this checkout.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
photos=$(realpath "${1:-$here/../shared/data/train}")
n=${2:-50}
py="$here/.venv/bin/python"
work=$(mktemp -d /tmp/own-photos.XXXXXX)
git clone -q "$here" "$work/repo"
cd "$work/repo"
export PYTHONPATH="$work/repo"
"$py" - "$photos" "$n" <<'PY'
import random, shutil, sys
from pathlib import Path
from selfiemask.data import validation_items
items, n = validation_items(Path(sys.argv[1])), int(sys.argv[2])
rng = random.Random(0)
for label in ("with_mask", "without_mask"):
    dest = Path("data/raw") / label
    dest.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(rng.sample([p for p in items if p.parent.name == label], n)):
        shutil.copy(p, dest / f"IMG_{label[:4]}_{i:04d}{p.suffix.lower()}")
print(f"{2 * n} photos in data/raw/ of {Path.cwd()}")
PY
for nb in 02_clean 03_train; do
  start=$(date +%s.%N)
  "$py" -m papermill "notebooks/$nb.ipynb" "$work/$nb.out.ipynb" --cwd notebooks -k python3 --no-progress-bar \
      > "$work/$nb.log" 2>&1 || { echo "$nb failed:"; tail -30 "$work/$nb.log"; exit 1; }
  echo "$nb: $(echo "$(date +%s.%N) - $start" | bc) s"
done
"$py" - "$work/03_train.out.ipynb" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["cells"]:
    for o in c.get("outputs", []):
        if o["output_type"] == "stream":
            for line in "".join(o["text"]).splitlines():
                if line.startswith(("[selfiemask]", "  ", "The ")):
                    print(line)
PY
echo "(scratch clone: $work)"
