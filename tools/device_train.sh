#!/usr/bin/env bash
# Train on a lent GPU machine (see DEVELOPERS.md "device") and send back the weights in
# half precision, split to fit the return limits (16 MiB a file). On this machine:
#   cat OUT/weights.pt.part-* > w.pt; cp OUT/weights.json w.json
#   selfiemask train DATA --from-weights w.pt ...same settings...
# Usage there: bash tools/device_train.sh DATA_DIR OUT_DIR [selfiemask train options]
set -euo pipefail
data=$1; out=$2; shift 2
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
# fastprogress imports python-fasthtml only for notebook HTML bars; a console run needs none of it.
mkdir -p /tmp/site/fasthtml && : > /tmp/site/fasthtml/__init__.py && : > /tmp/site/fasthtml/common.py
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -m selfiemask train "$data" --out /tmp/model/export.pkl "$@" 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | grep -v '|' || true
python3 - "$out" <<'PY'
import json, sys, torch
from pathlib import Path
from fastai.learner import load_learner
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
learn = load_learner("/tmp/model/export.pkl", cpu=True)
state = {k: v.half() if v.is_floating_point() and v.dim() > 1 else v for k, v in learn.model.state_dict().items()}
torch.save(state, "/tmp/model/weights.pt")
data = Path("/tmp/model/weights.pt").read_bytes()
part = 15 * 2**20
for i in range(0, len(data), part):
    (out / f"weights.pt.part-{i // part:02d}").write_bytes(data[i:i + part])
card = json.loads(Path("/tmp/model/export.json").read_text())
card["training"]["trained_on_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
(out / "weights.json").write_text(json.dumps(card, indent=1))
print(json.dumps({k: card[k] for k in ("validation", "training")}, indent=1))
PY
cp /tmp/model/export.lr_find.png /tmp/model/export.confusion.png "$out"/ 2>/dev/null || true
