"""What would a lazy import plan save on ``selfiemask predict photo.jpg`` as a whole process?

Times, as whole processes (median of ``--reps``):

1. ``python -m selfiemask predict --engine E photo`` as it is (torch, fastai and the learner loaded);
2. the imports alone of that process;
3. a prototype of the int8 path without fastai or torch (``--minimal``, this file): the card's
   ``engines.preprocessing`` numbers in numpy, RetinaFace and the int8 graph on ONNX Runtime,
   and checks that it prints the same verdict as (1).

    python benchmarks/startup.py --model export.pkl [--reps 3]

The prototype is a measurement, not a code path of the package: it skips the safe loader (the
learner is never unpickled) and knows only the project's own preprocessing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def minimal(model: Path, photo: Path) -> None:
    """The int8 path with numpy, PIL and ONNX Runtime only: prints ``path: label confidence``."""
    import numpy as np
    import onnxruntime as ort

    from selfiemask.faces import DetectorSettings, FaceDetector, crop_face
    from selfiemask.files import sha256_file
    from selfiemask.images import load_image

    card = json.loads(model.with_suffix(".json").read_text())
    eng = card["engines"]
    spec, rec = eng["preprocessing"], eng["int8"]
    graph = model.with_name(rec["file"])
    assert sha256_file(graph) == rec["sha256"], "graph does not match its card"
    img = load_image(photo)
    settings = DetectorSettings.from_dict(card.get("detector", {}).get("detector"))
    faces = FaceDetector(settings).detect(img)
    crop = crop_face(img, faces[0].box) if faces else img
    rw, rh = spec["resize"]
    cw, ch = spec["crop"]
    from PIL import Image

    small = crop.convert("RGB").resize((rw, rh), Image.BILINEAR)
    left, top = (rw - cw) // 2, (rh - ch) // 2
    a = np.asarray(small.crop((left, top, left + cw, top + ch)), dtype=np.float32) * spec["scale"]
    x = ((a - np.array(spec["mean"], np.float32)) / np.array(spec["std"], np.float32)).transpose(2, 0, 1)[None]
    if eng.get("tta") == "flip":
        x = np.concatenate([x, x[..., ::-1]])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(graph), sess_options=opts, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})[0]
    e = np.exp(logits - logits.max(1, keepdims=True))
    p = (e / e.sum(1, keepdims=True)).mean(0)
    k = int(p.argmax())
    print(f"{photo}: {card['classes'][k]} {p[k]:.1%}")


def timed_process(cmd: list[str], reps: int) -> tuple[float, str]:
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)  # warm the file cache
    if out.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "export.pkl")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--engine", default="int8")
    ap.add_argument("--minimal", nargs=2, metavar=("MODEL", "PHOTO"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.minimal:
        return minimal(Path(args.minimal[0]), Path(args.minimal[1]))
    from PIL import Image
    from skimage import data

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "astronaut.jpg"
        Image.fromarray(data.astronaut()).save(photo, quality=92)
        py = sys.executable
        full = [py, "-m", "selfiemask", "predict", "--engine", args.engine, "--model", str(args.model), str(photo)]
        imports = [py, "-c", "import selfiemask.commands.predict, selfiemask.predict, fastai.learner, "
                   "fastai.vision.all, torch"]
        lean = [py, str(Path(__file__).resolve()), "--minimal", str(args.model), str(photo)]
        lean_imports = [py, "-c", "import numpy, onnxruntime, PIL.Image, selfiemask.faces, selfiemask.images"]
        rows = []
        for name, cmd in (("predict process, as it is", full), ("  its imports alone", imports),
                          ("int8 path without fastai/torch (prototype)", lean),
                          ("  its imports alone", lean_imports)):
            t, out = timed_process(cmd, args.reps)
            rows.append((name, t, out.split(": ", 1)[-1] if out else ""))
        print(f"Whole-process seconds (median of {args.reps}), engine {args.engine}:")
        for name, t, out in rows:
            print(f"  {name:45s} {t:6.2f} s  {out}")
        same = rows[0][2].split(" (")[0] == rows[2][2]
        print(f"  saving: {rows[0][1] - rows[2][1]:.2f} s a process; same verdict printed: {same}")


if __name__ == "__main__":
    main()
